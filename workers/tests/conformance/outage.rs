//! PostgreSQL going away and coming back. (SQLite is a file in the same
//! process: it has no connection to lose, so these checks are PostgreSQL's
//! alone.) Calls made while the database is gone fail with `Unavailable` (a
//! 503 at the front door) within the pool's acquire timeout, and the same
//! catalog works again once the database answers: no restart, no reopen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_workers::audit::AuditContext;
use relay_workers::catalog::{Accounts, AuditLog, Catalog, PoolSettings, SqlCatalog};
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::fixture::{Db, text};

fn settings() -> PoolSettings {
    PoolSettings {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(1),
    }
}

/// An operator (or a failover) ends every session of the database, one of
/// them in the middle of a call: that call fails as `Unavailable`, and the
/// next calls get fresh connections from the same pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_sessions_fail_as_unavailable_and_the_pool_recovers() {
    let Some(server) =
        relay_workers::testing::postgres("outage::terminated_sessions_fail_as_unavailable")
    else {
        return;
    };
    let db = Db::postgres_on(&server, &settings()).await;
    let catalog = db.catalog.clone();
    let before = catalog
        .create_office(&AuditContext::operator(), text("Before"))
        .await
        .expect("office");

    // Hold the chain head so that the sealer's call is in flight, waiting.
    let mut admin = sqlx::PgConnection::connect(&db.url).await.expect("admin");
    let mut holder = admin.begin().await.expect("begin");
    sqlx::query("SELECT seq FROM audit_chain_head WHERE id = 1 FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock the head");
    let sealer = tokio::spawn({
        let catalog = catalog.clone();
        async move { catalog.seal_pending(100).await }
    });
    let mut watcher = sqlx::PgConnection::connect(&db.url).await.expect("watcher");
    let mut waiting = false;
    for _ in 0..250 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("activity");
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.close().await.expect("close");
    assert!(waiting, "the sealer waits on the lock");

    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut *holder)
    .await
    .expect("terminate");
    assert!(!ended.is_empty());
    let error = sealer
        .await
        .expect("task")
        .expect_err("the call in flight fails");
    assert!(error.is_transient(), "{error:?}");
    holder.rollback().await.expect("rollback");
    admin.close().await.expect("close");

    // The very next calls succeed on the same catalog.
    catalog.ping().await.expect("ping");
    let after = catalog
        .create_office(&AuditContext::operator(), text("After"))
        .await
        .expect("office after");
    let offices = catalog.list_offices().await.expect("offices");
    assert_eq!(
        offices.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![before.id, after.id],
        "nothing committed was lost"
    );
    assert!(catalog.seal_pending(100).await.expect("seal") >= 2);
    db.finish().await;
}

/// The database stops answering altogether (a restart, a network cut):
/// modelled by a TCP relay in front of the real server that drops every
/// connection and refuses new ones, then listens again on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_answers_unavailable_until_it_returns() {
    let Some(server) = relay_workers::testing::postgres("outage::a_database_that_goes_away") else {
        return;
    };
    let db = Db::postgres_on(&server, &settings()).await;
    let target = server_addr(&db.url).await;
    let mut relay = Relay::start(target, None).await;
    let through = with_host(&db.url, &relay.addr.to_string());
    let catalog = Arc::new(
        SqlCatalog::connect(&through, &settings())
            .await
            .expect("connect through the relay"),
    );
    let ctx = AuditContext::operator();
    catalog
        .create_office(&ctx, text("Before"))
        .await
        .expect("office");

    relay.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let error = catalog
            .create_office(&ctx, text("Lost"))
            .await
            .expect_err("no database");
        assert!(error.is_transient(), "{error:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "failed within the acquire timeout: {:?}",
            started.elapsed()
        );
    }
    let error = catalog.ping().await.expect_err("ping");
    assert!(error.is_transient(), "{error:?}");

    relay = Relay::start(target, Some(relay.addr)).await;
    catalog
        .ping()
        .await
        .expect("ping after the database returned");
    catalog
        .create_office(&ctx, text("After"))
        .await
        .expect("office after");
    let names: Vec<_> = catalog
        .list_offices()
        .await
        .expect("offices")
        .into_iter()
        .map(|o| o.name.as_str().to_owned())
        .collect();
    assert_eq!(names, vec!["Before", "After"]);
    catalog.close().await;
    relay.stop();
    db.finish().await;
}

/// Where the server of `url` listens.
async fn server_addr(url: &str) -> SocketAddr {
    let host = host_port(url);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    tokio::net::lookup_host(host)
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

/// The `host[:port]` part of a URL.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

fn with_host(url: &str, host: &str) -> String {
    url.replacen(host_port(url), host, 1)
}

/// A TCP relay to the database server that can be cut and restored.
struct Relay {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Relay {
    async fn start(target: SocketAddr, addr: Option<SocketAddr>) -> Relay {
        let listener = TcpListener::bind(addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()))
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("address");
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                    }
                });
            }
        });
        Relay { addr, stop }
    }

    /// Drops every relayed connection and stops listening.
    fn stop(&self) {
        self.stop.cancel();
    }
}
