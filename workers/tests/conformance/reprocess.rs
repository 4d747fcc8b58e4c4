//! Reprocess runs: the keyset walk over blobs, its filters, and the run
//! record's checkpoints.

use relay_workers::catalog::{Derivatives, Reprocessing};
use relay_workers::model::DeriveState;
use relay_workers::reprocess::{BlobFilter, Counts, Failure, RunKind, RunOptions, RunState};

use super::fixture::Db;

on_every_backend!(
    the_walk_visits_every_blob_once_in_key_order_and_filters_by_case,
    checkpoints_add_up_and_a_finished_run_stays_finished,
    rederive_walks_stale_images_and_requeues_each_once,
);

async fn the_walk_visits_every_blob_once_in_key_order_and_filters_by_case(db: &Db) {
    let office = db.office("Archive").await;
    let case = db.draft(&office).await;
    let other = db.draft(&office).await;
    for n in 0..7u8 {
        db.attach(&office, &case, &[n; 3]).await;
    }
    db.attach(&office, &other, b"elsewhere").await;

    let all = BlobFilter::default();
    assert_eq!(db.catalog.count_blobs(&all).await.expect("count"), 8);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let batch = db
            .catalog
            .blob_batch(&cursor, 3, &all)
            .await
            .expect("batch");
        let Some(last) = batch.last() else { break };
        cursor = last.sha256.to_hex();
        seen.extend(batch.iter().map(|b| b.sha256.to_hex()));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted, "key order, no repeats");
    assert_eq!(seen.len(), 8);

    let one_case = BlobFilter {
        case: Some(case.id),
        ..BlobFilter::default()
    };
    assert_eq!(db.catalog.count_blobs(&one_case).await.expect("count"), 7);
    let batch = db
        .catalog
        .blob_batch("", 100, &one_case)
        .await
        .expect("batch");
    assert_eq!(batch.len(), 7);
    // The fixture's images are all JPEG.
    let of_type = |t: &str| BlobFilter {
        media_type: Some(t.to_owned()),
        ..BlobFilter::default()
    };
    assert_eq!(
        db.catalog
            .count_blobs(&of_type("image/jpeg"))
            .await
            .expect("count"),
        8
    );
    assert_eq!(
        db.catalog
            .count_blobs(&of_type("application/dicom"))
            .await
            .expect("count"),
        0
    );
}

async fn checkpoints_add_up_and_a_finished_run_stays_finished(db: &Db) {
    let run = db
        .catalog
        .start_run(RunKind::Verify, &RunOptions::default())
        .await
        .expect("start");
    assert_eq!(
        (run.state, run.cursor.as_deref()),
        (RunState::Running, None)
    );
    let delta = Counts {
        scanned: 3,
        ok: 2,
        fixed: 0,
        failed: 1,
        bytes: 300,
    };
    let failure = Failure {
        key: "ab".repeat(32),
        reason: "missing from the store".to_owned(),
    };
    for cursor in ["10", "20"] {
        db.catalog
            .checkpoint_run(&run.id, cursor, &delta, std::slice::from_ref(&failure))
            .await
            .expect("checkpoint");
    }
    let saved = db.catalog.get_run(&run.id).await.expect("get");
    assert_eq!(saved.cursor.as_deref(), Some("20"));
    assert_eq!(
        (
            saved.counts.scanned,
            saved.counts.failed,
            saved.counts.bytes
        ),
        (6, 2, 600)
    );
    assert_eq!(saved.failures, vec![failure.clone(), failure]);
    let finished = db.catalog.finish_run(&run.id).await.expect("finish");
    assert_eq!(finished.state, RunState::Finished);
    assert!(finished.finished_at.is_some());
    // A late checkpoint from a stale walker changes nothing.
    db.catalog
        .checkpoint_run(&run.id, "30", &delta, &[])
        .await
        .expect("checkpoint");
    let after = db.catalog.get_run(&run.id).await.expect("get");
    assert_eq!(
        (after.cursor.as_deref(), after.counts.scanned),
        (Some("20"), 6)
    );
    let listed = db.catalog.list_runs(5).await.expect("list");
    assert_eq!(listed[0].id, run.id);
}

async fn rederive_walks_stale_images_and_requeues_each_once(db: &Db) {
    let office = db.office("Rederive Clinic").await;
    let case = db.draft(&office).await;
    let old = db.attach(&office, &case, b"old rendering").await;
    let waiting = db.attach(&office, &case, b"still pending").await;
    // One image was given up on by an older derive version; the other still
    // waits for its first derive job.
    db.catalog
        .record_derive_failure(old.id, DeriveState::Unsupported, "no codec", 0)
        .await
        .expect("record");
    let all = BlobFilter::default();
    let stale = db
        .catalog
        .image_batch("", 10, &all, Some(1))
        .await
        .expect("batch");
    assert_eq!(stale.iter().map(|e| e.id).collect::<Vec<_>>(), vec![old.id]);
    assert_eq!(
        db.catalog.count_images(&all, Some(1)).await.expect("count"),
        1
    );
    // Current by version 0's standard: nothing stale.
    assert_eq!(
        db.catalog.count_images(&all, Some(0)).await.expect("count"),
        0
    );
    assert!(db.catalog.requeue_derive(old.id).await.expect("requeue"));
    assert!(
        !db.catalog.requeue_derive(old.id).await.expect("again"),
        "already pending"
    );
    assert!(
        !db.catalog
            .requeue_derive(waiting.id)
            .await
            .expect("pending")
    );
    assert_eq!(
        db.catalog.count_images(&all, None).await.expect("count"),
        0,
        "pending images are left to their job"
    );
    let jobs = db.jobs_of("derive").await;
    assert_eq!(jobs.len(), 3, "two from the uploads, one requeued");
}
