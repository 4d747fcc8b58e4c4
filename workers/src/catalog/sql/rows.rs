//! Rows to records. A row that fails a model rule is reported as `Corrupt`
//! rather than silently accepted: the catalog never serves a value the API
//! would have refused to store.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::AuditEvent;
use crate::catalog::{CatalogError, TokenCredentials, TokenInfo};
use crate::model::{
    BirthDate, CancelReason, Case, CaseStatus, Clinical, ClinicalNote, InvalidValue, Mrn, Name,
    Office, Patient, PatientName, Principal, Priority, Question, Role, Sex, ShortText, Specialty,
    Timestamp, User,
};
use crate::token::SecretDigest;

/// The columns of `cases` that [`case`] reads, as a literal for `concat!`
/// (queries must be `'static` text, never formatted at run time).
macro_rules! case_columns {
    () => {
        "id, office_id, created_by, status, specialty, priority, \
         patient_name, patient_birth_date, patient_sex, patient_mrn, question, history, \
         body_site, duration, medications, allergies, modality, body_part, cancel_reason, \
         created_at, updated_at, submitted_at, cancelled_at, queued_at, due_at, claimed_by, \
         claim_until, reported_at, acknowledged_at"
    };
}
pub(super) use case_columns;

fn text(row: &AnyRow, column: &str) -> Result<String, CatalogError> {
    Ok(row.try_get::<String, _>(column)?)
}

fn opt_text(row: &AnyRow, column: &str) -> Result<Option<String>, CatalogError> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn time(row: &AnyRow, column: &str) -> Result<Timestamp, CatalogError> {
    Ok(Timestamp::from_millis(row.try_get::<i64, _>(column)?))
}

fn opt_time(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, CatalogError> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

/// Parses a text column with a model rule.
fn parsed<T>(
    row: &AnyRow,
    column: &str,
    what: &'static str,
    parse: impl FnOnce(String) -> Result<T, InvalidValue>,
) -> Result<T, CatalogError> {
    parse(text(row, column)?).map_err(|e| CatalogError::corrupt(what, e))
}

fn opt_parsed<T>(
    row: &AnyRow,
    column: &str,
    what: &'static str,
    parse: impl Fn(String) -> Result<T, InvalidValue>,
) -> Result<Option<T>, CatalogError> {
    opt_text(row, column)?
        .map(|v| parse(v).map_err(|e| CatalogError::corrupt(what, e)))
        .transpose()
}

fn id<T: FromStr<Err = InvalidValue>>(
    row: &AnyRow,
    column: &str,
    what: &'static str,
) -> Result<T, CatalogError> {
    parsed(row, column, what, |s| s.parse())
}

pub(super) fn case(row: &AnyRow) -> Result<Case, CatalogError> {
    const W: &str = "case";
    Ok(Case {
        id: id(row, "id", W)?,
        office_id: id(row, "office_id", W)?,
        created_by: id(row, "created_by", W)?,
        status: parsed(row, "status", W, |s| CaseStatus::parse(&s))?,
        specialty: parsed(row, "specialty", W, |s| Specialty::parse(&s))?,
        priority: parsed(row, "priority", W, |s| Priority::parse(&s))?,
        patient: Patient {
            name: parsed(row, "patient_name", W, PatientName::try_from)?,
            birth_date: parsed(row, "patient_birth_date", W, BirthDate::try_from)?,
            sex: parsed(row, "patient_sex", W, |s| Sex::parse(&s))?,
            mrn: parsed(row, "patient_mrn", W, Mrn::try_from)?,
        },
        question: parsed(row, "question", W, Question::try_from)?,
        history: parsed(row, "history", W, ClinicalNote::try_from)?,
        clinical: Clinical {
            body_site: opt_parsed(row, "body_site", W, ShortText::try_from)?,
            duration: opt_parsed(row, "duration", W, ShortText::try_from)?,
            medications: opt_parsed(row, "medications", W, ClinicalNote::try_from)?,
            allergies: opt_parsed(row, "allergies", W, ClinicalNote::try_from)?,
            modality: opt_parsed(row, "modality", W, ShortText::try_from)?,
            body_part: opt_parsed(row, "body_part", W, ShortText::try_from)?,
        },
        cancel_reason: opt_parsed(row, "cancel_reason", W, CancelReason::try_from)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        submitted_at: opt_time(row, "submitted_at")?,
        cancelled_at: opt_time(row, "cancelled_at")?,
        queued_at: opt_time(row, "queued_at")?,
        due_at: opt_time(row, "due_at")?,
        claimed_by: opt_parsed(row, "claimed_by", W, |s| s.parse())?,
        claim_until: opt_time(row, "claim_until")?,
        reported_at: opt_time(row, "reported_at")?,
        acknowledged_at: opt_time(row, "acknowledged_at")?,
    })
}

pub(super) fn office(row: &AnyRow) -> Result<Office, CatalogError> {
    Ok(Office {
        id: id(row, "id", "office")?,
        name: parsed(row, "name", "office", Name::try_from)?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn user(row: &AnyRow) -> Result<User, CatalogError> {
    const W: &str = "user";
    Ok(User {
        id: id(row, "id", W)?,
        name: parsed(row, "name", W, Name::try_from)?,
        role: parsed(row, "role", W, |s| Role::parse(&s))?,
        office: opt_parsed(row, "office_id", W, |s| s.parse())?,
        specialty: opt_parsed(row, "specialty", W, |s| Specialty::parse(&s))?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn token_info(row: &AnyRow) -> Result<TokenInfo, CatalogError> {
    Ok(TokenInfo {
        id: id(row, "id", "token")?,
        user_id: id(row, "user_id", "token")?,
        created_at: time(row, "created_at")?,
        expires_at: opt_time(row, "expires_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
    })
}

/// A token row joined with its user (`u_*` columns).
/// The account behind a token, from the `u_id`, `u_role`, `u_office_id`
/// and `u_specialty` columns of a join with `users`.
pub(super) fn principal(row: &AnyRow, what: &'static str) -> Result<Principal, CatalogError> {
    let user = id(row, "u_id", what)?;
    Ok(match parsed(row, "u_role", what, |s| Role::parse(&s))? {
        Role::Office => Principal::Office {
            user,
            office: opt_parsed(row, "u_office_id", what, |s| s.parse())?
                .ok_or_else(|| CatalogError::corrupt(what, "office user without office"))?,
        },
        Role::Specialist => Principal::Specialist {
            user,
            specialty: opt_parsed(row, "u_specialty", what, |s| Specialty::parse(&s))?
                .ok_or_else(|| CatalogError::corrupt(what, "specialist without specialty"))?,
        },
        Role::Admin => Principal::Admin { user },
    })
}

pub(super) fn token_credentials(row: &AnyRow) -> Result<TokenCredentials, CatalogError> {
    const W: &str = "token";
    let principal = principal(row, W)?;
    Ok(TokenCredentials {
        digest: parsed(row, "secret_sha256", W, |s| {
            SecretDigest::from_hex(&s)
                .ok_or_else(|| InvalidValue::new("digest is not 64 hex digits"))
        })?,
        expires_at: opt_time(row, "expires_at")?,
        revoked_at: opt_time(row, "revoked_at")?,
        principal,
    })
}

/// The columns of `audit_events` that [`audit_event`] reads.
macro_rules! audit_columns {
    () => {
        "id, occurred_at, actor, actor_role, action, object_id, \
         office_id, remote_addr, request_id, seq, prev_hash, hash"
    };
}
pub(super) use audit_columns;

pub(super) fn audit_event(row: &AnyRow) -> Result<AuditEvent, CatalogError> {
    Ok(AuditEvent {
        id: row.try_get("id")?,
        occurred_at: time(row, "occurred_at")?,
        actor: text(row, "actor")?,
        actor_role: text(row, "actor_role")?,
        action: text(row, "action")?,
        object_id: opt_text(row, "object_id")?,
        office_id: opt_parsed(row, "office_id", "audit event", |s| s.parse())?,
        remote_addr: text(row, "remote_addr")?,
        request_id: opt_text(row, "request_id")?,
        seq: row.try_get("seq")?,
        prev_hash: opt_text(row, "prev_hash")?,
        hash: opt_text(row, "hash")?,
    })
}
