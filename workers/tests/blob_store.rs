//! The blob store's promises, checked against every store: the filesystem,
//! memory, and S3 (a real server: SeaweedFS, started by `.ci/test`).
//!
//! Each promise is one function over a [`Harness`]; the `conformance!`
//! macro runs every one against every store. The stores differ only here:
//!
//! - S3 verifies the bytes of a put against the key on the server (the key
//!   is sent as `x-amz-checksum-sha256`), so only S3 refuses a put whose
//!   bytes are not the key's. The filesystem and memory stores trust the
//!   caller, which hashed the bytes while spooling them; every store's
//!   reads are re-hashed.
//! - Only S3 has a network in between: an unreachable endpoint, refused
//!   credentials and a missing bucket are S3-only tests.
//! - Only S3 uploads in parts; the large-blob test runs on every store,
//!   with a part size that makes S3 use three parts.

use std::io::Write;
use std::sync::Arc;

use relay_workers::blob::{
    BlobError, BlobStore, FsBlobStore, Listed, MemoryBlobStore, Persisted, S3BlobStore,
    keep_after_commit, verify_blob,
};
use relay_workers::model::{Sha256, Timestamp};
use relay_workers::testing;
use tokio::io::AsyncReadExt;

/// S3 parts are at least 5 MiB: a 3-part blob.
const LARGE: usize = 11 << 20;
const S3_MULTIPART: &str = "multipart_threshold=1MiB&part_size=5MiB";

/// A store under test and a way to put bytes under a key behind its back.
struct Harness {
    store: Arc<dyn BlobStore>,
    backend: Backend,
    _dir: tempfile::TempDir,
}

enum Backend {
    Fs(FsBlobStore),
    Memory,
    S3(S3BlobStore),
}

impl Harness {
    async fn fs(_test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().join("blobs")).expect("fs store");
        Some(Self {
            store: Arc::new(store.clone()),
            backend: Backend::Fs(store),
            _dir: dir,
        })
    }

    async fn memory(_test: &str) -> Option<Self> {
        Some(Self {
            store: Arc::new(MemoryBlobStore::new().expect("memory store")),
            backend: Backend::Memory,
            _dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    async fn s3(test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = s3_url(test, S3_MULTIPART)?;
        let store = S3BlobStore::open(&url, dir.path().join("spool"))
            .await
            .expect("s3 store");
        Some(Self {
            store: Arc::new(store.clone()),
            backend: Backend::S3(store),
            _dir: dir,
        })
    }

    fn spooled(&self, bytes: &[u8]) -> tempfile::NamedTempFile {
        spool_in(self.store.spool_dir(), bytes)
    }

    async fn put(&self, key: Sha256, bytes: &[u8]) -> Result<Persisted, BlobError> {
        self.store.put(key, &self.spooled(bytes)).await
    }

    async fn read(&self, key: &Sha256, offset: u64) -> (u64, Vec<u8>) {
        let mut blob = self.store.open(key, offset).await.expect("open");
        let mut bytes = Vec::new();
        blob.reader.read_to_end(&mut bytes).await.expect("read");
        (blob.size, bytes)
    }

    /// Stores `bytes` under `key` without the store's checks, as a
    /// corrupted or concurrent writer would.
    async fn plant(&self, key: Sha256, bytes: &[u8]) {
        match &self.backend {
            Backend::Fs(store) => {
                let path = store.path_of(&key);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, bytes).expect("write");
            }
            // The memory store does not check a key against its bytes.
            Backend::Memory => {
                let created = self.put(key, bytes).await.expect("put");
                assert_eq!(created, Persisted::Created);
            }
            Backend::S3(store) => {
                store
                    .client()
                    .put_object()
                    .bucket(&store.location().bucket)
                    .key(store.object_key(&key))
                    .body(bytes.to_vec().into())
                    .send()
                    .await
                    .expect("raw put");
            }
        }
    }
}

fn spool_in(dir: &std::path::Path, bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new_in(dir).expect("spool file");
    file.write_all(bytes).expect("write");
    file
}

/// The test server's URL with a prefix of this test's own and `query`.
fn s3_url(test: &str, query: &str) -> Option<String> {
    let base = testing::s3(test)?;
    let (path, base_query) = base.split_once('?').unwrap_or((&base, ""));
    let prefix = testing::unique_name(test);
    let query: Vec<&str> = [base_query, query]
        .into_iter()
        .filter(|q| !q.is_empty())
        .collect();
    Some(format!(
        "{}/{prefix}?{}",
        path.trim_end_matches('/'),
        query.join("&")
    ))
}

/// Bytes that differ from any other test's.
fn sample(len: usize, seed: u8) -> Vec<u8> {
    let stamp = testing::unique_name("sample").into_bytes();
    (0..len)
        .map(|i| stamp[i % stamp.len()] ^ (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

// ---------------------------------------------------------------- promises

async fn put_then_open_and_head_give_the_bytes_back(h: Harness) {
    let bytes = sample(1000, 1);
    let key = Sha256::of(&bytes);
    assert_eq!(h.put(key, &bytes).await.expect("put"), Persisted::Created);
    assert_eq!(h.store.head(&key).await.expect("head"), Some(1000));
    assert_eq!(h.read(&key, 0).await, (1000, bytes));
    verify_blob(h.store.as_ref(), &key, 1000)
        .await
        .expect("verifies");
    let left = std::fs::read_dir(h.store.spool_dir())
        .expect("spool")
        .count();
    assert_eq!(left, 0, "the spool file is gone once put");
}

/// The whole-blob check each store does its own way finds bytes that do
/// not hash to their key, a blob shorter than recorded, and a missing one.
async fn verify_finds_damage_and_absence(h: Harness) {
    let good = sample(5000, 7);
    let key = Sha256::of(&good);
    let mut flipped = good.clone();
    flipped[2500] ^= 0x01;
    h.plant(key, &flipped).await;
    let corrupt = verify_blob(h.store.as_ref(), &key, 5000).await;
    assert!(
        matches!(corrupt, Err(BlobError::Integrity(_))),
        "{corrupt:?}"
    );
    let short = verify_blob(h.store.as_ref(), &key, 5001).await;
    assert!(matches!(short, Err(BlobError::Integrity(_))), "{short:?}");
    let absent = Sha256::of(b"never stored");
    let missing = verify_blob(h.store.as_ref(), &absent, 12).await;
    assert!(matches!(missing, Err(BlobError::Missing(_))), "{missing:?}");
}

async fn open_reads_from_an_offset(h: Harness) {
    let bytes = sample(300, 2);
    let key = Sha256::of(&bytes);
    h.put(key, &bytes).await.expect("put");
    assert_eq!(h.read(&key, 120).await, (300, bytes[120..].to_vec()));
    assert_eq!(h.read(&key, 299).await, (300, bytes[299..].to_vec()));
    assert_eq!(h.read(&key, 300).await, (300, Vec::new()));
}

async fn the_same_bytes_twice_are_stored_once(h: Harness) {
    let bytes = sample(500, 3);
    let key = Sha256::of(&bytes);
    assert_eq!(h.put(key, &bytes).await.expect("put"), Persisted::Created);
    assert_eq!(
        h.put(key, &bytes).await.expect("second put"),
        Persisted::AlreadyPresent
    );
    assert_eq!(h.read(&key, 0).await, (500, bytes));
}

async fn an_existing_key_is_never_overwritten(h: Harness) {
    let bytes = sample(400, 4);
    let key = Sha256::of(&bytes);
    let other = sample(410, 5);
    h.plant(key, &other).await;
    assert_eq!(
        h.put(key, &bytes).await.expect("put"),
        Persisted::AlreadyPresent
    );
    assert_eq!(h.read(&key, 0).await, (410, other), "the first bytes stay");
}

async fn a_missing_blob_is_missing(h: Harness) {
    let key = Sha256::of(&sample(10, 6));
    assert!(matches!(
        h.store.open(&key, 0).await,
        Err(BlobError::Missing(k)) if k == key
    ));
    assert_eq!(h.store.head(&key).await.expect("head"), None);
}

async fn a_large_blob_goes_up_and_reads_back_verified(h: Harness) {
    let bytes = sample(LARGE, 7);
    let key = Sha256::of(&bytes);
    assert_eq!(h.put(key, &bytes).await.expect("put"), Persisted::Created);
    assert_eq!(h.store.head(&key).await.expect("head"), Some(LARGE as u64));
    verify_blob(h.store.as_ref(), &key, LARGE as u64)
        .await
        .expect("verifies");
    let offset = 6 << 20;
    assert_eq!(
        h.read(&key, offset as u64).await,
        (LARGE as u64, bytes[offset..].to_vec())
    );
    assert_eq!(
        h.put(key, &bytes).await.expect("again"),
        Persisted::AlreadyPresent
    );
    if let Backend::S3(store) = &h.backend {
        let head = store
            .client()
            .head_object()
            .bucket(&store.location().bucket)
            .key(store.object_key(&key))
            .send()
            .await
            .expect("head object");
        let etag = head.e_tag().unwrap_or_default();
        assert!(etag.trim_matches('"').ends_with("-3"), "3 parts: {etag}");
    }
}

async fn leftover_spool_files_are_cleaned(h: Harness) {
    spool_in(h.store.spool_dir(), b"half an upload")
        .keep()
        .expect("keep");
    assert_eq!(h.store.clean_spool(), 1);
    assert_eq!(
        std::fs::read_dir(h.store.spool_dir())
            .expect("spool")
            .count(),
        0
    );
}

async fn a_working_store_passes_its_probe(h: Harness) {
    h.store.probe().await.expect("probe");
    assert!(!h.store.describe().is_empty());
}

/// Keys and sizes, as `list` gives them.
fn keys_and_sizes(listed: &[Listed]) -> Vec<(Sha256, u64)> {
    listed.iter().map(|l| (l.key, l.size)).collect()
}

/// What `sweep` walks: every blob the store holds, in key order, a page at
/// a time, each with its size and when it was written.
async fn list_gives_every_blob_in_key_order_a_page_at_a_time(h: Harness) {
    assert!(
        h.store.list(None, 10).await.expect("list").is_empty(),
        "an empty store lists nothing"
    );
    let mut stored = Vec::new();
    for n in 0..7u8 {
        let bytes = sample(100 + usize::from(n) * 13, 20 + n);
        let key = Sha256::of(&bytes);
        assert_eq!(h.put(key, &bytes).await.expect("put"), Persisted::Created);
        stored.push((key, bytes.len() as u64));
    }
    stored.sort();

    let all = h.store.list(None, 100).await.expect("list");
    assert_eq!(keys_and_sizes(&all), stored, "what was put, in key order");
    let now = Timestamp::now().as_millis();
    for listed in &all {
        let age = now - listed.modified.as_millis();
        assert!(
            age.abs() < 60_000,
            "{} modified {age} ms before now",
            listed.key
        );
    }

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = h.store.list(after, 3).await.expect("page");
        assert!(page.len() <= 3, "a page holds at most its limit");
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        paged.extend(page);
    }
    assert_eq!(paged, all, "the pages add up to the whole listing");

    // After a stored key, and after keys nobody stored (spread over the key
    // space): exactly the later keys.
    let probes = stored
        .iter()
        .map(|(key, _)| *key)
        .chain((0..8u8).map(|n| Sha256::of(&[n, 0xa5])))
        .chain([Sha256::from_bytes([0; 32]), Sha256::from_bytes([0xff; 32])]);
    for after in probes {
        let want: Vec<_> = stored.iter().copied().filter(|(k, _)| *k > after).collect();
        let got = h.store.list(Some(after), 100).await.expect("list after");
        assert_eq!(keys_and_sizes(&got), want, "after {after}");
    }
}

async fn delete_removes_a_blob_and_reports_an_absent_one(h: Harness) {
    let kept = sample(200, 30);
    let gone = sample(300, 31);
    let (kept_key, gone_key) = (Sha256::of(&kept), Sha256::of(&gone));
    h.put(kept_key, &kept).await.expect("put");
    h.put(gone_key, &gone).await.expect("put");

    assert!(h.store.delete(&gone_key).await.expect("delete"));
    assert_eq!(h.store.head(&gone_key).await.expect("head"), None);
    assert!(matches!(
        h.store.open(&gone_key, 0).await,
        Err(BlobError::Missing(k)) if k == gone_key
    ));
    let listed = h.store.list(None, 100).await.expect("list");
    assert_eq!(keys_and_sizes(&listed), vec![(kept_key, 200)]);
    assert!(
        !h.store.delete(&gone_key).await.expect("delete again"),
        "already gone"
    );
    assert!(
        !h.store
            .delete(&Sha256::of(b"never stored"))
            .await
            .expect("delete absent"),
        "never there"
    );
    assert_eq!(h.read(&kept_key, 0).await, (200, kept), "the other stays");
    // Deleted bytes can be put again.
    assert_eq!(
        h.put(gone_key, &gone).await.expect("put again"),
        Persisted::Created
    );
    assert_eq!(h.read(&gone_key, 0).await, (300, gone));
}

/// An upload whose put found the bytes already there, and a sweep that
/// removed them before the upload's row was committed: the upload puts its
/// own copy back.
async fn bytes_swept_during_an_upload_are_put_back_after_its_commit(h: Harness) {
    let bytes = sample(700, 40);
    let key = Sha256::of(&bytes);
    assert_eq!(h.put(key, &bytes).await.expect("put"), Persisted::Created);
    let file = h.spooled(&bytes);
    let persisted = h.store.put(key, &file).await.expect("second put");
    assert_eq!(persisted, Persisted::AlreadyPresent);
    assert!(h.store.delete(&key).await.expect("swept"));

    keep_after_commit(h.store.as_ref(), key, &file, persisted)
        .await
        .expect("kept");
    assert_eq!(h.store.head(&key).await.expect("head"), Some(700));
    verify_blob(h.store.as_ref(), &key, 700)
        .await
        .expect("verifies");
    assert_eq!(h.read(&key, 0).await, (700, bytes));
    // Still there: nothing to do.
    keep_after_commit(h.store.as_ref(), key, &file, persisted)
        .await
        .expect("kept again");
    let listed = h.store.list(None, 10).await.expect("list");
    assert_eq!(keys_and_sizes(&listed), vec![(key, 700)]);
}

macro_rules! conformance {
    ($($promise:ident),* $(,)?) => {
        mod fs { $( #[tokio::test] async fn $promise() {
            if let Some(h) = super::Harness::fs(stringify!($promise)).await { super::$promise(h).await }
        } )* }
        mod memory { $( #[tokio::test] async fn $promise() {
            if let Some(h) = super::Harness::memory(stringify!($promise)).await { super::$promise(h).await }
        } )* }
        mod s3 { $( #[tokio::test] async fn $promise() {
            if let Some(h) = super::Harness::s3(stringify!($promise)).await { super::$promise(h).await }
        } )* }
    };
}

conformance!(
    put_then_open_and_head_give_the_bytes_back,
    verify_finds_damage_and_absence,
    open_reads_from_an_offset,
    the_same_bytes_twice_are_stored_once,
    an_existing_key_is_never_overwritten,
    a_missing_blob_is_missing,
    a_large_blob_goes_up_and_reads_back_verified,
    leftover_spool_files_are_cleaned,
    a_working_store_passes_its_probe,
    list_gives_every_blob_in_key_order_a_page_at_a_time,
    delete_removes_a_blob_and_reports_an_absent_one,
    bytes_swept_during_an_upload_are_put_back_after_its_commit,
);

// ------------------------------------------------------------- S3 only

mod s3_only {
    use super::*;

    async fn store(test: &str, query: &str) -> Option<(S3BlobStore, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = s3_url(test, query)?;
        let store = S3BlobStore::open(&url, dir.path()).await.expect("opens");
        Some((store, dir))
    }

    async fn object_exists(store: &S3BlobStore, key: &Sha256) -> bool {
        store.head(key).await.expect("head").is_some()
    }

    async fn pending_uploads(store: &S3BlobStore) -> usize {
        let listed = store
            .client()
            .list_multipart_uploads()
            .bucket(&store.location().bucket)
            .prefix(format!("{}/", store.location().prefix))
            .send()
            .await
            .expect("list uploads");
        listed.uploads().len()
    }

    #[tokio::test]
    async fn the_server_rejects_bytes_that_are_not_the_keys() {
        let Some((store, dir)) = store("s3_rejects_wrong_bytes", "").await else {
            return;
        };
        let key = Sha256::of(b"the bytes the key promises");
        let put = store.put(key, &spool_in(dir.path(), b"other bytes")).await;
        match put {
            Err(BlobError::Integrity(e)) => {
                assert_eq!(e.expected, key);
                assert!(e.reason.contains("BadDigest"), "{}", e.reason);
            }
            other => panic!("expected the server's BadDigest, got {other:?}"),
        }
        assert!(!object_exists(&store, &key).await, "nothing is stored");
    }

    #[tokio::test]
    async fn a_large_blob_that_is_not_its_keys_is_refused_before_upload() {
        let Some((store, dir)) = store("s3_rejects_wrong_large", S3_MULTIPART).await else {
            return;
        };
        let key = Sha256::of(b"not these bytes");
        let put = store
            .put(key, &spool_in(dir.path(), &sample(LARGE, 8)))
            .await;
        assert!(matches!(put, Err(BlobError::Integrity(_))), "{put:?}");
        assert!(!object_exists(&store, &key).await);
        assert_eq!(pending_uploads(&store).await, 0);
    }

    /// Both may complete (SeaweedFS checks `If-None-Match` when a
    /// completion starts, so two at once can both pass): with a content key
    /// that is harmless, as both carry the same verified bytes.
    #[tokio::test]
    async fn concurrent_puts_of_one_large_blob_leave_one_good_object() {
        let Some((store, dir)) = store("s3_concurrent_large", S3_MULTIPART).await else {
            return;
        };
        let bytes = sample(LARGE, 9);
        let key = Sha256::of(&bytes);
        let (first, second) = (spool_in(dir.path(), &bytes), spool_in(dir.path(), &bytes));
        let (a, b) = tokio::join!(store.put(key, &first), store.put(key, &second));
        let outcomes = [a.expect("first"), b.expect("second")];
        assert!(outcomes.contains(&Persisted::Created), "{outcomes:?}");
        verify_blob(&store, &key, LARGE as u64)
            .await
            .expect("verifies");
        assert_eq!(pending_uploads(&store).await, 0, "no parts left behind");
    }

    /// A put dropped half-way (its client went away) aborts its upload.
    #[tokio::test]
    async fn an_abandoned_large_put_leaves_no_parts() {
        let Some((store, dir)) = store("s3_abandoned_large", S3_MULTIPART).await else {
            return;
        };
        let bytes = sample(3 * LARGE, 10);
        let key = Sha256::of(&bytes);
        let file = spool_in(dir.path(), &bytes);
        let uploading = {
            let store = store.clone();
            tokio::spawn(async move { store.put(key, &file).await })
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while pending_uploads(&store).await == 0 && !uploading.is_finished() {
            assert!(tokio::time::Instant::now() < deadline, "no upload began");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        uploading.abort();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while pending_uploads(&store).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the upload was not aborted"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    async fn assert_unavailable(store: &S3BlobStore, spool: &std::path::Path, says: &str) {
        match store.probe().await {
            Err(BlobError::Unavailable(message)) => {
                assert!(message.contains(says), "{message}");
            }
            other => panic!("probe: expected unavailable, got {other:?}"),
        }
        let put = store.put(Sha256::of(b"x"), &spool_in(spool, b"x")).await;
        assert!(matches!(put, Err(BlobError::Unavailable(_))), "{put:?}");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable() {
        if testing::s3("s3_unreachable").is_none() {
            return;
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("s3://relay-test?endpoint=http://127.0.0.1:{port}&region=us-east-1");
        let store = S3BlobStore::open(&url, dir.path()).await.expect("opens");
        assert_unavailable(&store, dir.path(), "does not answer").await;
    }

    /// An endpoint that accepts connections and never answers (a hung
    /// server, a network split on a live connection) must not hang a read,
    /// a probe or an upload: each gives up as unavailable in bounded time.
    #[tokio::test]
    async fn an_endpoint_that_never_answers_is_given_up_in_bounded_time() {
        if testing::s3("s3_silent").is_none() {
            return;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // Accepts, reads nothing, answers nothing, keeps every socket open.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("s3://relay-test?endpoint=http://127.0.0.1:{port}&region=us-east-1");
        let store = S3BlobStore::open(&url, dir.path()).await.expect("opens");
        let key = Sha256::of(b"never");
        let never = spool_in(dir.path(), b"never");
        let started = std::time::Instant::now();
        let (head, open, put) = tokio::join!(
            store.head(&key),
            store.open(&key, 0),
            store.put(key, &never),
        );
        assert!(matches!(head, Err(BlobError::Unavailable(_))), "{head:?}");
        assert!(matches!(open, Err(BlobError::Unavailable(_))), "{open:?}");
        assert!(matches!(put, Err(BlobError::Unavailable(_))), "{put:?}");
        let waited = started.elapsed();
        assert!(waited < std::time::Duration::from_secs(60), "{waited:?}");
    }

    #[tokio::test]
    async fn refused_credentials_are_unavailable() {
        let Some(url) = s3_url("s3_bad_credentials", "") else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let key_id = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID");
        let store = S3BlobStore::open_with_credentials(&url, dir.path(), &key_id, "not-the-secret")
            .await
            .expect("opens");
        assert_unavailable(&store, dir.path(), "refused the credentials").await;
    }

    #[tokio::test]
    async fn a_missing_bucket_is_unavailable() {
        let Some(base) = testing::s3("s3_missing_bucket") else {
            return;
        };
        let rest = base.strip_prefix("s3://").expect("an s3 url");
        let after_bucket = &rest[rest.find(['/', '?']).unwrap_or(rest.len())..];
        let missing = format!(
            "s3://relay-missing-{}{after_bucket}",
            uuid::Uuid::now_v7().simple()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let store = S3BlobStore::open(&missing, dir.path())
            .await
            .expect("opens");
        assert_unavailable(&store, dir.path(), "does not exist").await;
    }
}
