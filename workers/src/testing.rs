//! The external services Relay's own tests run against, found through the
//! environment that `.ci/test` prepares.
//!
//! - `RELAY_TEST_POSTGRES`: a PostgreSQL URL whose user may create
//!   databases; each test gets a fresh database on that server.
//! - `RELAY_TEST_S3`: an `s3://bucket?endpoint=…&region=…` blob URL, with
//!   credentials in the standard `AWS_*` variables; each test uses its own
//!   prefix in the bucket.
//! - `RELAY_TEST_PYTHON`: a Python with the real clients installed
//!   (`tuspy`, `dicomweb-client`, `schemathesis`), for the tests of the
//!   front doors and the OpenAPI fuzz suite.
//!
//! A developer running plain `cargo test` without them gets a loud skip
//! message. `.ci/test` sets `RELAY_REQUIRE_SERVICES=1`, which turns every
//! such skip into a failure, so CI cannot pass with a backend untested.

use std::sync::atomic::{AtomicU64, Ordering};

/// The PostgreSQL server for tests, or `None` (skip) when none is set up.
///
/// # Panics
/// When `RELAY_REQUIRE_SERVICES=1` and the variable is missing.
pub fn postgres(test: &str) -> Option<String> {
    service("RELAY_TEST_POSTGRES", "PostgreSQL", test)
}

/// A Python with the protocol peers the front-door tests drive, or `None`
/// (skip) when none is set up.
///
/// # Panics
/// When `RELAY_REQUIRE_SERVICES=1` and the variable is missing.
pub fn python_peers(test: &str) -> Option<String> {
    service("RELAY_TEST_PYTHON", "Python with the protocol peers", test)
}

/// The S3 blob URL for tests, or `None` (skip) when none is set up.
///
/// # Panics
/// When `RELAY_REQUIRE_SERVICES=1` and the variable is missing.
pub fn s3(test: &str) -> Option<String> {
    service("RELAY_TEST_S3", "S3", test)
}

fn service(var: &str, what: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("RELAY_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!(
                "{test}: {var} is not set but RELAY_REQUIRE_SERVICES=1; run the tests with .ci/test"
            )
        }
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: no {what} server ({var} is not set). \
                 Run .ci/test to start one. ***\n"
            );
            None
        }
    }
}

/// A name no other test in any process uses: for a fresh database or a
/// bucket prefix.
pub fn unique_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{stem}_{}_{n}", &id[id.len() - 12..])
}

/// Creates a fresh, empty database on the server at `server_url` and
/// returns its URL.
pub async fn fresh_postgres_database(server_url: &str) -> Result<String, sqlx::Error> {
    use sqlx::Connection;
    let name = unique_name("relay_test");
    let mut conn = sqlx::postgres::PgConnection::connect(server_url).await?;
    // `name` is made here of letters, digits and underscores only.
    let create = sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"));
    sqlx::Executor::execute(&mut conn, create).await?;
    conn.close().await?;
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server_url, String::new()),
    };
    let root = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
        _ => base,
    };
    Ok(format!("{root}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_within_a_process() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
