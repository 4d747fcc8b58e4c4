//! The catalog in SQL, over sqlx's `Any` driver: one implementation whose
//! queries are written once in the SQL both SQLite and PostgreSQL accept
//! (`$N` placeholders, integer timestamps, text ids). What differs between
//! the backends (how a write transaction begins, how a row is locked, how
//! the database clock and a list of job kinds are written, the migrations)
//! is held in a [`Dialect`] chosen when connecting; no query branches on the
//! backend.
//!
//! Where the two differ in behaviour rather than spelling:
//!
//! - **Write serialisation.** SQLite has one writer: `BEGIN IMMEDIATE`
//!   takes the database's only write lock, so a transaction that reads and
//!   then writes sees no concurrent writer. PostgreSQL runs many writers at
//!   once under READ COMMITTED, so every read-then-write below takes a row
//!   lock (`FOR UPDATE`) on the row it decides on, or leans on a unique
//!   constraint with `ON CONFLICT`. Each place says which in a comment.
//! - **NULL order.** SQLite sorts NULL first, PostgreSQL last; no `ORDER BY`
//!   here sorts on a column that can be NULL among the rows it orders.
//! - **Text order.** No `ORDER BY` sorts free text: ids are fixed-shape
//!   UUIDs, ordered alike under any collation, and job kinds compare
//!   bytewise on both (`COLLATE "C"` on PostgreSQL).
//! - **Types.** Every integer column is `BIGINT` on PostgreSQL and booleans
//!   are 0/1 integers on both, so the `Any` driver binds and decodes `i64`
//!   alike; JSON is stored as text.

mod accounts;
mod audit;
mod cases;
mod consult;
mod derivatives;
mod dicom;
mod dicomweb;
mod images;
mod placement;
mod queue;
mod reminders;
mod reprocess;
mod rows;
mod sessions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection, Executor};

use super::{Catalog, CatalogError};

/// How a pool is sized and how long a caller waits for a connection.
///
/// `acquire_timeout` is also how long a call waits for a database that went
/// away before it fails with [`CatalogError::Unavailable`] (a 503): the pool
/// keeps trying to reconnect until then, and a stale connection is replaced
/// when it fails its check on the way out of the pool.
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
    /// The backend's own migrations: same tables, columns, constraints and
    /// indexes, each in the backend's types.
    migrator: &'static Migrator,
    /// Run on every new connection, before the pool hands it out.
    on_connect: Option<&'static str>,
    /// Starts a transaction that will write.
    pub(crate) begin_write: &'static str,
    /// Whether this process's writers take turns before `begin_write`.
    /// SQLite has one writer per database: writers that collide wait in its
    /// busy handler, which sleeps in growing steps, so eight at once run
    /// far slower than eight in a row. Queuing them in the process instead
    /// hands the lock on the moment it is free.
    serialize_writers: bool,
    /// Reads the audit chain head, locking it against a concurrent sealer.
    pub(crate) select_chain_head: &'static str,
    /// Reads a case in scope, locking the row for the rest of the transaction.
    pub(crate) select_case_for_update: &'static str,
    /// The job queue's statements.
    pub(crate) queue: &'static queue::QueueSql,
    /// The database clock, in epoch milliseconds: leases and service levels
    /// are timed by it, so processes with skewed clocks agree.
    pub(crate) select_now: &'static str,
    /// Locks one blob key (`$1`, hex) for the rest of the transaction, where
    /// the write transaction alone does not.
    pub(crate) lock_blob: Option<&'static str>,
}

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

const SQLITE: Dialect = Dialect {
    name: "sqlite",
    migrator: &SQLITE_MIGRATOR,
    // With synchronous=NORMAL, a commit acknowledged just before a power
    // loss can be lost.
    on_connect: Some(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    ),
    // A deferred transaction that reads and then writes can fail with
    // SQLITE_BUSY no matter how long it waits: take the write lock up front.
    // Every transaction below relies on it for the serialisation PostgreSQL
    // gets from row locks.
    begin_write: "BEGIN IMMEDIATE",
    serialize_writers: true,
    select_chain_head: "SELECT seq, hash FROM audit_chain_head WHERE id = 1",
    // BEGIN IMMEDIATE already holds the database's only write lock.
    select_case_for_update: concat!(
        "SELECT ",
        rows::case_columns!(),
        " FROM cases WHERE id = $1 AND ",
        cases::scoped!()
    ),
    queue: &queue::SQLITE_QUEUE,
    select_now: concat!("SELECT ", queue::sqlite_now!()),
    lock_blob: None,
};

const POSTGRES: Dialect = Dialect {
    name: "postgres",
    migrator: &POSTGRES_MIGRATOR,
    on_connect: None,
    // Spelled out so a server default of REPEATABLE READ or SERIALIZABLE
    // cannot turn lock waits into serialization failures: every decision is
    // made on a row this transaction has locked, and READ COMMITTED reads
    // that row's latest committed version once the lock is granted.
    begin_write: "BEGIN ISOLATION LEVEL READ COMMITTED",
    // Row locks let writers of different rows run at once.
    serialize_writers: false,
    // Two sealers (one per `relay serve`) queue on the head row; the second
    // reads the pending events only once the first has committed, so no
    // event is sealed twice and the chain never forks.
    select_chain_head: "SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE",
    // Every case change (claim, sign, submit, …) and every image added to a
    // case holds this lock: concurrent changes to one case run one after
    // the other, each on the state the previous one committed.
    select_case_for_update: concat!(
        "SELECT ",
        rows::case_columns!(),
        " FROM cases WHERE id = $1 AND ",
        cases::scoped!(),
        " FOR UPDATE"
    ),
    queue: &queue::POSTGRES_QUEUE,
    select_now: concat!("SELECT ", queue::postgres_now!()),
    // Transaction-scoped: released at commit or rollback, never leaked.
    lock_blob: Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"),
};

/// The catalog on a SQL database.
#[derive(Debug, Clone)]
pub struct SqlCatalog {
    pool: AnyPool,
    dialect: Dialect,
    /// Service levels given to cases at submission.
    sla: crate::model::SlaPolicy,
    /// This process's writers' turn, when the dialect serialises them.
    writer_turn: Arc<tokio::sync::Mutex<()>>,
    /// The store this process writes blobs to, once registered: recorded
    /// on every blob row it inserts.
    home_store: Arc<std::sync::OnceLock<i64>>,
}

/// A write transaction, and (on SQLite) this process's writer turn, held
/// until it commits or is dropped. Derefs to the connection, as a
/// transaction does.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl SqlCatalog {
    /// Connects by URL (`sqlite://path/to/relay.db`,
    /// `postgres://user@host/db`) and applies that backend's migrations.
    ///
    /// SQLite connections run in WAL mode with `synchronous=FULL`. Many
    /// processes may connect to one PostgreSQL database at once: migrations
    /// run under an advisory lock, so only one of them applies each.
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, CatalogError> {
        install_default_drivers();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let (dialect, url) = match scheme {
            "sqlite" => (SQLITE, sqlite_url(url)),
            "postgres" | "postgresql" => (POSTGRES, url.to_owned()),
            _ => return Err(CatalogError::UnsupportedUrl(redact_url(url))),
        };
        let on_connect = dialect.on_connect;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // A connection the server dropped (restart, failover, an
            // operator's pg_terminate_backend) is found out here and
            // replaced, instead of failing the next request.
            .test_before_acquire(true)
            // A connection still counting itself inside a transaction is
            // closed, not reused: every BEGIN on it would fail. That is
            // where a failed COMMIT on a full disk leaves it (SQLite rolls
            // the transaction back itself, so sqlx's ROLLBACK then fails
            // and its count stays at one). By the time a connection is
            // idle, the release ping has flushed any queued rollback.
            .before_acquire(|conn, _meta| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if let Some(statements) = on_connect {
                        conn.execute(statements).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        dialect.migrator.run(&pool).await?;
        Ok(Self {
            pool,
            dialect,
            sla: crate::model::SlaPolicy::default(),
            writer_turn: Arc::default(),
            home_store: Arc::default(),
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

    /// Starts a write transaction. On SQLite this waits for this process's
    /// writer turn first (never while holding another `WriteTx`: no
    /// transaction here opens a second).
    async fn begin_write(&self) -> Result<WriteTx, CatalogError> {
        let turn = match self.dialect.serialize_writers {
            true => Some(self.writer_turn.clone().lock_owned().await),
            false => None,
        };
        Ok(WriteTx {
            tx: self.pool.begin_with(self.dialect.begin_write).await?,
            _turn: turn,
        })
    }

    /// The database clock, read inside `conn`'s transaction.
    async fn db_now(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<crate::model::Timestamp, CatalogError> {
        Ok(crate::model::Timestamp::from_millis(
            sqlx::query_scalar(self.dialect.select_now)
                .fetch_one(conn)
                .await?,
        ))
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

    /// Regression: after SQLite rolled a transaction back by itself (as it
    /// does when a COMMIT fails on a full disk), sqlx's own ROLLBACK failed
    /// and left the pooled connection counting itself in a transaction;
    /// every later BEGIN on it failed until the server restarted.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_does_not_poison_the_pool() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("relay.db").display());
        let settings = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let catalog = SqlCatalog::connect(&url, &settings)
            .await
            .expect("connects");
        let mut tx = catalog.begin_write().await.expect("begin");
        // What SQLite does on its own after a failed COMMIT.
        sqlx::query("ROLLBACK")
            .execute(&mut *tx)
            .await
            .expect("rollback");
        drop(tx);
        for _ in 0..3 {
            let tx = catalog.begin_write().await.expect("begin again");
            tx.commit().await.expect("commit");
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

    /// The backends' migrations are twins: the same versions under the same
    /// names, so a migration added for one and forgotten for the other
    /// fails here rather than on a PostgreSQL site after an upgrade.
    #[test]
    fn every_migration_exists_for_both_backends() {
        let names = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&SQLITE_MIGRATOR), names(&POSTGRES_MIGRATOR));
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
