//! Leases, as the queue's claim, heartbeat and finish calls see them: timed
//! by the database clock, held by one worker at a time, claimed in batches
//! of the named kinds only, re-claimed once expired.

use std::time::Duration;

use relay_workers::catalog::{CatalogError, Queue};
use relay_workers::model::Timestamp;
use relay_workers::queue::{JobFilter, JobState};

use super::fixture::{Db, assert_kind};
use super::queue::enqueue;

on_every_backend!(
    an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish,
    a_heartbeat_keeps_the_lease_on_the_database_clock,
    a_lost_worker_on_the_last_attempt_leaves_the_job_dead,
    released_jobs_run_again_without_losing_an_attempt,
    claims_take_only_the_named_kinds_in_batches_oldest_first,
    only_the_holder_finishes_and_only_some_states_change,
);

const SHORT: Duration = Duration::from_millis(200);
const LONG: Duration = Duration::from_secs(30);

async fn an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    // A worker claims with a short lease and "dies" (never completes).
    let claimed = catalog
        .claim(&["probe"], "dead-worker", SHORT, 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].id, claimed[0].attempt), (id, 1));
    assert!(
        catalog
            .claim(&["probe"], "w2", LONG, 1)
            .await
            .expect("claim")
            .is_empty(),
        "still leased"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    let again = catalog
        .claim(&["probe"], "w2", LONG, 1)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(),
        vec![(id, 2)]
    );
    assert!(
        !catalog
            .heartbeat(id, "dead-worker", LONG)
            .await
            .expect("beat")
    );
    assert!(
        !catalog.complete(id, "dead-worker").await.expect("complete"),
        "the old holder cannot complete"
    );
    assert!(
        !catalog
            .fail(id, "dead-worker", "late", None)
            .await
            .expect("fail"),
        "nor fail it"
    );
    assert!(catalog.complete(id, "w2").await.expect("complete"));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(
        (job.state, job.worker.as_deref()),
        (JobState::Done, Some("w2"))
    );
}

/// Leases are timestamps on the database clock: a heartbeat moves the end
/// from the database's now, and another claimer compares with the same now.
async fn a_heartbeat_keeps_the_lease_on_the_database_clock(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    let claimed = catalog
        .claim(&["probe"], "w1", SHORT, 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    let first = catalog
        .get_job(id)
        .await
        .expect("job")
        .lease_until
        .expect("leased");
    assert!(catalog.heartbeat(id, "w1", LONG).await.expect("beat"));
    let extended = catalog
        .get_job(id)
        .await
        .expect("job")
        .lease_until
        .expect("leased");
    assert!(
        extended.as_millis() - first.as_millis() >= 29_000,
        "{first:?} → {extended:?}"
    );
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert!(
        catalog
            .claim(&["probe"], "w2", LONG, 1)
            .await
            .expect("claim")
            .is_empty(),
        "the heartbeat kept the job"
    );
    assert!(
        !catalog.heartbeat(id, "w2", LONG).await.expect("beat"),
        "only the holder extends"
    );
    assert!(
        !catalog
            .heartbeat(id + 1000, "w1", LONG)
            .await
            .expect("beat")
    );
}

async fn a_lost_worker_on_the_last_attempt_leaves_the_job_dead(db: &Db) {
    let catalog = &db.catalog;
    let id = catalog
        .enqueue("probe", &serde_json::json!({"n": 1}), 1)
        .await
        .expect("enqueue");
    catalog
        .claim(&["probe"], "dead-worker", Duration::from_millis(100), 1)
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        catalog
            .claim(&["probe"], "w2", LONG, 1)
            .await
            .expect("claim")
            .is_empty()
    );
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.worker), (JobState::Dead, None));
    assert!(job.last_error.expect("error").contains("lease expired"));
}

async fn released_jobs_run_again_without_losing_an_attempt(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    catalog
        .claim(&["probe"], "w1", LONG, 1)
        .await
        .expect("claim");
    assert!(!catalog.release(id, "w2").await.expect("release"));
    assert!(catalog.release(id, "w1").await.expect("release"));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(
        (job.state, job.attempts, job.worker),
        (JobState::Queued, 0, None)
    );
    let again = catalog
        .claim(&["probe"], "w2", LONG, 1)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 1);
}

async fn claims_take_only_the_named_kinds_in_batches_oldest_first(db: &Db) {
    let catalog = &db.catalog;
    let mut probes = Vec::new();
    for n in 0..5 {
        probes.push(enqueue(catalog, n).await);
    }
    let other = catalog
        .enqueue("other", &serde_json::json!({}), 3)
        .await
        .expect("enqueue");
    let mut first = catalog
        .claim(&["probe"], "w1", LONG, 3)
        .await
        .expect("claim");
    // The order of a batch is not promised; which jobs are in it is.
    first.sort_by_key(|j| j.id);
    assert_eq!(
        first.iter().map(|j| j.id).collect::<Vec<_>>(),
        probes[..3].to_vec()
    );
    assert!(first.iter().all(|j| j.kind == "probe" && j.attempt == 1));
    let rest = catalog
        .claim(&["probe"], "w1", LONG, 10)
        .await
        .expect("claim");
    assert_eq!(rest.len(), 2);
    let both = catalog
        .claim(&["probe", "other"], "w1", LONG, 10)
        .await
        .expect("claim");
    assert_eq!(both.iter().map(|j| j.id).collect::<Vec<_>>(), vec![other]);
    assert!(
        catalog
            .claim(&[], "w1", LONG, 10)
            .await
            .expect("claim")
            .is_empty(),
        "no kinds, no jobs"
    );
    let running = catalog
        .list_jobs(&JobFilter {
            state: Some(JobState::Running),
            kind: Some("probe".to_owned()),
            limit: 100,
        })
        .await
        .expect("list");
    assert_eq!(running.len(), 5);
    assert!(
        running.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
}

async fn only_the_holder_finishes_and_only_some_states_change(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    assert_kind(
        catalog.retry_job(id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "a queued job is not retried",
    );
    catalog
        .claim(&["probe"], "w1", LONG, 1)
        .await
        .expect("claim");
    assert_kind(
        catalog.cancel_job(id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "a running job is not cancelled",
    );
    assert!(!catalog.complete(id, "w2").await.expect("complete"));
    let before = Timestamp::now();
    assert!(
        catalog
            .fail(id, "w1", &"x".repeat(5000), Some(Duration::from_secs(60)))
            .await
            .expect("fail")
    );
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(
        job.last_error.map(|e| e.chars().count()),
        Some(2000),
        "errors are kept short"
    );
    assert!(job.run_at.as_millis() >= before.as_millis() + 59_000);
    assert_kind(
        catalog.get_job(id + 1000).await,
        CatalogError::is_not_found,
        "unknown job",
    );
}
