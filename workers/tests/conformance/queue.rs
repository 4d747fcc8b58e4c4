//! The job queue as workers see it: jobs run once, failures back off and
//! dead-letter, operators retry and cancel, a panic fails only its job, two
//! workers never run the same job at once, and shutdown gives jobs back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_workers::catalog::{CatalogError, Queue, SqlCatalog};
use relay_workers::model::Timestamp;
use relay_workers::queue::{
    Handler, Job, JobError, JobFilter, JobState, Outcome, Registry, Runner, RunnerConfig, Typed,
};
use serde::{Deserialize, Serialize};

use super::fixture::{Db, assert_kind, eventually};

on_every_backend!(
    a_job_runs_once_and_is_done,
    retryable_failures_back_off_then_dead_letter_and_an_operator_retries,
    fatal_errors_are_dead_at_once,
    a_panic_fails_its_job_and_the_worker_goes_on,
    two_workers_never_run_the_same_job_at_once,
    shutdown_releases_what_does_not_finish_in_the_grace_period,
    stats_report_depth_and_age,
);

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Probe {
    n: u32,
}

impl Job for Probe {
    const KIND: &'static str = "probe";
    const MAX_ATTEMPTS: u32 = 3;
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

fn runner(catalog: &Arc<SqlCatalog>, worker: &str, handler: impl Handler + 'static) -> Runner {
    Runner::new(
        catalog.clone(),
        Registry::new().register(handler),
        config(worker),
    )
}

pub(super) async fn enqueue(catalog: &SqlCatalog, n: u32) -> i64 {
    catalog
        .enqueue(
            Probe::KIND,
            &serde_json::json!({ "n": n }),
            Probe::MAX_ATTEMPTS,
        )
        .await
        .expect("enqueue")
}

async fn a_job_runs_once_and_is_done(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 7).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let r = runner(
        catalog,
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
    assert_eq!(job.payload, serde_json::json!({ "n": 7 }));
}

async fn retryable_failures_back_off_then_dead_letter_and_an_operator_retries(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    let fail = Arc::new(AtomicBool::new(true));
    let flag = fail.clone();
    let r = runner(
        catalog,
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
    let before = Timestamp::now();
    assert_eq!(r.run_once().await.expect("run"), Outcome::Retrying(id));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 1));
    assert_eq!(job.last_error.as_deref(), Some("store unreachable"));
    assert_eq!((job.worker, job.lease_until), (None, None));
    // First backoff: 2.5–5 s from now (the database clock, which on this
    // machine is the test's clock), so the job is not ready yet.
    let delay = job.run_at.as_millis() - before.as_millis();
    assert!((2_400..=5_500).contains(&delay), "delay {delay} ms");
    assert_eq!(r.run_once().await.expect("run"), Outcome::Idle);

    // Make it ready again twice more: attempts run out, the job is dead.
    for expected in [Outcome::Retrying(id), Outcome::Dead(id)] {
        db.make_ready(id).await;
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
    assert_kind(
        catalog.retry_job(id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "a done job is not retried",
    );
}

async fn fatal_errors_are_dead_at_once(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
    let r = runner(
        catalog,
        "w1",
        Typed::new(|_: Probe| async { Err(JobError::Fatal("unsupported transfer syntax".into())) }),
    );
    assert_eq!(r.run_once().await.expect("run"), Outcome::Dead(id));
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Dead, 1));
    assert_eq!(catalog.retry_dead().await.expect("retry all"), 1);
    assert_eq!(catalog.retry_dead().await.expect("retry all"), 0);
    let job = catalog.cancel_job(id).await.expect("cancel");
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        r.run_once().await.expect("run"),
        Outcome::Idle,
        "a cancelled job does not run"
    );
    // A cancelled job can be retried; a cancelled one cannot be cancelled.
    assert_kind(
        catalog.cancel_job(id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "cancel twice",
    );
    let job = catalog.retry_job(id).await.expect("retry cancelled");
    assert_eq!(job.state, JobState::Queued);
}

async fn a_panic_fails_its_job_and_the_worker_goes_on(db: &Db) {
    let catalog = &db.catalog;
    let bad = enqueue(catalog, 0).await;
    let good = enqueue(catalog, 1).await;
    let r = runner(
        catalog,
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
async fn two_workers_never_run_the_same_job_at_once(db: &Db) {
    let catalog = &db.catalog;
    let total = 60;
    for n in 0..total {
        enqueue(catalog, n).await;
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
        let r = runner(catalog, name, handler);
        workers.push(tokio::spawn(r.run(shutdown.clone())));
    }
    let finished = eventually(Duration::from_secs(10), || {
        let runs = runs.clone();
        async move { runs.load(Ordering::SeqCst) >= total }
    })
    .await;
    shutdown.cancel();
    for w in workers {
        w.await.expect("worker");
    }
    assert!(finished, "all jobs ran in time");
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

async fn shutdown_releases_what_does_not_finish_in_the_grace_period(db: &Db) {
    let catalog = &db.catalog;
    let id = enqueue(catalog, 1).await;
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
    let started = eventually(Duration::from_secs(5), || async {
        catalog.get_job(id).await.expect("job").state == JobState::Running
    })
    .await;
    assert!(started, "the job started");
    shutdown.cancel();
    worker.await.expect("worker");
    let job = catalog.get_job(id).await.expect("job");
    assert_eq!(
        (job.state, job.attempts, job.worker),
        (JobState::Queued, 0, None)
    );
}

async fn stats_report_depth_and_age(db: &Db) {
    let catalog = &db.catalog;
    enqueue(catalog, 1).await;
    enqueue(catalog, 2).await;
    let dead = catalog
        .enqueue("another", &serde_json::json!({}), 1)
        .await
        .expect("enqueue");
    catalog
        .claim(&["another"], "w1", Duration::from_secs(30), 1)
        .await
        .expect("claim");
    assert!(catalog.fail(dead, "w1", "bad", None).await.expect("fail"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = catalog.queue_stats().await.expect("stats");
    let rows: Vec<_> = stats
        .iter()
        .map(|s| (s.kind.as_str(), s.queued, s.running, s.dead))
        .collect();
    assert_eq!(rows, vec![("another", 0, 0, 1), ("probe", 2, 0, 0)]);
    assert_eq!(stats[0].oldest_queued_seconds, 0.0);
    assert!(
        stats[1].oldest_queued_seconds >= 0.04,
        "{}",
        stats[1].oldest_queued_seconds
    );
}
