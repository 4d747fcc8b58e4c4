//! `relay reprocess sweep` and `relay reprocess verify --repair-from`, over
//! a store of real images and their renditions.
//!
//! Sweep removes bytes nothing refers to once they are older than the grace
//! period — bytes no row knows of (an upload that crashed before its
//! commit), a blob whose rendition was replaced — and never a referenced
//! blob or one still in its grace period. Verify with a replica store puts
//! a flipped or deleted blob back from its verified copy.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::Digest;
use support::{Relay, dicom_fixtures, dicom_instances, files_under};

/// A Relay holding every DICOM fixture and two photos, derived; returns
/// each image's id and stored sha256.
async fn stocked(relay: &Relay, office: &str) -> Vec<(String, String)> {
    let server = relay.start();
    let case = server.create_case(office, "radiology").await;
    let mut images = Vec::new();
    let photos = [
        ("photos/camera-plain.jpg", "image/jpeg"),
        ("photos/lesion.png", "image/png"),
    ];
    let dicoms = dicom_fixtures();
    let uploads = dicoms
        .iter()
        .map(|d| (d.as_str(), "application/dicom"))
        .chain(photos);
    for (path, media) in uploads {
        let receipt = server.upload(office, &case, path, media).await;
        images.push((
            receipt["id"].as_str().expect("id").to_owned(),
            receipt["stored_sha256"].as_str().expect("sha").to_owned(),
        ));
    }
    for (image, _) in &images {
        server.derived(office, image).await;
    }
    server.stop();
    images
}

fn blob_path(relay: &Relay, key: &str) -> PathBuf {
    relay
        .data_dir()
        .join("blobs/sha256")
        .join(&key[..2])
        .join(&key[2..4])
        .join(key)
}

/// Puts real bytes into the store as a blob no row knows of.
fn plant(relay: &Relay, bytes: &[u8]) -> String {
    let key = hex::encode(sha2::Sha256::digest(bytes));
    let path = blob_path(relay, &key);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
    std::fs::write(&path, bytes).expect("plant");
    key
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(SystemTime::now() - by)
        .expect("set mtime");
}

const TWO_DAYS: Duration = Duration::from_secs(2 * 24 * 3600);

fn report(relay: &Relay, out: &std::process::Output, file: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(relay.dir().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}; {}", String::from_utf8_lossy(&out.stderr))),
    )
    .expect("json")
}

#[tokio::test]
async fn sweep_removes_orphans_and_never_a_referenced_or_young_blob() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Archive Clinic");
    let images = stocked(&relay, &office).await;
    let work = tempfile::tempdir().expect("tempdir");
    let instances = dicom_instances(work.path(), 2);

    // Old bytes no row knows of: an upload that crashed before its commit.
    let orphan = plant(&relay, &std::fs::read(&instances[0]).expect("instance"));
    age(&blob_path(&relay, &orphan), TWO_DAYS);
    // Young bytes no row knows of: an upload in flight.
    let young = plant(&relay, &std::fs::read(&instances[1]).expect("instance"));
    // A rendition replaced (its row gone): its blob row is unreferenced.
    let mut db = relay.database().await;
    let replaced: String = sqlx::query_scalar(
        "SELECT d.sha256 FROM derivatives d WHERE d.kind = 'preview' \
         AND (SELECT COUNT(*) FROM derivatives e WHERE e.sha256 = d.sha256) = 1 LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .expect("a preview");
    sqlx::query("DELETE FROM derivatives WHERE sha256 = ?")
        .bind(&replaced)
        .execute(&mut db)
        .await
        .expect("replace a rendition");
    age(&blob_path(&relay, &replaced), TWO_DAYS);
    // Old and referenced: an original uploaded long ago.
    let referenced = images[0].1.clone();
    age(&blob_path(&relay, &referenced), TWO_DAYS);
    // An upload's spool file left by a crash long ago.
    let spool = relay.data_dir().join("blobs/tmp/.tmp-crashed");
    std::fs::write(&spool, b"partial upload").expect("spool file");
    age(&spool, TWO_DAYS);
    let files_before = files_under(&relay.data_dir().join("blobs/sha256")).len();

    let dry = relay.run(&["reprocess", "sweep", "--dry-run", "--report", "dry.json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let r = report(&relay, &dry, "dry.json");
    assert_eq!(r["counts"]["fixed"], 2, "{r}");
    assert_eq!(
        files_under(&relay.data_dir().join("blobs/sha256")).len(),
        files_before,
        "a dry run removes nothing"
    );
    assert!(spool.exists());

    let swept = relay.run(&["reprocess", "sweep", "--report", "swept.json"]);
    assert!(
        swept.status.success(),
        "{}",
        String::from_utf8_lossy(&swept.stderr)
    );
    let r = report(&relay, &swept, "swept.json");
    assert_eq!(r["counts"]["scanned"].as_u64(), Some(files_before as u64));
    assert_eq!(r["counts"]["fixed"], 2, "{r}");
    assert_eq!(r["counts"]["failed"], 0);
    assert!(!blob_path(&relay, &orphan).exists(), "an old orphan goes");
    assert!(
        !blob_path(&relay, &replaced).exists(),
        "an unreferenced blob goes"
    );
    assert!(
        blob_path(&relay, &young).exists(),
        "a blob in its grace period stays"
    );
    assert!(
        blob_path(&relay, &referenced).exists(),
        "a referenced blob stays"
    );
    assert!(!spool.exists(), "a stale spool file goes");
    let row: Option<String> = sqlx::query_scalar("SELECT sha256 FROM blobs WHERE sha256 = ?")
        .bind(&replaced)
        .fetch_optional(&mut db)
        .await
        .expect("query");
    assert_eq!(row, None, "the unreferenced blob's row goes with it");

    // Nothing referenced was touched: every row's blob verifies.
    let verify = relay.run(&["reprocess", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // A shorter grace period reaches the young orphan, and only it.
    std::thread::sleep(Duration::from_millis(1100));
    let short = relay.run(&[
        "reprocess",
        "sweep",
        "--grace",
        "1s",
        "--report",
        "short.json",
    ]);
    assert!(short.status.success());
    assert_eq!(report(&relay, &short, "short.json")["counts"]["fixed"], 1);
    assert!(!blob_path(&relay, &young).exists());
    assert!(relay.run(&["reprocess", "verify"]).status.success());
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    for file in files_under(from) {
        let dest = to.join(file.strip_prefix(from).expect("below"));
        std::fs::create_dir_all(dest.parent().expect("dir")).expect("dir");
        std::fs::copy(&file, &dest).expect("copy");
    }
}

#[tokio::test]
async fn verify_repairs_damaged_blobs_from_a_replica_store() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Archive Clinic");
    let images = stocked(&relay, &office).await;
    let replica = relay.dir().join("replica");
    copy_tree(
        &relay.data_dir().join("blobs/sha256"),
        &replica.join("sha256"),
    );

    let (flipped, lost, both) = (&images[0].1, &images[1].1, &images[2].1);
    let mut bytes = std::fs::read(blob_path(&relay, flipped)).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(blob_path(&relay, flipped), bytes).expect("flip");
    std::fs::remove_file(blob_path(&relay, lost)).expect("lose");
    // One damaged in both places: nothing good to repair from.
    std::fs::remove_file(blob_path(&relay, both)).expect("lose");
    let in_replica = replica
        .join("sha256")
        .join(&both[..2])
        .join(&both[2..4])
        .join(both);
    std::fs::remove_file(in_replica).expect("lose the replica too");

    let replica_url = format!("file://{}", replica.display());
    let out = relay.run(&[
        "reprocess",
        "verify",
        "--repair-from",
        &replica_url,
        "--report",
        "repair.json",
    ]);
    assert!(
        !out.status.success(),
        "a blob that could not be repaired fails the run"
    );
    let r = report(&relay, &out, "repair.json");
    assert_eq!(
        (
            r["counts"]["fixed"].as_u64(),
            r["counts"]["failed"].as_u64()
        ),
        (Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["failures"][0]["key"], both.as_str());
    assert!(
        r["failures"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("replica store lacks it too"),
        "{r}"
    );
    // The repaired blobs verify; each damage was a security event.
    for key in [flipped, lost] {
        let bytes = std::fs::read(blob_path(&relay, key)).expect("repaired");
        assert_eq!(&hex::encode(sha2::Sha256::digest(&bytes)), key);
    }
    let audited = relay.ok(&["admin", "audit", "--action", "blob.integrity"]);
    assert_eq!(audited.lines().count(), 3, "{audited}");
}
