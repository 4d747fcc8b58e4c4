//! The catalog in SQL, over sqlx's `Any` driver: one implementation whose
//! queries are written once in the SQL both SQLite and PostgreSQL accept
//! (`$N` placeholders, integer timestamps, text ids). What differs between
//! the backends (how a write transaction begins, how a row is locked, the
//! migrations) is held in a [`Dialect`] chosen when connecting.

mod accounts;
mod audit;
mod cases;
mod consult;
mod derivatives;
mod images;
mod queue;
mod rows;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use super::{Catalog, CatalogError};

/// How a pool is sized and how long a caller waits for a connection.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// What differs between the SQL backends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dialect {
    pub(crate) name: &'static str,
    /// Starts a transaction that will write. SQLite must take the write lock
    /// up front: a deferred transaction that reads and then writes can fail
    /// with SQLITE_BUSY no matter how long it waits.
    pub(crate) begin_write: &'static str,
    /// Reads the audit chain head, locking it against a concurrent sealer.
    pub(crate) select_chain_head: &'static str,
    /// Reads a case in scope, locking the row for the rest of the transaction.
    pub(crate) select_case_for_update: &'static str,
    /// The job queue's statements.
    pub(crate) queue: &'static queue::QueueSql,
    /// The database clock, in epoch milliseconds: leases and service levels
    /// are timed by it, so processes with skewed clocks agree.
    pub(crate) select_now: &'static str,
}

const SQLITE: Dialect = Dialect {
    name: "sqlite",
    begin_write: "BEGIN IMMEDIATE",
    select_chain_head: "SELECT seq, hash FROM audit_chain_head WHERE id = 1",
    // BEGIN IMMEDIATE already holds the database's only write lock.
    select_case_for_update: concat!(
        "SELECT ",
        rows::case_columns!(),
        " FROM cases WHERE id = $1 AND ",
        cases::scoped!()
    ),
    queue: &queue::SQLITE_QUEUE,
    select_now: "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)",
};

/// The catalog on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    dialect: Dialect,
    /// Service levels given to cases at submission.
    sla: crate::model::SlaPolicy,
}

impl SqlCatalog {
    /// Connects by URL (`sqlite://path/to/relay.db`) and applies migrations.
    ///
    /// SQLite connections run in WAL mode with `synchronous=FULL`: with
    /// NORMAL, a commit acknowledged just before a power loss can be lost.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, CatalogError> {
        install_default_drivers();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let (dialect, url) = match scheme {
            "sqlite" => (SQLITE, sqlite_url(url)),
            _ => return Err(CatalogError::UnsupportedUrl(redact_url(url))),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            dialect,
            sla: crate::model::SlaPolicy::default(),
        })
    }

    /// The service levels cases get at submission (default: [`SlaPolicy::default`]).
    ///
    /// [`SlaPolicy::default`]: crate::model::SlaPolicy
    pub fn with_sla(mut self, sla: crate::model::SlaPolicy) -> Self {
        self.sla = sla;
        self
    }

    /// The backend's name, for logs and `/readyz`.
    pub fn backend(&self) -> &'static str {
        self.dialect.name
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, CatalogError> {
        Ok(self.pool.begin_with(self.dialect.begin_write).await?)
    }
}

/// Asks SQLite to create the file when it is missing.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// A database URL without its password, for messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            let userinfo = &url[start + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{user}:***@{}", &url[..start], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn ping(&self) -> Result<(), CatalogError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_missing_files() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }

    /// Every pooled connection, not just the first, must run with the
    /// durability settings: a connection opened later by the pool under load
    /// would otherwise silently weaken commits.
    #[tokio::test]
    async fn every_pooled_connection_is_durable_and_enforces_foreign_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let settings = PoolSettings {
            max_connections: 3,
            ..PoolSettings::default()
        };
        let catalog = SqlCatalog::connect(&url, &settings)
            .await
            .expect("connects");
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = catalog.pool.acquire().await.expect("connection");
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .expect("journal_mode");
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .expect("synchronous");
            let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut *conn)
                .await
                .expect("foreign_keys");
            assert_eq!((journal.as_str(), synchronous, foreign_keys), ("wal", 2, 1));
            held.push(conn);
        }
    }

    #[tokio::test]
    async fn migrations_apply_once_and_reopen_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let first = SqlCatalog::connect(&url, &PoolSettings::default())
            .await
            .expect("first open");
        first.close().await;
        let second = SqlCatalog::connect(&url, &PoolSettings::default())
            .await
            .expect("second open");
        second.ping().await.expect("ping");
    }

    #[tokio::test]
    async fn other_url_schemes_are_refused_by_name() {
        let err = SqlCatalog::connect("mysql://u:pw@h/db", &PoolSettings::default())
            .await
            .expect_err("refused");
        assert!(matches!(err, CatalogError::UnsupportedUrl(ref u) if u == "mysql://u:***@h/db"));
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://relay:s3cret@db/relay"),
            "postgres://relay:***@db/relay"
        );
        assert_eq!(
            redact_url("sqlite://relay-data/relay.db"),
            "sqlite://relay-data/relay.db"
        );
    }
}
