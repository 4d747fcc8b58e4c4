//! The catalog: every record Relay keeps, in one SQL database.
//!
//! The traits here are the seam. Front doors and stages see only
//! `Arc<dyn Catalog>`; which database backs it is decided once, by URL, in
//! the composition root. Every method that reads or writes patient data
//! takes an [`AuditContext`] and writes its audit event in the same
//! transaction, and every case method takes a [`CaseScope`].

mod error;
mod sql;

pub use error::CatalogError;
pub use sql::{PoolSettings, SqlCatalog, redact_url};

use async_trait::async_trait;
use serde::Serialize;

use crate::audit::chain::{ChainBreak, ChainHead};
use crate::audit::{AuditContext, AuditEvent, AuditFilter};
use crate::model::{
    AeMapping, AeTitle, CancelReason, Case, CaseId, CaseMessage, CasePatch, CaseScope, CaseStatus,
    Derivative, DeriveResult, DeriveState, DicomAccess, DicomIndex, DicomInstance, DicomQuery,
    Image, ImageId, Name, NewUser, Notification, Office, OfficeId, PatientName, Principal,
    ReminderPolicy, ReminderSweep, Report, ReportDraft, ReportText, Sha256, Specialty, Timestamp,
    TokenId, User, UserId, WorklistItem, WorklistQuery,
};
use crate::queue::{ClaimedJob, JobFilter, JobRecord, KindStats};
use crate::reprocess::{
    BlobEntry, BlobFilter, Counts, Failure, ImageEntry, RunKind, RunOptions, RunRecord,
};
use crate::session::{SessionKey, StoredSession};
use crate::token::{IssuedToken, SecretDigest};

use std::time::Duration;

/// The DICOM C-STORE door's records: which calling AE titles belong to
/// which office, and which draft case each office's study goes into.
#[async_trait]
pub trait DicomAeTitles: Send + Sync {
    /// Maps a calling AE title to an office, creating the office user the
    /// title acts as. Mapping it again to the same office changes nothing;
    /// to another office is a `Conflict` (remove it first).
    async fn set_ae_title(
        &self,
        ctx: &AuditContext,
        ae_title: &AeTitle,
        office: OfficeId,
    ) -> Result<AeMapping, CatalogError>;
    /// Stops accepting a calling AE title (its user and images stay).
    async fn remove_ae_title(
        &self,
        ctx: &AuditContext,
        ae_title: &AeTitle,
    ) -> Result<(), CatalogError>;
    async fn list_ae_titles(&self) -> Result<Vec<AeMapping>, CatalogError>;
    /// The draft case an earlier instance of the study opened in `office`,
    /// if it is still a draft: a plain read, so the instances after a
    /// study's first do not queue for the write lock. `None` sends the
    /// caller to [`study_case`](Self::study_case), which settles races.
    async fn draft_study_case(
        &self,
        office: OfficeId,
        study_instance_uid: &str,
    ) -> Result<Option<CaseId>, CatalogError>;
    /// The draft case of `draft.office_id` for a study: the one an earlier
    /// instance of the study opened while it is still a draft, otherwise
    /// `draft` itself, inserted with its `case.create` event.
    async fn study_case(
        &self,
        ctx: &AuditContext,
        study_instance_uid: &str,
        draft: &Case,
    ) -> Result<StudyCase, CatalogError>;
}

/// The case a DICOM study's instances go into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StudyCase {
    pub case_id: CaseId,
    /// Whether this call opened it.
    pub created: bool,
}

/// Offices, users and tokens.
#[async_trait]
pub trait Accounts: Send + Sync {
    async fn create_office(&self, ctx: &AuditContext, name: Name) -> Result<Office, CatalogError>;
    async fn list_offices(&self) -> Result<Vec<Office>, CatalogError>;
    /// Where an office's events are POSTed, and the secret that signs them;
    /// `None` removes the webhook.
    async fn set_webhook(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        webhook: Option<(String, String)>,
    ) -> Result<(), CatalogError>;
    /// Whether the office's webhook events carry the patient's name (off
    /// unless the office asks: the event then holds patient data).
    async fn set_webhook_patient_name(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        include: bool,
    ) -> Result<(), CatalogError>;
    /// The office's webhook, if configured.
    async fn office_webhook(&self, office: OfficeId)
    -> Result<Option<OfficeWebhook>, CatalogError>;
    /// Where the office wants e-mail notices; `None` stops them.
    async fn set_notify_email(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        to: Option<String>,
    ) -> Result<(), CatalogError>;
    async fn office_notify_email(&self, office: OfficeId) -> Result<Option<String>, CatalogError>;
    /// Whether photos from this office lose their location metadata.
    async fn set_strip_location(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        strip: bool,
    ) -> Result<(), CatalogError>;
    /// Fails with `NotFound` when the user's office does not exist.
    async fn create_user(&self, ctx: &AuditContext, user: NewUser) -> Result<User, CatalogError>;
    async fn list_users(&self, office: Option<OfficeId>) -> Result<Vec<User>, CatalogError>;
    /// Stores the token's digest, never its secret.
    async fn create_token(
        &self,
        ctx: &AuditContext,
        user: UserId,
        token: &IssuedToken,
        expires_at: Option<Timestamp>,
    ) -> Result<TokenInfo, CatalogError>;
    async fn revoke_token(
        &self,
        ctx: &AuditContext,
        id: TokenId,
    ) -> Result<TokenInfo, CatalogError>;
    async fn list_tokens(&self, user: Option<UserId>) -> Result<Vec<TokenInfo>, CatalogError>;
    /// What is needed to check a presented token; `None` for an unknown id.
    async fn token_credentials(
        &self,
        id: TokenId,
    ) -> Result<Option<TokenCredentials>, CatalogError>;
}

/// Consult cases, always within a scope.
#[async_trait]
pub trait Cases: Send + Sync {
    async fn create_case(&self, ctx: &AuditContext, case: &Case) -> Result<(), CatalogError>;
    async fn get_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError>;
    async fn list_cases(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        query: &CaseQuery,
    ) -> Result<Page<Case>, CatalogError>;
    /// Edits a draft; any other state is a `Conflict`.
    async fn update_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        patch: CasePatch,
    ) -> Result<Case, CatalogError>;
    async fn cancel_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        reason: CancelReason,
    ) -> Result<Case, CatalogError>;
    /// Sends a draft to its specialty's worklist; it needs at least one image.
    async fn submit_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError>;
}

/// Images attached to cases.
#[async_trait]
pub trait Images: Send + Sync {
    /// Where an upload into `case` goes: `NotFound` outside the scope,
    /// `Conflict` unless the case is a draft. Read before the body is.
    async fn upload_target(
        &self,
        scope: CaseScope,
        case: CaseId,
    ) -> Result<UploadTarget, CatalogError>;
    /// Starts a resumable upload into `case`: checks it as
    /// [`upload_target`](Self::upload_target) does and records `upload.start`
    /// for `upload` (its id) in the audit trail, in one transaction.
    async fn start_upload(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        case: CaseId,
        upload: &str,
    ) -> Result<UploadTarget, CatalogError>;
    /// Records that bytes are about to be appended to a resumable upload
    /// (`upload.append`). Called before they are written, so no chunk of
    /// patient data is kept without its event.
    async fn append_upload(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        upload: &str,
    ) -> Result<(), CatalogError>;
    /// Records that a resumable upload's bytes were discarded before
    /// becoming an image (`upload.cancel`: terminated, expired or refused).
    async fn cancel_upload(
        &self,
        ctx: &AuditContext,
        office: OfficeId,
        upload: &str,
    ) -> Result<(), CatalogError>;
    /// Records an image whose blob is already durable, with its blob row,
    /// its `derive` job, its audit event and, for DICOM, the attributes
    /// DICOMweb searches match on, in one transaction. When the case
    /// already holds these exact bytes, returns that image instead
    /// (`false`): retries are safe.
    async fn add_image(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        image: &Image,
        dicom: Option<&DicomIndex>,
    ) -> Result<(Image, bool), CatalogError>;
    async fn list_images(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        case: CaseId,
    ) -> Result<Vec<Image>, CatalogError>;
    /// One image in scope; `download` records that its bytes were served.
    async fn get_image(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: ImageId,
        download: bool,
    ) -> Result<Image, CatalogError>;
}

/// DICOMweb's view of the stored DICOM instances: found by their
/// attributes, within the caller's scope, each read audited.
#[async_trait]
pub trait DicomWeb: Send + Sync {
    /// The instances behind one page of `query`'s results: at the instance
    /// level the matching instances themselves; at the study (series)
    /// level every instance in scope of each matching study (series), so
    /// the caller can count them. Ordered by study, series, instance
    /// number. Each instance returned is audited as `access` says
    /// (`image.list`, `image.read` or `image.download`) in the same
    /// transaction; nothing outside `scope` is read.
    async fn dicom_instances(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        query: &DicomQuery,
        access: DicomAccess,
    ) -> Result<Vec<DicomInstance>, CatalogError>;
}

/// What ingest needs to know about the case it uploads into.
#[derive(Debug, Clone, Copy)]
pub struct UploadTarget {
    pub office_id: OfficeId,
    /// The office's setting: remove photo location metadata.
    pub strip_location: bool,
}

/// The audit trail and its hash chain.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Lists events, newest first; the listing is itself audited.
    async fn list_audit(
        &self,
        ctx: &AuditContext,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>, CatalogError>;
    /// Seals up to `batch` unsealed events onto the chain; returns how many.
    async fn seal_pending(&self, batch: u32) -> Result<u32, CatalogError>;
    /// Walks the whole sealed chain and reports the first break, if any.
    async fn verify_chain(&self) -> Result<ChainReport, CatalogError>;
}

/// The consult loop: specialists' worklists and claims, reports, the
/// information round trip, the office's acknowledgement and notifications.
/// Claims are leases timed by the database clock, like jobs.
#[async_trait]
pub trait Consult: Send + Sync {
    /// Submitted cases of `specialty` (and the caller's own live claims),
    /// by priority, then overdue first, then place in line.
    async fn worklist(
        &self,
        ctx: &AuditContext,
        specialist: UserId,
        specialty: Specialty,
        query: &WorklistQuery,
    ) -> Result<Page<WorklistItem>, CatalogError>;
    /// Takes (or renews) the claim; `AlreadyClaimed` while another holds it.
    async fn claim_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        lease: Duration,
    ) -> Result<Case, CatalogError>;
    async fn release_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
    ) -> Result<Case, CatalogError>;
    async fn save_report_draft(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        draft: &ReportDraft,
    ) -> Result<Report, CatalogError>;
    /// Signs the draft: immutable from now on, sealed by its sha256; the case
    /// is reported, the office notified and a `deliver` job queued.
    async fn sign_report(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
    ) -> Result<Report, CatalogError>;
    async fn add_addendum(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        text: &ReportText,
    ) -> Result<Report, CatalogError>;
    /// The report; offices see it once signed, specialists also as a draft.
    async fn get_report(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        include_draft: bool,
    ) -> Result<Report, CatalogError>;
    async fn request_info(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        question: &ReportText,
    ) -> Result<Case, CatalogError>;
    /// The office answers; the case returns to the worklist in its old place.
    async fn answer_info(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        author: UserId,
        id: CaseId,
        answer: &ReportText,
    ) -> Result<Case, CatalogError>;
    async fn acknowledge(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError>;
    async fn case_messages(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Vec<CaseMessage>, CatalogError>;
    async fn case_history(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Vec<HistoryEntry>, CatalogError>;
    async fn notifications(
        &self,
        office: OfficeId,
        unread_only: bool,
    ) -> Result<Vec<Notification>, CatalogError>;
}

/// What Relay tells offices and administrators on its own, on a schedule
/// or for a delivery.
#[async_trait]
pub trait Notices: Send + Sync {
    /// Notifies offices again of reports they have not acknowledged, tells
    /// offices of cases past their due time and escalates those to
    /// administrators, each once however many processes sweep.
    async fn sweep_reminders(&self, policy: &ReminderPolicy)
    -> Result<ReminderSweep, CatalogError>;
    /// Open cases past their due time, per specialty (for metrics).
    async fn overdue_counts(&self) -> Result<Vec<(Specialty, u64)>, CatalogError>;
    /// The patient's name for an office that asked for it in its webhook
    /// events; audited as a read by Relay under the delivery's id.
    async fn patient_name_for_delivery(
        &self,
        case: CaseId,
        office: OfficeId,
        delivery_id: &str,
    ) -> Result<PatientName, CatalogError>;
}

/// Operators' batch runs: their records, and the walk over stored blobs.
#[async_trait]
pub trait Reprocessing: Send + Sync {
    /// Records a new run, from the start.
    async fn start_run(
        &self,
        kind: RunKind,
        options: &RunOptions,
    ) -> Result<RunRecord, CatalogError>;
    async fn get_run(&self, id: &str) -> Result<RunRecord, CatalogError>;
    /// The latest runs, newest first.
    async fn list_runs(&self, limit: u32) -> Result<Vec<RunRecord>, CatalogError>;
    /// Up to `limit` blobs with keys after `after` (`""`: from the first),
    /// in key order.
    async fn blob_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
    ) -> Result<Vec<BlobEntry>, CatalogError>;
    /// How many blobs a walk with `filter` visits (for progress).
    async fn count_blobs(&self, filter: &BlobFilter) -> Result<u64, CatalogError>;
    /// Up to `limit` images with ids after `after`, in id order: with
    /// `stale_before: Some(v)`, only those derived by a version before `v`
    /// (or never, or missing a rendition); with `None`, all. Images waiting
    /// for derive (`pending`) are left to the job already queued.
    async fn image_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
        stale_before: Option<u32>,
    ) -> Result<Vec<ImageEntry>, CatalogError>;
    /// How many images an [`image_batch`](Self::image_batch) walk visits.
    async fn count_images(
        &self,
        filter: &BlobFilter,
        stale_before: Option<u32>,
    ) -> Result<u64, CatalogError>;
    /// Marks the image `pending` and queues its derive job, in one
    /// transaction; `false` when it is already pending.
    async fn requeue_derive(&self, image: ImageId) -> Result<bool, CatalogError>;
    /// Saves a finished batch: the cursor moves to `cursor`, the counts grow
    /// by `delta`, the failures are kept (up to a bound).
    async fn checkpoint_run(
        &self,
        id: &str,
        cursor: &str,
        delta: &Counts,
        failures: &[Failure],
    ) -> Result<(), CatalogError>;
    async fn finish_run(&self, id: &str) -> Result<RunRecord, CatalogError>;
    /// Sends a running run's walk back to the start (its counts stay): a
    /// `migrate` pass over what arrived meanwhile.
    async fn restart_walk(&self, id: &str) -> Result<(), CatalogError>;
    /// A blob found missing or corrupt: a security event in the audit trail.
    async fn record_blob_problem(
        &self,
        run_id: &str,
        blob: &Sha256,
        reason: &str,
    ) -> Result<(), CatalogError>;
}

/// A blob store as the catalog records it.
pub type StoreId = i64;

/// A blob and the store its row says holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedBlob {
    pub sha256: Sha256,
    pub size: u64,
    /// The canonical URL of the store holding it.
    pub store_url: String,
    pub store: StoreId,
}

/// What the catalog says of one blob, read under [`Placement::lock_blob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobStanding {
    /// No row: bytes in a store that no upload committed (a crash between
    /// the put and the commit, or an upload still in flight).
    Unrecorded,
    /// A row no image or rendition refers to (a rendition replaced by
    /// `rederive`).
    Unreferenced { store: StoreId },
    /// Referred to: never to be removed.
    Referenced { store: StoreId },
}

/// A blob's catalog row, locked against every upload and rendition that
/// would refer to it, until released. What `sweep` holds while it deletes
/// bytes, so an upload of the same bytes either commits first (and the
/// blob is kept) or sees them gone and puts them again.
#[async_trait]
pub trait BlobGuard: Send {
    fn standing(&self) -> BlobStanding;
    /// Deletes the blob's row (when it has one) and lets go.
    async fn forget(self: Box<Self>) -> Result<(), CatalogError>;
    /// Lets go, changing nothing.
    async fn release(self: Box<Self>) -> Result<(), CatalogError>;
}

/// Which store keeps each blob: what `migrate` changes and reads fall back
/// on.
#[async_trait]
pub trait Placement: Send + Sync {
    /// Records a store by canonical URL (once) and returns its id. Rows
    /// written before any store was registered belong to the first one.
    async fn register_store(&self, url: &str) -> Result<StoreId, CatalogError>;
    /// Every store ever registered, by id.
    async fn list_stores(&self) -> Result<Vec<(StoreId, String)>, CatalogError>;
    /// The canonical URL of the store holding `key`, or `None` without a row.
    async fn blob_location(&self, key: &Sha256) -> Result<Option<String>, CatalogError>;
    /// Up to `limit` blobs after `after` not recorded on `target`, in key
    /// order, each with where it is now.
    async fn placement_batch(
        &self,
        after: &str,
        limit: u32,
        filter: &BlobFilter,
        target: StoreId,
    ) -> Result<Vec<PlacedBlob>, CatalogError>;
    /// How many blobs a [`placement_batch`](Self::placement_batch) walk visits.
    async fn count_not_on(&self, filter: &BlobFilter, target: StoreId)
    -> Result<u64, CatalogError>;
    /// Records that `key` is now kept in `to`, if its row still says
    /// `from`; `false` when it changed meanwhile.
    async fn move_blob(
        &self,
        key: &Sha256,
        from: StoreId,
        to: StoreId,
    ) -> Result<bool, CatalogError>;
    /// Locks `key`'s row (or its absence) against uploads and renditions.
    async fn lock_blob(&self, key: &Sha256) -> Result<Box<dyn BlobGuard>, CatalogError>;
}

/// Browser sessions of the web pages (see [`crate::session`]): stored by
/// the sha256 of their cookie secret, each tied to the token it was
/// exchanged for.
#[async_trait]
pub trait WebSessions: Send + Sync {
    /// Records a session made from `token` at sign-in, audited as
    /// `session.create`; `NotFound` when the token does not exist.
    async fn create_session(
        &self,
        ctx: &AuditContext,
        key: &SessionKey,
        token: TokenId,
        expires_at: Timestamp,
    ) -> Result<(), CatalogError>;
    /// The session under `key`, with its token's state and account.
    async fn session(&self, key: &SessionKey) -> Result<Option<StoredSession>, CatalogError>;
    /// Records that the session was used at `at` (its idle time restarts).
    async fn touch_session(&self, key: &SessionKey, at: Timestamp) -> Result<(), CatalogError>;
    /// Ends the session (sign-out), audited as `session.end`; `false` when
    /// there was none.
    async fn end_session(&self, ctx: &AuditContext, key: &SessionKey)
    -> Result<bool, CatalogError>;
    /// Deletes sessions that ended by `now`: past their lifetime, unused
    /// since `idle_before`, or whose token is revoked or expired. Returns
    /// how many.
    async fn purge_sessions(
        &self,
        now: Timestamp,
        idle_before: Timestamp,
    ) -> Result<u64, CatalogError>;
}

/// An office's webhook settings.
#[derive(Clone, PartialEq, Eq)]
pub struct OfficeWebhook {
    pub url: String,
    /// The signing secret (Standard Webhooks `whsec_…`).
    pub secret: String,
    pub include_patient_name: bool,
}

impl std::fmt::Debug for OfficeWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfficeWebhook")
            .field("url", &self.url)
            .field("include_patient_name", &self.include_patient_name)
            .finish_non_exhaustive()
    }
}

/// One status change of a case.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub from_status: String,
    pub to_status: String,
    pub actor: String,
    pub at: Timestamp,
    pub note: Option<String>,
}

/// What derive made of images. The stages act as the system, not as a
/// user: these methods take no scope, and only stages call them.
#[async_trait]
pub trait Derivatives: Send + Sync {
    /// The image a job works on.
    async fn image_for_job(&self, id: ImageId) -> Result<Image, CatalogError>;
    /// Records renditions (their blobs already durable) and what derive
    /// learned, replacing older renditions of the same kind and frame, and
    /// groups a DICOM instance under its study and series. Idempotent.
    async fn record_derive(
        &self,
        image: ImageId,
        result: &DeriveResult,
    ) -> Result<(), CatalogError>;
    /// Records that derive cannot (`Unsupported`) or did not (`Failed`) finish.
    async fn record_derive_failure(
        &self,
        image: ImageId,
        state: DeriveState,
        reason: &str,
        version: u32,
    ) -> Result<(), CatalogError>;
    /// Records one rendition made on demand (a frame with a requested window).
    async fn record_rendition(&self, rendition: &Derivative) -> Result<(), CatalogError>;
    /// A rendition, if one was made.
    async fn rendition(
        &self,
        image: ImageId,
        kind: &str,
        frame: u32,
        voi: &str,
    ) -> Result<Option<Derivative>, CatalogError>;
}

/// Background jobs: claimed under a lease from the database clock.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Adds a job ready to run now.
    async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        max_attempts: u32,
    ) -> Result<i64, CatalogError>;
    /// Claims up to `limit` ready jobs of `kinds` for `worker`, under a lease
    /// of `lease`. Jobs whose lease expired count as ready; an expired job
    /// with no attempts left is marked dead instead.
    async fn claim(
        &self,
        kinds: &[&str],
        worker: &str,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, CatalogError>;
    /// Extends a lease; `false` when `worker` no longer holds the job.
    async fn heartbeat(&self, id: i64, worker: &str, lease: Duration)
    -> Result<bool, CatalogError>;
    /// Marks a job done; `false` when `worker` no longer held it.
    async fn complete(&self, id: i64, worker: &str) -> Result<bool, CatalogError>;
    /// Records a failed attempt: queued again at `retry_in`, or dead when `None`.
    async fn fail(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<bool, CatalogError>;
    /// Gives a running job back without counting the attempt (shutdown).
    async fn release(&self, id: i64, worker: &str) -> Result<bool, CatalogError>;
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, CatalogError>;
    async fn get_job(&self, id: i64) -> Result<JobRecord, CatalogError>;
    /// A dead or cancelled job runs again, with fresh attempts.
    async fn retry_job(&self, id: i64) -> Result<JobRecord, CatalogError>;
    /// Every dead job runs again; returns how many.
    async fn retry_dead(&self) -> Result<u64, CatalogError>;
    /// A queued or dead job will not run.
    async fn cancel_job(&self, id: i64) -> Result<JobRecord, CatalogError>;
    async fn queue_stats(&self) -> Result<Vec<KindStats>, CatalogError>;
}

/// The whole catalog, as the composition root hands it out.
#[async_trait]
pub trait Catalog:
    Accounts
    + Cases
    + Images
    + Derivatives
    + Consult
    + Notices
    + AuditLog
    + Queue
    + Reprocessing
    + Placement
    + WebSessions
    + DicomAeTitles
    + DicomWeb
{
    /// Whether the database answers.
    async fn ping(&self) -> Result<(), CatalogError>;
}

/// A token as listed to operators: everything but the digest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: TokenId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A stored token with the account it signs in as.
#[derive(Debug, Clone)]
pub struct TokenCredentials {
    pub digest: SecretDigest,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub principal: Principal,
}

/// Which cases to list.
#[derive(Debug, Clone)]
pub struct CaseQuery {
    pub status: Option<CaseStatus>,
    /// 1-based.
    pub page: u32,
    pub per_page: u32,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    /// How many items match across all pages.
    pub total: u64,
}

/// The outcome of walking the audit chain.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// Events whose seal was checked before the walk ended.
    pub verified: u64,
    /// Events not yet sealed (the sealer runs every second in `relay serve`).
    pub unsealed: u64,
    pub head: ChainHead,
    pub broken: Option<ChainBreak>,
}
