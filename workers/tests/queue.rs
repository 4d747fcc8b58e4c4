//! The job queue's promises, against a real SQLite catalog: leases expire
//! and are re-claimed, failures back off and dead-letter, operators retry
//! and cancel, a panic fails only its job, and two workers never run the
//! same job at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_workers::catalog::{PoolSettings, Queue, SqlCatalog};
use relay_workers::queue::{
    Job, JobError, JobFilter, JobState, Outcome, Registry, Runner, RunnerConfig, Typed,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    n: u32,
}

impl Job for Probe {
    const KIND: &'static str = "probe";
    const MAX_ATTEMPTS: u32 = 3;
}

async fn catalog(dir: &tempfile::TempDir) -> Arc<SqlCatalog> {
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    Arc::new(
        SqlCatalog::connect(&url, &PoolSettings::default())
            .await
            .expect("catalog"),
    )
}

fn config(worker: &str) -> RunnerConfig {
    RunnerConfig {
        worker: worker.to_owned(),
        concurrency: 2,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        grace: Duration::from_secs(5),
    }
}

fn runner(
    catalog: &Arc<SqlCatalog>,
    worker: &str,
    handler: impl relay_workers::queue::Handler + 'static,
) -> Runner {
    Runner::new(
        catalog.clone(),
        Registry::new().register(handler),
        config(worker),
    )
}

async fn enqueue(catalog: &SqlCatalog, n: u32) -> i64 {
    catalog
        .enqueue(
            Probe::KIND,
            &serde_json::json!({ "n": n }),
            Probe::MAX_ATTEMPTS,
        )
        .await
        .expect("enqueue")
}

#[tokio::test]
async fn a_job_runs_once_and_is_done() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 7).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let r = runner(
        &catalog,
        "w1",
        Typed::new(move |job: Probe| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(job.n);
                Ok(())
            }
        }),
    );
    assert_eq!(r.run_once().await.expect("run"), Outcome::Done(id));
    assert_eq!(r.run_once().await.expect("run"), Outcome::Idle);
    assert_eq!(*seen.lock().expect("lock"), vec![7]);
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Done, 1));
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_and_an_operator_retries() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 1).await;
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = fail.clone();
    let r = runner(
        &catalog,
        "w1",
        Typed::new(move |_: Probe| {
            let flag = flag.clone();
            async move {
                if flag.load(Ordering::SeqCst) {
                    Err(JobError::Retryable("store unreachable".into()))
                } else {
                    Ok(())
                }
            }
        }),
    );
    let before = relay_workers::model::Timestamp::now();
    assert_eq!(r.run_once().await.expect("run"), Outcome::Retrying(id));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
    assert_eq!(job.last_error.as_deref(), Some("store unreachable"));
    // First backoff: 2.5–5 s from now, so the job is not ready yet.
    let delay = job.run_at.as_millis() - before.as_millis();
    assert!((2_400..=5_500).contains(&delay), "delay {delay} ms");
    assert_eq!(r.run_once().await.expect("run"), Outcome::Idle);

    // Make it ready again twice more: attempts run out, the job is dead.
    for expected in [Outcome::Retrying(id), Outcome::Dead(id)] {
        make_ready(&dir, id).await;
        assert_eq!(r.run_once().await.expect("run"), expected);
    }
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Dead, 3));
    let dead = catalog
        .list_jobs(&JobFilter {
            state: Some(JobState::Dead),
            kind: None,
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(dead.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id]);

    // An operator retries it; it now succeeds.
    fail.store(false, Ordering::SeqCst);
    let job = catalog.retry_job(id).await.expect("retry");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert_eq!(r.run_once().await.expect("run"), Outcome::Done(id));
    assert!(
        catalog.retry_job(id).await.is_err(),
        "a done job is not retried"
    );
}

/// Moves a queued job's run_at into the past (the backoff, fast-forwarded).
async fn make_ready(dir: &tempfile::TempDir, id: i64) {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.path().join("relay.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("db");
    sqlx::query("UPDATE jobs SET run_at = 0 WHERE id = ?")
        .bind(id)
        .execute(&mut conn)
        .await
        .expect("ready");
}

#[tokio::test]
async fn fatal_errors_are_dead_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 1).await;
    let r = runner(
        &catalog,
        "w1",
        Typed::new(|_: Probe| async { Err(JobError::Fatal("unsupported transfer syntax".into())) }),
    );
    assert_eq!(r.run_once().await.expect("run"), Outcome::Dead(id));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1));
    assert_eq!(catalog.retry_dead().await.expect("retry all"), 1);
    let job = catalog.cancel_job(id).await.expect("cancel");
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        r.run_once().await.expect("run"),
        Outcome::Idle,
        "a cancelled job does not run"
    );
}

#[tokio::test]
async fn a_panic_fails_its_job_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let bad = enqueue(&catalog, 0).await;
    let good = enqueue(&catalog, 1).await;
    let r = runner(
        &catalog,
        "w1",
        Typed::new(|job: Probe| async move {
            assert!(job.n != 0, "boom on job zero");
            Ok(())
        }),
    );
    assert_eq!(r.run_once().await.expect("run"), Outcome::Retrying(bad));
    assert_eq!(r.run_once().await.expect("run"), Outcome::Done(good));
    let job = catalog.get_job(bad).await.expect("job");
    assert!(
        job.last_error
            .expect("error")
            .contains("panicked: boom on job zero")
    );
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_the_old_holder_cannot_finish() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 1).await;
    // A worker claims with a short lease and "dies" (never completes).
    let claimed = catalog
        .claim(&["probe"], "dead-worker", Duration::from_millis(200), 1)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(
        catalog
            .claim(&["probe"], "w2", Duration::from_secs(30), 1)
            .await
            .expect("claim")
            .is_empty(),
        "still leased"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = catalog
        .claim(&["probe"], "w2", Duration::from_secs(30), 1)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|j| (j.id, j.attempt)).collect::<Vec<_>>(),
        vec![(id, 2)]
    );
    assert!(
        !catalog
            .heartbeat(id, "dead-worker", Duration::from_secs(30))
            .await
            .expect("beat")
    );
    assert!(
        !catalog.complete(id, "dead-worker").await.expect("complete"),
        "the old holder cannot complete"
    );
    assert!(catalog.complete(id, "w2").await.expect("complete"));
}

#[tokio::test]
async fn a_lost_worker_on_the_last_attempt_leaves_the_job_dead() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
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
            .claim(&["probe"], "w2", Duration::from_secs(30), 1)
            .await
            .expect("claim")
            .is_empty()
    );
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(job.state, JobState::Dead);
    assert!(job.last_error.expect("error").contains("lease expired"));
}

#[tokio::test]
async fn released_jobs_run_again_without_losing_an_attempt() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 1).await;
    catalog
        .claim(&["probe"], "w1", Duration::from_secs(30), 1)
        .await
        .expect("claim");
    assert!(catalog.release(id, "w1").await.expect("release"));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_never_run_the_same_job_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let total = 60;
    for n in 0..total {
        enqueue(&catalog, n).await;
    }
    let running = Arc::new(Mutex::new(HashSet::new()));
    let runs = Arc::new(AtomicU32::new(0));
    let overlaps = Arc::new(AtomicU32::new(0));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut workers = Vec::new();
    for name in ["w1", "w2"] {
        let (running, runs, overlaps) = (running.clone(), runs.clone(), overlaps.clone());
        let handler = Typed::new(move |job: Probe| {
            let (running, runs, overlaps) = (running.clone(), runs.clone(), overlaps.clone());
            async move {
                if !running.lock().expect("lock").insert(job.n) {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.lock().expect("lock").remove(&job.n);
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        let r = runner(&catalog, name, handler);
        workers.push(tokio::spawn(r.run(shutdown.clone())));
    }
    for _ in 0..500 {
        if runs.load(Ordering::SeqCst) >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "a job ran twice at once"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        total,
        "every job ran exactly once"
    );
    let done = catalog
        .list_jobs(&JobFilter {
            state: Some(JobState::Done),
            kind: None,
            limit: 1000,
        })
        .await
        .expect("list");
    assert_eq!(done.len(), total as usize);
    let by: HashSet<_> = done.iter().filter_map(|j| j.worker.clone()).collect();
    assert_eq!(by.len(), 2, "both workers took part");
}

#[tokio::test]
async fn shutdown_releases_what_does_not_finish_in_the_grace_period() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    let id = enqueue(&catalog, 1).await;
    let mut cfg = config("slow");
    cfg.grace = Duration::from_millis(100);
    let r = Runner::new(
        catalog.clone(),
        Registry::new().register(Typed::new(|_: Probe| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })),
        cfg,
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(r.run(shutdown.clone()));
    for _ in 0..100 {
        if catalog.get_job(id).await.expect("job").state == JobState::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    worker.await.expect("worker");
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(
        (job.state, job.attempts, job.worker),
        (JobState::Queued, 0, None)
    );
}

#[tokio::test]
async fn stats_report_depth_and_age() {
    let dir = tempfile::tempdir().expect("dir");
    let catalog = catalog(&dir).await;
    enqueue(&catalog, 1).await;
    enqueue(&catalog, 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = catalog.queue_stats().await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!(
        (stats[0].kind.as_str(), stats[0].queued, stats[0].running),
        ("probe", 2, 0)
    );
    assert!(
        stats[0].oldest_queued_seconds >= 0.04,
        "{}",
        stats[0].oldest_queued_seconds
    );
}
