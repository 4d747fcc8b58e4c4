//! The audit trail: who read or changed which patient data, when, from where.
//!
//! Events are written by the catalog in the same transaction as the read or
//! write they record, so a change without its event cannot be committed. A
//! background sealer later links them into a sha256 chain ([`chain`]), which
//! makes the log tamper-evident without making every request wait for one
//! global lock: requests only append; only the sealer orders.

pub mod chain;
mod sealer;

pub use sealer::{run_sealer, seal_all};

use serde::{Deserialize, Serialize};

use crate::model::{OfficeId, Principal, Timestamp};

/// What happened. The text form (`case.read`) is what is stored and filtered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    CaseCreate,
    CaseRead,
    CaseList,
    CaseUpdate,
    CaseCancel,
    CaseSubmit,
    CaseClaim,
    CaseRelease,
    CaseRequestInfo,
    CaseAnswerInfo,
    CaseAcknowledge,
    CaseRemind,
    CaseOverdue,
    CaseEscalate,
    ReportDraft,
    ReportSign,
    ReportAddendum,
    ReportRead,
    ImageCreate,
    ImageRead,
    ImageList,
    ImageDownload,
    OfficeCreate,
    OfficeUpdate,
    UserCreate,
    TokenCreate,
    TokenRevoke,
    SessionCreate,
    SessionEnd,
    UploadStart,
    UploadAppend,
    UploadCancel,
    AuditRead,
    BlobIntegrity,
}

impl AuditAction {
    pub const ALL: [AuditAction; 34] = [
        AuditAction::CaseCreate,
        AuditAction::CaseRead,
        AuditAction::CaseList,
        AuditAction::CaseUpdate,
        AuditAction::CaseCancel,
        AuditAction::CaseSubmit,
        AuditAction::CaseClaim,
        AuditAction::CaseRelease,
        AuditAction::CaseRequestInfo,
        AuditAction::CaseAnswerInfo,
        AuditAction::CaseAcknowledge,
        AuditAction::CaseRemind,
        AuditAction::CaseOverdue,
        AuditAction::CaseEscalate,
        AuditAction::ReportDraft,
        AuditAction::ReportSign,
        AuditAction::ReportAddendum,
        AuditAction::ReportRead,
        AuditAction::ImageCreate,
        AuditAction::ImageRead,
        AuditAction::ImageList,
        AuditAction::ImageDownload,
        AuditAction::OfficeCreate,
        AuditAction::OfficeUpdate,
        AuditAction::UserCreate,
        AuditAction::TokenCreate,
        AuditAction::TokenRevoke,
        AuditAction::SessionCreate,
        AuditAction::SessionEnd,
        AuditAction::UploadStart,
        AuditAction::UploadAppend,
        AuditAction::UploadCancel,
        AuditAction::AuditRead,
        AuditAction::BlobIntegrity,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            AuditAction::CaseCreate => "case.create",
            AuditAction::CaseRead => "case.read",
            AuditAction::CaseList => "case.list",
            AuditAction::CaseUpdate => "case.update",
            AuditAction::CaseCancel => "case.cancel",
            AuditAction::CaseSubmit => "case.submit",
            AuditAction::CaseClaim => "case.claim",
            AuditAction::CaseRelease => "case.release",
            AuditAction::CaseRequestInfo => "case.request_info",
            AuditAction::CaseAnswerInfo => "case.answer_info",
            AuditAction::CaseAcknowledge => "case.acknowledge",
            AuditAction::CaseRemind => "case.remind",
            AuditAction::CaseOverdue => "case.overdue",
            AuditAction::CaseEscalate => "case.escalate",
            AuditAction::ReportDraft => "report.draft",
            AuditAction::ReportSign => "report.sign",
            AuditAction::ReportAddendum => "report.addendum",
            AuditAction::ReportRead => "report.read",
            AuditAction::ImageCreate => "image.create",
            AuditAction::ImageRead => "image.read",
            AuditAction::ImageList => "image.list",
            AuditAction::ImageDownload => "image.download",
            AuditAction::OfficeCreate => "office.create",
            AuditAction::OfficeUpdate => "office.update",
            AuditAction::UserCreate => "user.create",
            AuditAction::TokenCreate => "token.create",
            AuditAction::TokenRevoke => "token.revoke",
            AuditAction::SessionCreate => "session.create",
            AuditAction::SessionEnd => "session.end",
            AuditAction::UploadStart => "upload.start",
            AuditAction::UploadAppend => "upload.append",
            AuditAction::UploadCancel => "upload.cancel",
            AuditAction::AuditRead => "audit.read",
            AuditAction::BlobIntegrity => "blob.integrity",
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in user, through an API.
    User(Principal),
    /// An operator at the `relay` command line, on the server itself.
    Operator,
    /// Relay itself, acting on a schedule or for a job (a reminder, an
    /// escalation, a delivery reading what it sends).
    System,
}

impl Actor {
    pub fn id(&self) -> String {
        match self {
            Actor::User(principal) => principal.user_id().to_string(),
            Actor::Operator => "operator".to_owned(),
            Actor::System => "relay".to_owned(),
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            Actor::User(principal) => principal.role().as_str(),
            Actor::Operator => "operator",
            Actor::System => "system",
        }
    }
}

/// The request an audited operation belongs to.
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub actor: Actor,
    /// The client's address for API calls; `local` for the command line.
    pub remote_addr: String,
    pub request_id: Option<String>,
}

impl AuditContext {
    /// An operator acting from the command line on this machine.
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            remote_addr: "local".to_owned(),
            request_id: None,
        }
    }

    /// Relay acting on its own: `job` names the job or task.
    pub fn system(job: impl Into<String>) -> Self {
        Self {
            actor: Actor::System,
            remote_addr: "local".to_owned(),
            request_id: Some(job.into()),
        }
    }
}

/// One recorded event, as stored. `seq` and `hash` are set once it is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: Timestamp,
    pub actor: String,
    pub actor_role: String,
    pub action: String,
    pub object_id: Option<String>,
    pub office_id: Option<OfficeId>,
    pub remote_addr: String,
    pub request_id: Option<String>,
    /// Position in the hash chain; absent until sealed.
    pub seq: Option<i64>,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

/// Which events to list. All filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An exact action (`case.read`) or a prefix ending in a dot (`case.`).
    pub action: Option<String>,
    pub object_id: Option<String>,
    pub office_id: Option<OfficeId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only events with an id below this one (paging backwards).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique_and_dotted() {
        let names: std::collections::HashSet<_> =
            AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), AuditAction::ALL.len());
        assert!(names.iter().all(|n| n.contains('.')));
    }
}
