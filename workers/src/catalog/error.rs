//! What can go wrong in the catalog, classified so that a front door can map
//! each kind to its own answer without looking at messages.

use crate::model::InvalidTransition;

/// A catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The row does not exist, or exists outside the caller's scope: the two
    /// are deliberately indistinguishable.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// The case's state does not allow this action.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// Another specialist holds the claim on this case.
    #[error("another specialist is working on this case")]
    AlreadyClaimed,
    /// The action needs the caller to hold a live claim on the case.
    #[error("claim the case first (or renew an expired claim)")]
    ClaimRequired,
    /// The request conflicts with the current state of a record.
    #[error("{0}")]
    Conflict(String),
    /// A stored row failed its own rules: a bug or a hand-edited database.
    #[error("stored {what} is invalid: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// The database cannot be reached right now; the same call may succeed later.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database's disk is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`): nothing was written, and freeing space is the cure,
    /// so it is answered like a full blob store.
    #[error("the database is out of space")]
    Full(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
}

impl CatalogError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, CatalogError::NotFound { .. })
    }

    /// Whether retrying later may succeed (the database was unreachable or
    /// out of space).
    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Unavailable(_) | CatalogError::Full(_))
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl std::fmt::Display) -> Self {
        CatalogError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}

impl From<sqlx::Error> for CatalogError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                CatalogError::Unavailable(error)
            }
            sqlx::Error::Database(ref db) if is_full(db.code().as_deref()) => {
                CatalogError::Full(error)
            }
            sqlx::Error::Database(ref db) if is_transient(db.code().as_deref()) => {
                CatalogError::Unavailable(error)
            }
            other => CatalogError::Database(other),
        }
    }
}

/// A full disk: SQLite's `SQLITE_FULL` (13), PostgreSQL's `disk_full`.
fn is_full(code: Option<&str>) -> bool {
    matches!(code, Some("13" | "53100"))
}

/// Database errors after which the same call may succeed if made again.
///
/// SQLite reports numeric result codes and PostgreSQL five-character
/// SQLSTATEs, so the two sets cannot be confused.
fn is_transient(code: Option<&str>) -> bool {
    let Some(code) = code else {
        return false;
    };
    matches!(
        code,
        // SQLite: busy, locked, busy in WAL recovery (after busy_timeout ran out).
        "5" | "6" | "261" | "517"
        // PostgreSQL: serialization failure and deadlock (one side is rolled back).
        | "40001" | "40P01"
        // PostgreSQL: the server is shutting down, crashed or starting up.
        | "57P01" | "57P02" | "57P03"
        // PostgreSQL: too many connections (another process holds them).
        | "53300"
    ) || code.starts_with("08") // PostgreSQL: connection exception.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_lost_races_are_transient_and_bugs_are_not() {
        for code in [
            "5", "517", "40001", "40P01", "57P01", "57P03", "08006", "53300",
        ] {
            assert!(is_transient(Some(code)), "{code}");
        }
        // Unique violation, syntax error, raised by a trigger, SQLite constraint.
        for code in ["23505", "42601", "P0001", "19", "2067"] {
            assert!(!is_transient(Some(code)), "{code}");
        }
        assert!(!is_transient(None));
    }

    #[test]
    fn a_full_disk_is_its_own_kind() {
        assert!(is_full(Some("13")) && is_full(Some("53100")));
        assert!(!is_full(Some("5")) && !is_full(Some("53300")) && !is_full(None));
    }
}
