//! Many callers at once, as many `relay` processes on one database are.
//! SQLite passes by having one writer; PostgreSQL by its row locks, `SKIP
//! LOCKED` and `ON CONFLICT`: the same checks hold on both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relay_workers::audit::{AuditContext, seal_all};
use relay_workers::catalog::{
    Accounts, AuditLog, CatalogError, Consult, Derivatives, Images, Queue,
};
use relay_workers::model::{Derivative, DeriveResult, Sha256, Specialty, Timestamp};
use tokio::task::JoinSet;

use super::fixture::{Db, text};

on_every_backend!(
    concurrent_claimers_never_get_the_same_job,
    concurrent_claims_of_one_case_have_one_winner,
    concurrent_uploads_of_the_same_bytes_record_one_image,
    concurrent_derive_runs_of_one_image_leave_one_set_of_renditions,
    concurrent_sealers_keep_one_unbroken_chain,
);

async fn concurrent_claimers_never_get_the_same_job(db: &Db) {
    const JOBS: usize = 200;
    const CLAIMERS: usize = 8;
    for n in 0..JOBS {
        db.catalog
            .enqueue("probe", &serde_json::json!({ "n": n }), 3)
            .await
            .expect("enqueue");
    }
    let mut claimers = JoinSet::new();
    for w in 0..CLAIMERS {
        let catalog = db.catalog.clone();
        claimers.spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            let mut idle = 0;
            // With SKIP LOCKED a claimer may come back empty while others
            // hold the last rows: stop only after a few empty rounds.
            while idle < 5 {
                let jobs = catalog
                    .claim(&["probe"], &worker, Duration::from_secs(60), 5)
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                for job in jobs {
                    assert_eq!(job.attempt, 1, "job {} claimed before", job.id);
                    mine.push(job.id);
                }
            }
            mine
        });
    }
    let mut all = Vec::new();
    let mut workers_with_jobs = 0;
    while let Some(claimed) = claimers.join_next().await {
        let claimed = claimed.expect("claimer");
        workers_with_jobs += usize::from(!claimed.is_empty());
        all.extend(claimed);
    }
    let distinct: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a job was handed out twice");
    assert_eq!(distinct.len(), JOBS, "every job was handed out");
    assert!(workers_with_jobs > 1, "claims ran side by side");
}

async fn concurrent_claims_of_one_case_have_one_winner(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let mut readers = Vec::new();
    for _ in 0..6 {
        readers.push(db.specialist(Specialty::Dermatology).await);
    }
    let mut claims = JoinSet::new();
    for reader in readers {
        let catalog = db.catalog.clone();
        claims.spawn(async move {
            catalog
                .claim_case(
                    &reader.ctx,
                    reader.scope(),
                    reader.user.id,
                    case.id,
                    Duration::from_secs(600),
                )
                .await
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = claims.join_next().await {
        match result.expect("task") {
            Ok(case) => winners.push(case.claimed_by),
            Err(CatalogError::AlreadyClaimed) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
}

async fn concurrent_uploads_of_the_same_bytes_record_one_image(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db.draft(&office).await;
    let mut uploads = JoinSet::new();
    for _ in 0..8 {
        let image = db.image(&office, &case, b"one photo, sent eight times");
        let (catalog, office) = (db.catalog.clone(), office.clone());
        uploads.spawn(async move {
            catalog
                .add_image(&office.ctx, office.scope(), &image, None)
                .await
                .expect("add image")
        });
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    while let Some(result) = uploads.join_next().await {
        let (image, new) = result.expect("task");
        created += usize::from(new);
        ids.insert(image.id);
    }
    assert_eq!((created, ids.len()), (1, 1));
    assert_eq!(db.jobs_of("derive").await.len(), 1);
}

async fn concurrent_derive_runs_of_one_image_leave_one_set_of_renditions(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db.draft(&office).await;
    let image = db.attach(&office, &case, b"photo").await;
    let rendition = |kind: &str, bytes: &[u8]| Derivative {
        image_id: image.id,
        kind: kind.to_owned(),
        frame: 0,
        voi: String::new(),
        derive_version: 1,
        sha256: Sha256::of(bytes),
        size: 5,
        media_type: "image/webp".to_owned(),
        width: 8,
        height: 8,
        created_at: Timestamp::now(),
    };
    let result = DeriveResult {
        version: 1,
        attributes: serde_json::json!({}),
        frames: 1,
        renditions: vec![
            rendition("thumbnail", b"thumb"),
            rendition("preview", b"prev"),
        ],
    };
    let mut runs = JoinSet::new();
    for n in 0..6 {
        let (catalog, mut result) = (db.catalog.clone(), result.clone());
        // Half the runs list their renditions the other way round.
        if n % 2 == 1 {
            result.renditions.reverse();
        }
        runs.spawn(async move { catalog.record_derive(image.id, &result).await });
    }
    while let Some(done) = runs.join_next().await {
        done.expect("task").expect("record derive");
    }
    for kind in ["thumbnail", "preview"] {
        assert!(
            db.catalog
                .rendition(image.id, kind, 0, "")
                .await
                .expect("rendition")
                .is_some()
        );
    }
}

async fn concurrent_sealers_keep_one_unbroken_chain(db: &Db) {
    let writers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for w in 0..4 {
        let catalog = db.catalog.clone();
        tasks.spawn(async move {
            for n in 0..15 {
                catalog
                    .create_office(&AuditContext::operator(), text(&format!("Office {w}-{n}")))
                    .await
                    .expect("office");
            }
        });
    }
    let mut sealers = JoinSet::new();
    for _ in 0..3 {
        let (catalog, done) = (db.catalog.clone(), writers_done.clone());
        sealers.spawn(async move {
            let mut sealed = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                sealed += u64::from(catalog.seal_pending(7).await.expect("seal"));
                // Leave SQLite's one write lock to the writers now and then.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sealed
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut sealed = 0;
    while let Some(n) = sealers.join_next().await {
        sealed += n.expect("sealer");
    }
    sealed += seal_all(db.catalog.as_ref()).await.expect("seal the rest");
    assert_eq!(sealed, 60, "every event sealed once");
    let report = db.catalog.verify_chain().await.expect("verify");
    assert_eq!(
        (report.verified, report.unsealed, report.broken),
        (60, 0, None)
    );
}
