//! Real system-call faults, injected under Relay by libfiu (Debian's
//! `fiu-utils`): `fiu-run -x` preloads its POSIX wrappers into `relay
//! serve`, and `fiu-ctrl` turns a fault on and off while the server runs.
//! Rust's `File::sync_all` is libc's `fsync`, which the wrappers intercept
//! (as they do the bundled SQLite's); the spool's writes are `write`, and
//! SQLite's page writes `pwrite64`, which fiu names `posix/io/rw/pwrite`.
//!
//! Without `fiu-run` the tests skip loudly; under
//! `RELAY_REQUIRE_SERVICES=1` (`.ci/test`, which installs it via
//! `.ci/fiu`) they fail instead.

use std::process::Command;

use super::{Kind, Sweep};
use relay_workers::model::Sha256;
use support::Relay;

use crate::support;

/// Whether `fiu-run` and `fiu-ctrl` are installed.
fn fiu(test: &str) -> bool {
    let found = ["fiu-run", "fiu-ctrl"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found {
        return true;
    }
    if std::env::var("RELAY_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{test}: fiu-utils (fiu-run, fiu-ctrl) is missing but RELAY_REQUIRE_SERVICES=1; run the tests with .ci/test"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: fiu-utils is not installed (Debian packages fiu-utils and libfiu0; .ci/test installs them)\n"
    );
    false
}

/// A server under `fiu-run -x`, nothing enabled yet, remote control on.
async fn under_fiu() -> (Sweep, String) {
    let relay = Relay::new();
    let prefix = relay
        .dir()
        .join("fiu-ctrl")
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let sweep = Sweep::start_in(relay, &["fiu-run", "-x", "-f", &prefix]).await;
    (sweep, prefix)
}

/// Runs one `fiu-ctrl` command against the server.
fn fiu_ctrl(sweep: &Sweep, prefix: &str, command: &str) {
    let out = Command::new("fiu-ctrl")
        .args(["-f", prefix, "-c", command, &sweep.server.pid().to_string()])
        .output()
        .expect("fiu-ctrl runs");
    assert!(
        out.status.success(),
        "fiu-ctrl {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Uploads `count` new files of each kind while a fault is on: every one
/// must be refused (`507` when `full`), and nothing may be stored.
async fn all_refused(sweep: &mut Sweep, kinds: &[&Kind], count: usize, what: &str, full: bool) {
    for kind in kinds {
        for _ in 0..count {
            let (bytes, media) = kind.file(sweep.next);
            sweep.next += 1;
            let (status, body) = sweep.upload(bytes, media).await;
            assert_ne!(status, 201, "{what}: an upload was acknowledged: {body}");
            sweep.assert_refused(what, status, &body, full);
            sweep.cases += 1;
            sweep.assert_consistent(what).await;
        }
    }
}

/// Uploads one new file of each kind; each must be acknowledged.
async fn all_stored(sweep: &mut Sweep, kinds: &[&Kind], what: &str) -> Vec<(String, Vec<u8>)> {
    let mut stored = Vec::new();
    for kind in kinds {
        let (bytes, media) = kind.file(sweep.next);
        sweep.next += 1;
        let (status, body) = sweep.upload(bytes.clone(), media).await;
        assert_eq!(status, 201, "{what}: {body}");
        sweep.stored += 1;
        sweep.assert_consistent(what).await;
        stored.push((body["id"].as_str().expect("image id").to_owned(), bytes));
    }
    stored
}

/// `fsync` failing with `EIO` is never acknowledged: every upload while it
/// fails is a 5xx and stores nothing; once it works again the same server
/// stores again; and a server started later without fiu over the same data
/// serves every image it acknowledged.
#[tokio::test]
async fn a_failed_fsync_is_never_acknowledged() {
    if !fiu("a_failed_fsync_is_never_acknowledged") {
        return;
    }
    let instances = tempfile::tempdir().expect("tempdir");
    let dicom = Kind::Dicom(support::dicom_instances(instances.path(), 40));
    let kinds = [&Kind::Photo, &dicom];
    let (mut sweep, prefix) = under_fiu().await;
    let mut acknowledged = all_stored(&mut sweep, &kinds, "before the fault").await;

    fiu_ctrl(
        &sweep,
        &prefix,
        "enable name=posix/io/sync/fsync,failinfo=5",
    );
    all_refused(&mut sweep, &kinds, 3, "fsync EIO", false).await;
    fiu_ctrl(&sweep, &prefix, "disable name=posix/io/sync/fsync");
    acknowledged.extend(all_stored(&mut sweep, &kinds, "after the fault, no restart").await);

    // One fsync in ten fails: whatever was acknowledged must be whole.
    fiu_ctrl(
        &sweep,
        &prefix,
        "enable_random name=posix/io/sync/fsync,failinfo=5,probability=0.1",
    );
    for i in 0..12 {
        let kind = kinds[i % 2];
        let (bytes, media) = kind.file(sweep.next);
        sweep.next += 1;
        let (status, body) = sweep.upload(bytes.clone(), media).await;
        match status {
            201 => {
                sweep.stored += 1;
                acknowledged.push((body["id"].as_str().expect("id").to_owned(), bytes));
            }
            s => assert!((500..600).contains(&s), "random fsync faults: {s} {body}"),
        }
    }
    fiu_ctrl(&sweep, &prefix, "disable name=posix/io/sync/fsync");
    sweep.assert_consistent("after random fsync faults").await;

    let Sweep {
        relay,
        server,
        token,
        ..
    } = sweep;
    server.stop();
    let server = relay.start();
    let mut db = relay.database().await;
    for (image, bytes) in &acknowledged {
        let (status, read) = server.original(&token, image).await;
        assert_eq!(status, 200, "acknowledged image {image}");
        // DICOM is kept as sent; a photo without its location.
        let stored: String = sqlx::query_scalar("SELECT stored_sha256 FROM images WHERE id = $1")
            .bind(image)
            .fetch_one(&mut db)
            .await
            .expect("the image row");
        assert_eq!(
            Sha256::of(&read).to_hex(),
            stored,
            "image {image} reads back"
        );
        assert!(
            read == *bytes || bytes.starts_with(&[0xFF, 0xD8]),
            "image {image}"
        );
    }
    eprintln!(
        "fsync EIO: {} acknowledged uploads read back after restart",
        acknowledged.len()
    );
    server.stop();
}

/// SQLite's writes (`pwrite`) failing with `ENOSPC`: the catalog is out of
/// space, every upload is refused as a full disk and nothing is stored; the
/// same server recovers once writes work again.
#[tokio::test]
async fn a_catalog_out_of_space_is_a_full_disk() {
    if !fiu("a_catalog_out_of_space_is_a_full_disk") {
        return;
    }
    let instances = tempfile::tempdir().expect("tempdir");
    let dicom = Kind::Dicom(support::dicom_instances(instances.path(), 40));
    let kinds = [&Kind::Photo, &dicom];
    let (mut sweep, prefix) = under_fiu().await;
    all_stored(&mut sweep, &kinds, "before the fault").await;
    fiu_ctrl(
        &sweep,
        &prefix,
        "enable name=posix/io/rw/pwrite,failinfo=28",
    );
    all_refused(&mut sweep, &kinds, 3, "pwrite ENOSPC", true).await;
    fiu_ctrl(&sweep, &prefix, "disable name=posix/io/rw/pwrite");
    all_stored(&mut sweep, &kinds, "after the fault, no restart").await;
    sweep.finish("pwrite ENOSPC");
}
