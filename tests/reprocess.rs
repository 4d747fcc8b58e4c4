//! `relay reprocess verify` over a store of real images (every DICOM and
//! photo fixture, with their renditions): it finds a flipped byte and a
//! deleted blob, audits each as a security event, reports them by key with
//! a failing exit code, and a run killed halfway resumes from its cursor and
//! finishes without counting any blob twice.

mod support;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{Relay, dicom_fixtures, files_under};

const PHOTOS: [(&str, &str); 4] = [
    ("photos/camera-plain.jpg", "image/jpeg"),
    ("photos/camera-portrait.jpg", "image/jpeg"),
    ("photos/lesion.png", "image/png"),
    ("photos/plain.png", "image/png"),
];

/// A Relay whose store holds every fixture and its renditions; returns it
/// with the blob files on disk.
async fn stocked() -> (Relay, Vec<PathBuf>) {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Archive Clinic");
    let server = relay.start();
    let case = server.create_case(&office, "radiology").await;
    let mut images = Vec::new();
    for dicom in dicom_fixtures() {
        let receipt = server
            .upload(&office, &case, &dicom, "application/dicom")
            .await;
        images.push(receipt["id"].as_str().expect("id").to_owned());
    }
    for (photo, media_type) in PHOTOS {
        let receipt = server.upload(&office, &case, photo, media_type).await;
        images.push(receipt["id"].as_str().expect("id").to_owned());
    }
    for image in &images {
        server.derived(&office, image).await;
    }
    server.stop();
    let blobs = files_under(&relay.data_dir().join("blobs/sha256"));
    assert!(blobs.len() > images.len(), "renditions are blobs too");
    (relay, blobs)
}

fn report(relay: &Relay, out: &Output, path: &str) -> Value {
    assert!(
        !out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(relay.dir().join(path)).expect("report")).expect("json")
}

fn key_of(path: &std::path::Path) -> String {
    path.file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn verify_finds_a_flipped_byte_and_a_deleted_blob() {
    let (relay, blobs) = stocked().await;
    let clean = relay.run(&["reprocess", "verify", "--report", "clean.json"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let r = report(&relay, &clean, "clean.json");
    assert_eq!(r["state"], "finished");
    assert_eq!(r["counts"]["scanned"], blobs.len());
    assert_eq!(r["counts"]["ok"], blobs.len());

    // Damage two blobs: one byte flipped, one file gone.
    let (flipped, deleted) = (&blobs[1], &blobs[blobs.len() - 2]);
    let mut bytes = std::fs::read(flipped).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(flipped, bytes).expect("write");
    std::fs::remove_file(deleted).expect("remove");

    let damaged = relay.run(&[
        "reprocess",
        "verify",
        "--concurrency",
        "3",
        "--batch",
        "5",
        "--report",
        "damaged.json",
    ]);
    assert!(!damaged.status.success(), "damage fails the run");
    let r = report(&relay, &damaged, "damaged.json");
    assert_eq!(r["counts"]["scanned"], blobs.len());
    assert_eq!(r["counts"]["failed"], 2);
    let failures: Vec<(String, String)> = r["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["key"].as_str().expect("key").to_owned(),
                f["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    let reason = |key: &str| {
        failures
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{key} not reported: {failures:?}"))
    };
    assert!(reason(&key_of(flipped)).starts_with("corrupt"));
    assert!(reason(&key_of(deleted)).starts_with("missing"));
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert!(stderr.contains("failed 2"), "{stderr}");

    // Each damaged blob is a security event, by the run.
    let events: Vec<Value> = relay
        .ok(&["admin", "audit", "--action", "blob.integrity"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let mut audited: Vec<&str> = events
        .iter()
        .map(|e| e["object_id"].as_str().expect("object"))
        .collect();
    audited.sort_unstable();
    let mut expected = vec![key_of(flipped), key_of(deleted)];
    expected.sort();
    assert_eq!(audited, expected);
    assert!(events.iter().all(|e| e["actor"] == "relay"));

    // A dry run reads nothing and reports what it would check.
    let dry = relay.run(&["reprocess", "verify", "--dry-run"]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stderr).contains("would look at"));

    // A filter narrows the walk: DICOM originals and their renditions only.
    let dicom = relay.run(&[
        "reprocess",
        "verify",
        "--dry-run",
        "--media-type",
        "application/dicom",
        "--report",
        "dicom.json",
    ]);
    let r = report(&relay, &dicom, "dicom.json");
    let scanned = r["counts"]["scanned"].as_u64().expect("count");
    assert!(scanned > 0 && scanned < blobs.len() as u64, "{scanned}");
}

#[tokio::test]
async fn a_run_killed_halfway_resumes_from_its_cursor() {
    let (relay, blobs) = stocked().await;
    // Slow enough (10 blobs/s, batches of 3) to be killed in the middle.
    let mut child = relay
        .command()
        .args(["reprocess", "verify", "--rate", "10/s", "--batch", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut run: Value = Value::Null;
    for _ in 0..200 {
        let listed = relay.ok(&["reprocess", "list", "--limit", "1"]);
        if let Some(line) = listed.lines().next() {
            run = serde_json::from_str(line).expect("json");
            if run["counts"]["scanned"].as_u64().unwrap_or(0) >= 6 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let id = run["id"].as_str().expect("run id").to_owned();
    let stopped: Value =
        serde_json::from_str(&relay.ok(&["reprocess", "show", &id])).expect("json");
    assert_eq!(stopped["state"], "running", "a killed run stays resumable");
    let done_before = stopped["counts"]["scanned"].as_u64().expect("count");
    assert!(
        done_before >= 6 && done_before < blobs.len() as u64,
        "{stopped}"
    );

    let resumed = relay.run(&["reprocess", "resume", &id, "--report", "resumed.json"]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let r = report(&relay, &resumed, "resumed.json");
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["state"], "finished");
    assert_eq!(
        r["counts"]["scanned"],
        blobs.len(),
        "every blob counted exactly once across the kill"
    );
    assert_eq!(r["counts"]["ok"], blobs.len());
}

/// After a derive-version bump (here: the photos' renditions marked as made
/// by version 0) and a lost rendition (a DICOM image's thumbnail row gone),
/// `rederive` queues exactly those images — no others — and once a worker
/// has run, nothing is stale any more.
#[tokio::test]
async fn rederive_rebuilds_exactly_the_stale_images() {
    let (relay, _) = stocked().await;
    let mut db = relay.database().await;
    let photos =
        sqlx::query("UPDATE images SET derive_version = 0 WHERE media_type <> 'application/dicom'")
            .execute(&mut db)
            .await
            .expect("bump")
            .rows_affected();
    assert_eq!(photos, PHOTOS.len() as u64);
    let lost: String = sqlx::query_scalar(
        "SELECT image_id FROM derivatives d JOIN images i ON i.id = d.image_id \
         WHERE i.media_type = 'application/dicom' AND d.kind = 'thumbnail' LIMIT 1",
    )
    .fetch_one(&mut db)
    .await
    .expect("a DICOM thumbnail");
    sqlx::query("DELETE FROM derivatives WHERE image_id = ? AND kind = 'thumbnail'")
        .bind(&lost)
        .execute(&mut db)
        .await
        .expect("lose a rendition");
    let stale = PHOTOS.len() + 1;
    let jobs_before = support::count(&mut db, "jobs").await;

    let dry = relay.run(&["reprocess", "rederive", "--dry-run", "--report", "dry.json"]);
    assert!(dry.status.success());
    assert_eq!(report(&relay, &dry, "dry.json")["counts"]["scanned"], stale);
    assert_eq!(
        support::count(&mut db, "jobs").await,
        jobs_before,
        "a dry run queues nothing"
    );

    let run = relay.run(&["reprocess", "rederive", "--report", "run.json"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r = report(&relay, &run, "run.json");
    assert_eq!(
        (
            r["counts"]["scanned"].as_u64(),
            r["counts"]["fixed"].as_u64()
        ),
        (Some(stale as u64), Some(stale as u64))
    );
    let queued: Vec<String> = sqlx::query_scalar(
        "SELECT json_extract(payload, '$.image_id') FROM jobs WHERE kind = 'derive' AND state = 'queued'",
    )
    .fetch_all(&mut db)
    .await
    .expect("jobs");
    assert_eq!(queued.len(), stale);
    assert!(queued.contains(&lost));

    // A worker rebuilds them; then nothing is stale.
    let server = relay.start();
    for _ in 0..300 {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM images WHERE derive_state = 'pending' OR derive_version < 1",
        )
        .fetch_one(&mut db)
        .await
        .expect("count");
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
    let again = relay.run(&["reprocess", "rederive", "--report", "again.json"]);
    assert!(again.status.success());
    assert_eq!(report(&relay, &again, "again.json")["counts"]["scanned"], 0);
    let thumbs: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM derivatives WHERE image_id = ? AND kind = 'thumbnail'",
    )
    .bind(&lost)
    .fetch_one(&mut db)
    .await
    .expect("count");
    assert_eq!(thumbs, 1, "the lost thumbnail is back");
}

/// An administrator starts a run over the API, split in three, and watches
/// it; the server's worker and a separate `relay worker` carry the parts
/// out through the job queue, each part a range of keys, together every
/// blob once.
#[tokio::test]
async fn an_admin_starts_and_watches_a_run_over_the_api() {
    let (relay, blobs) = stocked().await;
    std::fs::remove_file(&blobs[0]).expect("lose a blob");
    let admin = relay.admin_token();
    let server = relay.start();
    let worker = relay.start_worker(&[]);
    let (status, runs) = server
        .post(
            "/api/v1/admin/reprocess",
            &admin,
            serde_json::json!({"kind": "verify", "concurrency": 2, "rate": "500/s", "shards": 3}),
        )
        .await;
    assert_eq!(status, 202, "{runs}");
    let ids: Vec<String> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut watched = Vec::new();
    for id in &ids {
        let mut run = Value::Null;
        for _ in 0..300 {
            let (status, body) = server
                .get(&format!("/api/v1/admin/reprocess/{id}"), &admin)
                .await;
            assert_eq!(status, 200);
            run = body;
            if run["state"] == "finished" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(run["state"], "finished", "{run}");
        watched.push(run);
    }
    worker.stop();
    let total = |field: &str| -> u64 {
        watched
            .iter()
            .map(|r| r["counts"][field].as_u64().expect("count"))
            .sum()
    };
    assert_eq!(
        total("scanned"),
        blobs.len() as u64,
        "each blob in one part"
    );
    assert_eq!(total("failed"), 1);
    let failure = watched
        .iter()
        .find_map(|r| r["failures"].as_array().and_then(|f| f.first()).cloned())
        .expect("the lost blob is reported");
    assert_eq!(failure["key"], key_of(&blobs[0]).as_str());
    let (_, listed) = server.get("/api/v1/admin/reprocess", &admin).await;
    let mut recent: Vec<&str> = listed
        .as_array()
        .expect("runs")
        .iter()
        .take(3)
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    recent.sort_unstable();
    let mut started: Vec<&str> = ids.iter().map(String::as_str).collect();
    started.sort_unstable();
    assert_eq!(recent, started);
    // Bad input says which field: a migration without a target, an
    // unknown store, a rate that is not one.
    for (body, field) in [
        (serde_json::json!({"kind": "migrate"}), "to"),
        (
            serde_json::json!({"kind": "verify", "repair_from": "ftp://replica"}),
            "repair_from",
        ),
        (
            serde_json::json!({"kind": "rederive", "shards": 2}),
            "shards",
        ),
    ] {
        let (status, answer) = server.post("/api/v1/admin/reprocess", &admin, body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (422, Some(field)),
            "{answer}"
        );
    }
    let (status, body) = server
        .post(
            "/api/v1/admin/reprocess",
            &admin,
            serde_json::json!({"kind": "verify", "rate": "fast"}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("rate")),
        "{body}"
    );
}

/// Found by the OpenAPI fuzz suite: a count sent as `4.0` (an integer to
/// JSON Schema) was refused, and a caller who may not start a run got its
/// body's validation errors (422) rather than 403.
#[tokio::test]
async fn a_run_request_is_refused_by_role_first_and_takes_whole_floats() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Front Clinic");
    let admin = relay.admin_token();
    let server = relay.start();
    let bad = serde_json::json!({"kind": "nonsense", "concurrency": 4.5});
    let (status, body) = server
        .post("/api/v1/admin/reprocess", &office, bad.clone())
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = server.post("/api/v1/admin/reprocess", &admin, bad).await;
    assert_eq!(status, 422);
    let (status, runs) = server
        .post(
            "/api/v1/admin/reprocess",
            &admin,
            serde_json::json!({"kind": "sweep", "dry_run": true, "concurrency": 2.0, "grace_secs": 60.0, "shards": 1.0}),
        )
        .await;
    assert_eq!(status, 202, "{runs}");
    assert_eq!(runs[0]["options"]["concurrency"], 2, "{runs}");
}
