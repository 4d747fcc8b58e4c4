//! Which store keeps each blob: registered stores, rows that predate them,
//! the walk `migrate` makes over blobs not yet on its target, the guarded
//! move, and the per-blob lock `sweep` deletes under.
//!
//! On SQLite a held blob lock is the write transaction itself, so it holds
//! back every writer, not just those of its key; on PostgreSQL it is an
//! advisory lock on the key. Both hold back an upload of the same bytes,
//! which is what the exclusion check asserts; only PostgreSQL is also
//! checked to let an upload of other bytes through.

use std::time::Duration;

use relay_workers::catalog::{BlobStanding, Derivatives, Images, Placement, Reprocessing};
use relay_workers::model::{Derivative, DeriveResult, ImageId, Sha256, Timestamp};
use relay_workers::reprocess::BlobFilter;

use super::fixture::{Backend, Db};

on_every_backend!(
    stores_are_registered_once_each_under_distinct_ids,
    rows_written_before_any_store_belong_to_the_first_registered,
    placement_batch_walks_blobs_not_on_the_target_in_key_order,
    move_blob_moves_only_from_the_store_the_row_names,
    lock_blob_tells_unrecorded_unreferenced_and_referenced_apart,
    forget_deletes_an_unreferenced_row_and_keeps_a_referenced_one,
    a_held_blob_lock_holds_back_an_upload_of_the_same_bytes_until_released,
);

const FIRST: &str = "file:///srv/relay/blobs";
const SECOND: &str = "s3://relay-archive/blobs?region=eu-west-1";
const THIRD: &str = "file:///mnt/cold/blobs";

fn rendition(image: ImageId, bytes: &[u8]) -> Derivative {
    Derivative {
        image_id: image,
        kind: "thumbnail".to_owned(),
        frame: 0,
        voi: String::new(),
        derive_version: 1,
        sha256: Sha256::of(bytes),
        size: u64::try_from(bytes.len()).expect("size"),
        media_type: "image/webp".to_owned(),
        width: 64,
        height: 48,
        created_at: Timestamp::now(),
    }
}

fn derived(renditions: Vec<Derivative>) -> DeriveResult {
    DeriveResult {
        version: 1,
        attributes: serde_json::json!({}),
        frames: 1,
        renditions,
    }
}

async fn standing_of(db: &Db, key: &Sha256) -> BlobStanding {
    let guard = db.catalog.lock_blob(key).await.expect("lock");
    let standing = guard.standing();
    guard.release().await.expect("release");
    standing
}

async fn location(db: &Db, key: &Sha256) -> Option<String> {
    db.catalog.blob_location(key).await.expect("location")
}

async fn stores_are_registered_once_each_under_distinct_ids(db: &Db) {
    assert_eq!(db.catalog.list_stores().await.expect("list"), vec![]);
    let first = db.catalog.register_store(FIRST).await.expect("register");
    let again = db.catalog.register_store(FIRST).await.expect("again");
    assert_eq!(first, again, "registering a store twice gives its id back");
    let second = db.catalog.register_store(SECOND).await.expect("second");
    assert_ne!(first, second);
    assert_eq!(
        db.catalog.register_store(SECOND).await.expect("again"),
        second
    );
    assert_eq!(
        db.catalog.list_stores().await.expect("list"),
        vec![(first, FIRST.to_owned()), (second, SECOND.to_owned())],
        "each store once, by id"
    );
}

async fn rows_written_before_any_store_belong_to_the_first_registered(db: &Db) {
    let office = db.office("Placement Clinic").await;
    let case = db.draft(&office).await;
    let old = db.attach(&office, &case, b"uploaded before stores").await;
    let old_thumb = rendition(old.id, b"old thumbnail");
    db.catalog
        .record_derive(old.id, &derived(vec![old_thumb.clone()]))
        .await
        .expect("derive");
    assert_eq!(location(db, &Sha256::of(b"never uploaded")).await, None);

    let first = db.catalog.register_store(FIRST).await.expect("first");
    let second = db.catalog.register_store(SECOND).await.expect("second");
    for key in [old.stored_sha256, old_thumb.sha256] {
        assert_eq!(location(db, &key).await.as_deref(), Some(FIRST));
    }

    db.catalog.place_new_blobs_in(second);
    let new = db.attach(&office, &case, b"uploaded after").await;
    assert_eq!(
        location(db, &new.stored_sha256).await.as_deref(),
        Some(SECOND)
    );
    let new_thumb = rendition(new.id, b"new thumbnail");
    db.catalog
        .record_rendition(&new_thumb)
        .await
        .expect("rendition");
    assert_eq!(
        location(db, &new_thumb.sha256).await.as_deref(),
        Some(SECOND)
    );
    // The same bytes uploaded again keep the row they have.
    let other = db.draft(&office).await;
    db.attach(&office, &other, b"uploaded before stores").await;
    assert_eq!(
        location(db, &old.stored_sha256).await.as_deref(),
        Some(FIRST)
    );

    // The home store is set once; a store registered later does not take
    // over the rows that predate stores.
    db.catalog.place_new_blobs_in(first);
    let third = db.catalog.register_store(THIRD).await.expect("third");
    assert!(third > second);
    let later = db.attach(&office, &case, b"uploaded later still").await;
    assert_eq!(
        location(db, &later.stored_sha256).await.as_deref(),
        Some(SECOND)
    );
    assert_eq!(
        location(db, &old.stored_sha256).await.as_deref(),
        Some(FIRST)
    );
    assert_eq!(
        standing_of(db, &old.stored_sha256).await,
        BlobStanding::Referenced { store: first }
    );
    assert_eq!(
        standing_of(db, &later.stored_sha256).await,
        BlobStanding::Referenced { store: second }
    );
}

async fn placement_batch_walks_blobs_not_on_the_target_in_key_order(db: &Db) {
    let office = db.office("Migrating Clinic").await;
    let case = db.draft(&office).await;
    let other = db.draft(&office).await;
    let mut on_first = Vec::new();
    for n in 0..6u8 {
        let bytes = vec![n; usize::from(n) + 1];
        on_first.push(db.attach(&office, &case, &bytes).await);
    }
    let elsewhere = [
        db.attach(&office, &other, b"other case, one").await,
        db.attach(&office, &other, b"other case, two").await,
    ];
    let first = db.catalog.register_store(FIRST).await.expect("first");
    let second = db.catalog.register_store(SECOND).await.expect("second");
    // Two already moved, two uploaded straight to the target.
    let moved: Vec<_> = on_first.drain(..2).collect();
    for image in &moved {
        assert!(
            db.catalog
                .move_blob(&image.stored_sha256, first, second)
                .await
                .expect("move")
        );
    }
    db.catalog.place_new_blobs_in(second);
    let fresh = [
        db.attach(&office, &case, b"straight to the target").await,
        db.attach(&office, &case, b"also on the target").await,
    ];

    let mut expected: Vec<(Sha256, u64)> = on_first
        .iter()
        .chain(&elsewhere)
        .map(|i| (i.stored_sha256, i.stored_size))
        .collect();
    expected.sort();
    let all = BlobFilter::default();
    assert_eq!(
        db.catalog.count_not_on(&all, second).await.expect("count"),
        6
    );

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let batch = db
            .catalog
            .placement_batch(&cursor, 4, &all, second)
            .await
            .expect("batch");
        assert!(batch.len() <= 4);
        let Some(last) = batch.last() else { break };
        cursor = last.sha256.to_hex();
        for placed in &batch {
            assert_eq!(
                (placed.store, placed.store_url.as_str()),
                (first, FIRST),
                "{placed:?} is where its row says"
            );
        }
        seen.extend(batch.iter().map(|p| (p.sha256, p.size)));
    }
    assert_eq!(seen, expected, "every blob not on the target, in key order");

    // After a cursor: only later keys (the cursor need not be a blob's).
    let after = expected[2].0.to_hex();
    let rest = db
        .catalog
        .placement_batch(&after, 100, &all, second)
        .await
        .expect("batch");
    assert_eq!(
        rest.iter().map(|p| (p.sha256, p.size)).collect::<Vec<_>>(),
        expected[3..].to_vec()
    );
    let last = expected[5].0.to_hex();
    assert!(
        db.catalog
            .placement_batch(&last, 100, &all, second)
            .await
            .expect("batch")
            .is_empty()
    );

    // The other way round: the four on the second store.
    let mut on_second: Vec<Sha256> = moved
        .iter()
        .chain(&fresh)
        .map(|i| i.stored_sha256)
        .collect();
    on_second.sort();
    let back = db
        .catalog
        .placement_batch("", 100, &all, first)
        .await
        .expect("batch");
    assert_eq!(back.iter().map(|p| p.sha256).collect::<Vec<_>>(), on_second);
    assert!(
        back.iter()
            .all(|p| p.store == second && p.store_url == SECOND)
    );
    assert_eq!(
        db.catalog.count_not_on(&all, first).await.expect("count"),
        4
    );
    // A store nothing is on: every blob.
    let third = db.catalog.register_store(THIRD).await.expect("third");
    assert_eq!(
        db.catalog.count_not_on(&all, third).await.expect("count"),
        10
    );

    // A filter narrows both the walk and its count alike.
    let of_case = |case| BlobFilter {
        case: Some(case),
        ..BlobFilter::default()
    };
    for (filter, want) in [(of_case(case.id), 4), (of_case(other.id), 2)] {
        let batch = db
            .catalog
            .placement_batch("", 100, &filter, second)
            .await
            .expect("batch");
        assert_eq!(batch.len(), want, "{filter:?}");
        assert_eq!(
            db.catalog
                .count_not_on(&filter, second)
                .await
                .expect("count"),
            want as u64
        );
        let mut keys: Vec<Sha256> = batch.iter().map(|p| p.sha256).collect();
        keys.sort();
        assert_eq!(keys, batch.iter().map(|p| p.sha256).collect::<Vec<_>>());
    }
    assert_eq!(
        db.catalog
            .placement_batch("", 100, &of_case(other.id), second)
            .await
            .expect("batch")
            .iter()
            .map(|p| p.sha256)
            .collect::<std::collections::BTreeSet<_>>(),
        elsewhere.iter().map(|i| i.stored_sha256).collect()
    );
    let dicom = BlobFilter {
        media_type: Some("application/dicom".to_owned()),
        ..BlobFilter::default()
    };
    assert_eq!(
        db.catalog
            .count_not_on(&dicom, second)
            .await
            .expect("count"),
        0
    );
    assert!(
        db.catalog
            .placement_batch("", 100, &dicom, second)
            .await
            .expect("batch")
            .is_empty()
    );
}

async fn move_blob_moves_only_from_the_store_the_row_names(db: &Db) {
    let office = db.office("Moving Clinic").await;
    let case = db.draft(&office).await;
    let image = db.attach(&office, &case, b"to be moved").await;
    let key = image.stored_sha256;
    let first = db.catalog.register_store(FIRST).await.expect("first");
    let second = db.catalog.register_store(SECOND).await.expect("second");
    let third = db.catalog.register_store(THIRD).await.expect("third");

    assert!(
        !db.catalog
            .move_blob(&key, second, third)
            .await
            .expect("move"),
        "the row says the first store (by default), not the second"
    );
    assert_eq!(location(db, &key).await.as_deref(), Some(FIRST));
    assert!(
        db.catalog
            .move_blob(&key, first, second)
            .await
            .expect("move")
    );
    assert_eq!(location(db, &key).await.as_deref(), Some(SECOND));
    assert!(
        !db.catalog
            .move_blob(&key, first, third)
            .await
            .expect("move"),
        "a stale source changes nothing"
    );
    assert_eq!(location(db, &key).await.as_deref(), Some(SECOND));
    assert!(
        !db.catalog
            .move_blob(&Sha256::of(b"no such blob"), first, second)
            .await
            .expect("move"),
        "no row, nothing moved"
    );
    // Back to the first store, now recorded rather than assumed.
    assert!(
        db.catalog
            .move_blob(&key, second, first)
            .await
            .expect("move")
    );
    assert_eq!(location(db, &key).await.as_deref(), Some(FIRST));
    assert_eq!(
        standing_of(db, &key).await,
        BlobStanding::Referenced { store: first }
    );
}

/// An image with a thumbnail that derive replaced: the first thumbnail's
/// blob row is left unreferenced.
async fn with_a_replaced_thumbnail(db: &Db) -> (Sha256, Sha256, Sha256) {
    let office = db.office("Rendering Clinic").await;
    let case = db.draft(&office).await;
    let image = db.attach(&office, &case, b"an original").await;
    let old = rendition(image.id, b"first thumbnail");
    let new = rendition(image.id, b"second thumbnail");
    for thumb in [&old, &new] {
        db.catalog
            .record_derive(image.id, &derived(vec![thumb.clone()]))
            .await
            .expect("derive");
    }
    let current = db
        .catalog
        .rendition(image.id, "thumbnail", 0, "")
        .await
        .expect("rendition")
        .expect("a thumbnail");
    assert_eq!(current.sha256, new.sha256, "the second replaced the first");
    (image.stored_sha256, old.sha256, new.sha256)
}

async fn lock_blob_tells_unrecorded_unreferenced_and_referenced_apart(db: &Db) {
    let first = db.catalog.register_store(FIRST).await.expect("first");
    let (original, replaced, current) = with_a_replaced_thumbnail(db).await;
    // A row inserted with nothing referring to it (and no store: the first).
    let orphan = Sha256::of(b"an orphan row");
    db.execute_text(
        "INSERT INTO blobs (sha256, size, created_at) VALUES ($1, 13, 0)",
        &orphan.to_hex(),
    )
    .await
    .expect("orphan row");

    assert_eq!(
        standing_of(db, &Sha256::of(b"never stored")).await,
        BlobStanding::Unrecorded
    );
    assert_eq!(
        standing_of(db, &original).await,
        BlobStanding::Referenced { store: first }
    );
    assert_eq!(
        standing_of(db, &current).await,
        BlobStanding::Referenced { store: first }
    );
    assert_eq!(
        standing_of(db, &replaced).await,
        BlobStanding::Unreferenced { store: first }
    );
    assert_eq!(
        standing_of(db, &orphan).await,
        BlobStanding::Unreferenced { store: first }
    );

    // The store it names is the row's own once recorded.
    let second = db.catalog.register_store(SECOND).await.expect("second");
    assert!(
        db.catalog
            .move_blob(&replaced, first, second)
            .await
            .expect("move")
    );
    assert_eq!(
        standing_of(db, &replaced).await,
        BlobStanding::Unreferenced { store: second }
    );
    // A release changes nothing.
    assert_eq!(location(db, &replaced).await.as_deref(), Some(SECOND));
}

async fn forget_deletes_an_unreferenced_row_and_keeps_a_referenced_one(db: &Db) {
    db.catalog.register_store(FIRST).await.expect("first");
    let (original, replaced, current) = with_a_replaced_thumbnail(db).await;
    let all = BlobFilter::default();
    assert_eq!(db.catalog.count_blobs(&all).await.expect("count"), 3);

    let guard = db.catalog.lock_blob(&replaced).await.expect("lock");
    assert!(matches!(
        guard.standing(),
        BlobStanding::Unreferenced { .. }
    ));
    guard.forget().await.expect("forget");
    assert_eq!(location(db, &replaced).await, None, "its row is gone");
    assert_eq!(standing_of(db, &replaced).await, BlobStanding::Unrecorded);
    assert_eq!(db.catalog.count_blobs(&all).await.expect("count"), 2);

    for key in [original, current] {
        let guard = db.catalog.lock_blob(&key).await.expect("lock");
        assert!(matches!(guard.standing(), BlobStanding::Referenced { .. }));
        guard.forget().await.expect("forget a referenced row");
        assert_eq!(location(db, &key).await.as_deref(), Some(FIRST));
        assert!(matches!(
            standing_of(db, &key).await,
            BlobStanding::Referenced { .. }
        ));
    }
    // Forgetting what has no row is a no-op.
    let never = Sha256::of(b"never stored");
    let guard = db.catalog.lock_blob(&never).await.expect("lock");
    guard.forget().await.expect("forget nothing");
    assert_eq!(db.catalog.count_blobs(&all).await.expect("count"), 2);
}

/// What `sweep` relies on: while it holds a blob's lock, an upload (or a
/// rendition) of the same bytes cannot commit its row; once the lock goes,
/// it does.
async fn a_held_blob_lock_holds_back_an_upload_of_the_same_bytes_until_released(db: &Db) {
    const HELD: Duration = Duration::from_millis(250);
    const LIMIT: Duration = Duration::from_secs(10);
    let first = db.catalog.register_store(FIRST).await.expect("first");
    let office = db.office("Contended Clinic").await;
    let case = db.draft(&office).await;
    let image = db.image(&office, &case, b"contended bytes");
    let key = image.stored_sha256;

    let guard = db.catalog.lock_blob(&key).await.expect("lock");
    assert_eq!(guard.standing(), BlobStanding::Unrecorded);
    let upload = {
        let catalog = db.catalog.clone();
        let ctx = office.ctx.clone();
        let scope = office.scope();
        let image = image.clone();
        tokio::spawn(async move { catalog.add_image(&ctx, scope, &image, None).await })
    };
    tokio::time::sleep(HELD).await;
    assert!(
        !upload.is_finished(),
        "the upload committed while the blob was locked: {:?}",
        upload.await
    );
    guard.release().await.expect("release");
    let (stored, created) = tokio::time::timeout(LIMIT, upload)
        .await
        .expect("the upload goes ahead once the lock is released")
        .expect("upload task")
        .expect("add image");
    assert!(created);
    assert_eq!(stored.id, image.id);
    assert_eq!(
        standing_of(db, &key).await,
        BlobStanding::Referenced { store: first }
    );

    // A rendition of locked bytes waits alike; a forget of a blob with no
    // row lets it go too.
    let thumb = rendition(image.id, b"contended thumbnail");
    let guard = db.catalog.lock_blob(&thumb.sha256).await.expect("lock");
    assert_eq!(guard.standing(), BlobStanding::Unrecorded);
    let recording = {
        let catalog = db.catalog.clone();
        let thumb = thumb.clone();
        tokio::spawn(async move { catalog.record_rendition(&thumb).await })
    };
    tokio::time::sleep(HELD).await;
    assert!(
        !recording.is_finished(),
        "the rendition committed while its blob was locked: {:?}",
        recording.await
    );
    guard.forget().await.expect("forget");
    tokio::time::timeout(LIMIT, recording)
        .await
        .expect("the rendition goes ahead once the lock is gone")
        .expect("rendition task")
        .expect("record rendition");
    assert_eq!(
        standing_of(db, &thumb.sha256).await,
        BlobStanding::Referenced { store: first }
    );

    // On PostgreSQL the lock is the key's alone: other bytes go ahead.
    // (On SQLite every write waits for the guard's write transaction.)
    if db.backend == Backend::Postgres {
        let guard = db.catalog.lock_blob(&key).await.expect("lock");
        let unrelated = db.image(&office, &case, b"unrelated bytes");
        let (_, created) = tokio::time::timeout(
            LIMIT,
            db.catalog
                .add_image(&office.ctx, office.scope(), &unrelated, None),
        )
        .await
        .expect("an upload of other bytes is not held back")
        .expect("add image");
        assert!(created);
        guard.release().await.expect("release");
    }
}
