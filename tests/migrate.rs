//! `relay reprocess migrate`: every blob of a store of a few hundred real
//! DICOM instances and photos moves to another store (a second directory,
//! or the S3 server) while `relay serve` keeps taking uploads and serving
//! reads; afterwards every image reads back hash-verified from the new
//! store alone, with the old one gone. A migration SIGKILLed halfway
//! resumes and finishes.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use sha2::Digest;
use support::{Relay, Server, dicom_instances, files_under};

/// Real DICOM instances stored before the migration starts.
const BEFORE: usize = 200;

/// A Relay holding `BEFORE` DICOM instances and the photo fixtures, each
/// derived; returns it with each image's id and stored sha256.
async fn stocked(relay: &Relay, office: &str, instances: &Path) -> BTreeMap<String, String> {
    let server = relay.start();
    let case = server.create_case(office, "radiology").await;
    let mut images = BTreeMap::new();
    for path in dicom_instances(instances, BEFORE) {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).expect("instance");
        let receipt = server
            .upload_bytes(office, &case, &name, bytes, "application/dicom")
            .await;
        remember(&mut images, &receipt);
    }
    for (photo, media) in [
        ("photos/camera-plain.jpg", "image/jpeg"),
        ("photos/lesion.png", "image/png"),
    ] {
        remember(
            &mut images,
            &server.upload(office, &case, photo, media).await,
        );
    }
    for image in images.keys() {
        server.derived(office, image).await;
    }
    server.stop();
    images
}

fn remember(images: &mut BTreeMap<String, String>, receipt: &Value) {
    images.insert(
        receipt["id"].as_str().expect("id").to_owned(),
        receipt["stored_sha256"].as_str().expect("sha").to_owned(),
    );
}

/// Every image reads back with its bytes hashing to its key.
async fn all_read_back(server: &Server, token: &str, images: &BTreeMap<String, String>) {
    for (image, sha) in images {
        let (status, bytes) = server.original(token, image).await;
        assert_eq!(status, 200, "image {image}");
        assert_eq!(
            &hex::encode(sha2::Sha256::digest(&bytes)),
            sha,
            "image {image}"
        );
    }
}

/// Uploads (new instances) and verified reads against `server` until
/// `stop`; returns the images uploaded.
fn traffic(
    server: Arc<Server>,
    token: String,
    case: String,
    instances: Vec<std::path::PathBuf>,
    known: BTreeMap<String, String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<BTreeMap<String, String>> {
    tokio::spawn(async move {
        let mut uploaded = BTreeMap::new();
        let mut reads = known.iter().cycle();
        for path in instances {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("instance");
            let receipt = server
                .upload_bytes(&token, &case, &name, bytes, "application/dicom")
                .await;
            remember(&mut uploaded, &receipt);
            for _ in 0..3 {
                let (image, sha) = reads.next().expect("images");
                let (status, bytes) = server.original(&token, image).await;
                assert_eq!(status, 200, "a read during the migration: {image}");
                assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), sha);
            }
        }
        uploaded
    })
}

/// `relay serve` with `blobs` as its configured store.
fn serve_on(relay: &Relay, blobs: &str) -> Server {
    relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--blobs", blobs], &[])
}

fn report(relay: &Relay, out: &std::process::Output, file: &str) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(relay.dir().join(file)).expect("report")).expect("json")
}

async fn blob_rows(relay: &Relay) -> (i64, Vec<String>) {
    let mut db = relay.database().await;
    let total = support::count(&mut db, "blobs").await;
    let stores: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT s.url FROM blobs b JOIN blob_stores s ON s.id = b.store_id",
    )
    .fetch_all(&mut db)
    .await
    .expect("stores");
    (total, stores)
}

/// fs→fs under traffic, then fs→S3 when the test S3 server is there: the
/// source ends empty, the rows all name the target, and a server configured
/// with the target alone (the source directory removed) serves every image.
// Two threads: the test blocks one on `relay reprocess migrate` while the
// other drives the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_moves_every_blob_while_serving() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Archive Clinic");
    let work = tempfile::tempdir().expect("tempdir");
    let mut images = stocked(&relay, &office, work.path()).await;
    let source = relay.data_dir().join("blobs");
    let blobs_before = files_under(&source.join("sha256")).len();
    // Copies of one fixture share their renditions' bytes.
    assert!(blobs_before > BEFORE, "originals and renditions");

    // The server keeps its configured (source) store throughout.
    let server = Arc::new(relay.start());
    let case = server.create_case(&office, "radiology").await;
    let later = tempfile::tempdir().expect("tempdir");
    let new_instances: Vec<_> = dicom_instances(later.path(), BEFORE + 60)
        .into_iter()
        .skip(BEFORE)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let uploads = traffic(
        server.clone(),
        office.clone(),
        case,
        new_instances,
        images.clone(),
        stop.clone(),
    );
    let target = relay.dir().join("blobs-new");
    let target_url = format!("file://{}", target.display());
    let out = relay.run(&[
        "reprocess",
        "migrate",
        "--to",
        &target_url,
        "--delete-source",
        "--rate",
        "400/s",
        "--batch",
        "32",
        "--report",
        "first.json",
    ]);
    let first = report(&relay, &out, "first.json");
    stop.store(true, Ordering::Relaxed);
    let uploaded = uploads.await.expect("traffic ran");
    assert!(!uploaded.is_empty(), "uploads ran during the migration");
    assert_eq!(first["state"], "finished");
    assert_eq!(first["counts"]["failed"], 0, "{first}");
    assert!(first["counts"]["fixed"].as_u64().expect("moved") >= blobs_before as u64);
    images.extend(uploaded);
    for image in images.keys() {
        server.derived(&office, image).await;
    }
    // Reads fall back to the target while the server still names the source.
    all_read_back(&server, &office, &images).await;

    // What the server stored after the last pass is moved by running again.
    let again = relay.run(&[
        "reprocess",
        "migrate",
        "--to",
        &target_url,
        "--delete-source",
        "--report",
        "again.json",
    ]);
    let again = report(&relay, &again, "again.json");
    assert_eq!(again["counts"]["failed"], 0, "{again}");
    Arc::into_inner(server).expect("one owner").stop();

    assert_eq!(
        files_under(&source.join("sha256")),
        Vec::<std::path::PathBuf>::new(),
        "--delete-source leaves nothing behind"
    );
    let (rows, stores) = blob_rows(&relay).await;
    assert_eq!(
        stores,
        vec![target_url.clone()],
        "every row names the target"
    );
    assert_eq!(files_under(&target.join("sha256")).len() as i64, rows);

    // The source is gone; a server on the target alone serves everything.
    std::fs::rename(&source, relay.dir().join("old-blobs")).expect("retire the source");
    let server = serve_on(&relay, &target_url);
    all_read_back(&server, &office, &images).await;
    let verify = relay.run(&[
        "--blobs",
        &target_url,
        "reprocess",
        "verify",
        "--report",
        "v.json",
    ]);
    assert_eq!(report(&relay, &verify, "v.json")["counts"]["failed"], 0);
    server.stop();

    // fs→S3, with the S3 server of the scale-out tests.
    let Some(s3) = relay_workers::testing::s3("migration_moves_every_blob_while_serving") else {
        return;
    };
    let bucket = support::stores::with_prefix(&s3, &relay_workers::testing::unique_name("migrate"));
    let server = Arc::new(serve_on(&relay, &target_url));
    let out = relay.run(&[
        "--blobs",
        &target_url,
        "reprocess",
        "migrate",
        "--to",
        &bucket,
        "--concurrency",
        "8",
        "--report",
        "s3.json",
    ]);
    let to_s3 = report(&relay, &out, "s3.json");
    assert_eq!(to_s3["counts"]["failed"], 0, "{to_s3}");
    assert_eq!(to_s3["counts"]["fixed"].as_u64(), Some(rows as u64));
    // Without --delete-source the old copies stay.
    assert_eq!(files_under(&target.join("sha256")).len() as i64, rows);
    all_read_back(&server, &office, &images).await;
    Arc::into_inner(server).expect("one owner").stop();
    let (_, stores) = blob_rows(&relay).await;
    assert_eq!(stores.len(), 1);
    assert!(stores[0].starts_with("s3://"), "{stores:?}");
    std::fs::remove_dir_all(&target).expect("retire the directory store");
    let server = serve_on(&relay, &bucket);
    all_read_back(&server, &office, &images).await;
    server.stop();
}

/// A migration SIGKILLed halfway (some blobs copied, recorded, removed from
/// the source) resumes where it stopped and finishes with every blob moved
/// once and readable.
#[tokio::test]
async fn a_migration_killed_halfway_resumes_and_finishes() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Archive Clinic");
    let work = tempfile::tempdir().expect("tempdir");
    let images = stocked(&relay, &office, work.path()).await;
    let source = relay.data_dir().join("blobs");
    let total = files_under(&source.join("sha256")).len() as u64;
    let target_url = format!("file://{}", relay.dir().join("blobs-new").display());

    let mut child = relay
        .command()
        .args([
            "reprocess",
            "migrate",
            "--to",
            &target_url,
            "--delete-source",
            "--rate",
            "100/s",
            "--batch",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut run = Value::Null;
    for _ in 0..400 {
        let listed = relay.ok(&["reprocess", "list", "--limit", "1"]);
        if let Some(line) = listed.lines().next() {
            run = serde_json::from_str(line).expect("json");
            if run["counts"]["scanned"].as_u64().unwrap_or(0) >= 50 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let id = run["id"].as_str().expect("run id").to_owned();
    let stopped: Value =
        serde_json::from_str(&relay.ok(&["reprocess", "show", &id])).expect("json");
    assert_eq!(stopped["state"], "running", "a killed run stays resumable");
    let moved_before = stopped["counts"]["fixed"].as_u64().expect("count");
    assert!(moved_before >= 50 && moved_before < total, "{stopped}");

    // Mid-migration, the server reads from both stores.
    let server = relay.start();
    all_read_back(&server, &office, &images).await;
    server.stop();

    let resumed = relay.run(&["reprocess", "resume", &id, "--report", "resumed.json"]);
    let r = report(&relay, &resumed, "resumed.json");
    assert_eq!(r["state"], "finished");
    assert_eq!(r["counts"]["failed"], 0, "{r}");
    let (rows, stores) = blob_rows(&relay).await;
    assert_eq!(stores, vec![target_url.clone()]);
    assert_eq!(rows as u64, total);
    // A blob recorded on the target is never walked again, so none is
    // counted twice; the blobs of the batch the kill interrupted (at most
    // 10) were moved but not yet counted.
    let moved = r["counts"]["fixed"].as_u64().expect("moved");
    assert!(moved <= total && moved + 10 >= total, "{moved} of {total}");
    assert_eq!(files_under(&source.join("sha256")).len(), 0);
    let server = serve_on(&relay, &target_url);
    all_read_back(&server, &office, &images).await;
    server.stop();
}
