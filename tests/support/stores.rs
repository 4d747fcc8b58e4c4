//! Shared stores for tests of many processes: a fresh PostgreSQL database
//! and a bucket prefix of the test's own, and the S3 URL rewrites that put a
//! [`Proxy`](super::proxy::Proxy) in front of the S3 endpoint.

use std::net::SocketAddr;

use relay_workers::testing;

/// A fresh database on the test PostgreSQL and a bucket prefix of this
/// test's own on the test S3 server, or `None` when the test is skipped.
pub async fn shared_stores(test: &str) -> Option<(String, String)> {
    let postgres = testing::postgres(test)?;
    let s3 = testing::s3(test)?;
    let database = testing::fresh_postgres_database(&postgres)
        .await
        .expect("a fresh database");
    Some((database, with_prefix(&s3, &testing::unique_name(test))))
}

/// `s3://bucket?query` with a prefix: `s3://bucket/prefix?query`.
pub fn with_prefix(url: &str, prefix: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    format!("{}/{prefix}?{query}", path.trim_end_matches('/'))
}

/// The address in an S3 URL's `endpoint=http://host:port`.
pub fn endpoint(url: &str) -> SocketAddr {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let endpoint = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("endpoint="))
        .expect("the test S3 url names its endpoint");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    host.parse().expect("endpoint is an ip:port")
}

/// The same S3 URL with its endpoint at `addr` (a proxy in front of it).
pub fn via(url: &str, addr: SocketAddr) -> String {
    url.replace(
        &format!("endpoint=http://{}", endpoint(url)),
        &format!("endpoint=http://{addr}"),
    )
}
