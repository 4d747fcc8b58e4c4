//! Many stateless `relay` processes on one PostgreSQL and one S3 bucket
//! (ARCHITECTURE decision 8): they behave as one service, a worker that dies
//! mid-job loses nothing, and each shared backend can go away and come back
//! without a restart and without losing what was acknowledged.
//!
//! Every process is a [`Relay::with_backends`] installation: its own data
//! directory (upload spool) and the shared stores. The tests need the test
//! PostgreSQL and S3 servers (`.ci/test` starts them); without them they
//! skip loudly, and under `RELAY_REQUIRE_SERVICES=1` they fail instead.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use relay_workers::testing;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use support::cluster::Cluster;
use support::proxy::{Mode, Proxy};
use support::stores::{endpoint, shared_stores, via, with_prefix};
use support::{Relay, Server, files_under, fixture};

async fn connect(database: &str) -> PgConnection {
    PgConnection::connect(database)
        .await
        .expect("connect to the test database")
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads an image's original through `server` and checks it against the
/// receipt: the stored digest, and the bytes sent when they were stored
/// unchanged (photos with a location are stored without it).
async fn read_back(server: &Server, token: &str, receipt: &Value, sent: &[u8]) {
    let id = receipt["id"].as_str().expect("image id");
    let response = server
        .http
        .get(server.url(&format!("/api/v1/images/{id}/original")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "original of {id}");
    let body = response.bytes().await.expect("original read");
    assert_eq!(
        hex_sha256(&body),
        receipt["stored_sha256"].as_str().expect("stored digest"),
        "{id} reads back as stored"
    );
    if receipt["sha256"] == receipt["stored_sha256"] {
        assert_eq!(&body[..], sent, "{id} reads back as sent");
    }
}

/// The state, attempts and holder of the derive job of `image`.
async fn derive_job(db: &mut PgConnection, image: &str) -> (String, i64, Option<String>) {
    sqlx::query_as(
        "SELECT state, attempts, worker FROM jobs \
         WHERE kind = 'derive' AND payload::jsonb ->> 'image_id' = $1",
    )
    .bind(image)
    .fetch_one(db)
    .await
    .expect("the image's derive job")
}

/// Polls until `check` holds for the image's derive job; returns the job.
async fn wait_for_job(
    db: &mut PgConnection,
    image: &str,
    what: &str,
    check: impl Fn(&(String, i64, Option<String>)) -> bool,
) -> (String, i64, Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = derive_job(db, image).await;
        if check(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "derive job of {image}: {what}; last seen {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The derivative kinds recorded for an image, as (kind, rows).
async fn derivatives(db: &mut PgConnection, image: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT kind, COUNT(*) FROM derivatives WHERE image_id = $1 GROUP BY kind ORDER BY kind",
    )
    .bind(image)
    .fetch_all(db)
    .await
    .expect("derivatives")
}

fn thumbnail_and_preview() -> Vec<(String, i64)> {
    vec![("preview".to_owned(), 1), ("thumbnail".to_owned(), 1)]
}

/// How many times a process logged that it derived `image`.
fn derived_in(log: &str, image: &str) -> usize {
    let needle = format!("image.id={image}");
    log.lines()
        .filter(|l| l.contains(": derived ") && l.contains(&needle))
        .count()
}

/// The media type of a fixture, by its extension.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("jpg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/dicom",
    }
}

/// Promise: two `relay serve` processes and a `relay worker` on one
/// PostgreSQL and one bucket are one service. How: each process is its own
/// installation (own data directory) on the shared stores; each server runs
/// one in-process job runner and the worker two, so three processes race
/// on the one queue (with `--workers 0` on the servers only one process
/// would claim, and "exactly once" would prove little). Every real photo
/// and DICOM fixture is uploaded at once, alternating servers, and read
/// back hash-verified through the other. Every image ends `ready` with exactly
/// one thumbnail and one preview (the table's key forbids duplicate rows;
/// what shows there was no second run is next); every derive job is `done`
/// after exactly one claim (`attempts = 1`: a second, concurrent run would
/// have needed a second claim); and the three logs together show each image
/// derived exactly once. A case claimed on one server is `already_claimed` for a
/// second specialist on the other, and the report signed on one reads the
/// same on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_a_worker_are_one_service() {
    let test = "two_servers_and_a_worker_are_one_service";
    let Some((database, blobs)) = shared_stores(test).await else {
        return;
    };
    let (a, b, w) = (
        Relay::with_backends(&database, &blobs),
        Relay::with_backends(&database, &blobs),
        Relay::with_backends(&database, &blobs),
    );
    let (_, _, office) = a.office_with_user("Clinic");
    let reader = b.specialist_token("dermatology");
    let rival = a.specialist_token("dermatology");
    let serve = ["serve", "--listen", "127.0.0.1:0", "--workers", "1"];
    let server_a = a.start_with(&serve, &[]);
    let server_b = b.start_with(&serve, &[]);
    let worker = w.start_worker(&["--workers", "2"]);
    let servers = [&server_a, &server_b];

    let skin = server_a.create_case(&office, "dermatology").await;
    let scans = server_b.create_case(&office, "radiology").await;
    let mut files: Vec<String> = [
        "camera-gps.jpg",
        "camera-gps-xmp.jpg",
        "camera-plain.jpg",
        "camera-portrait.jpg",
        "lesion.png",
        "plain.png",
    ]
    .iter()
    .map(|name| format!("photos/{name}"))
    .collect();
    files.extend(support::dicom_fixtures());
    // All at once, so that the in-process runners are busy and the worker
    // gets its share of the queue.
    let (office_ref, skin_ref, scans_ref) = (&office, &skin, &scans);
    let uploads = files.iter().enumerate().map(|(n, path)| {
        let case = if path.starts_with("photos/") {
            skin_ref
        } else {
            scans_ref
        };
        let server = servers[n % 2];
        async move {
            let receipt = server
                .upload(office_ref, case, path, content_type(path))
                .await;
            (n % 2, path, receipt)
        }
    });
    let uploaded = join_all(uploads).await;
    for (through, path, receipt) in &uploaded {
        read_back(servers[1 - through], &office, receipt, &fixture(path)).await;
    }
    for (n, (_, path, receipt)) in uploaded.iter().enumerate() {
        let id = receipt["id"].as_str().expect("image id");
        let image = servers[n % 2].derived(&office, id).await;
        assert_eq!(image["derive_state"], "ready", "{path}: {image}");
    }

    let mut db = connect(&database).await;
    let jobs: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT payload::jsonb ->> 'image_id', state, attempts, worker FROM jobs \
         WHERE kind = 'derive'",
    )
    .fetch_all(&mut db)
    .await
    .expect("derive jobs");
    assert_eq!(jobs.len(), uploaded.len(), "one derive job per image");
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (image, state, attempts, holder) in &jobs {
        assert_eq!((state.as_str(), *attempts), ("done", 1), "job of {image}");
        *by_worker
            .entry(holder.clone().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!("derive jobs done per worker: {by_worker:?}");
    let logs = [server_a.log(), server_b.log(), worker.log()];
    for (_, path, receipt) in &uploaded {
        let id = receipt["id"].as_str().expect("image id");
        assert_eq!(
            derivatives(&mut db, id).await,
            thumbnail_and_preview(),
            "{path}"
        );
        let runs: usize = logs.iter().map(|log| derived_in(log, id)).sum();
        assert_eq!(runs, 1, "{path} was derived once across the processes");
    }

    // The consult: submitted on A, claimed on A, refused on B, signed on A,
    // read on B.
    let case_path = |action: &str| format!("/api/v1/cases/{skin}/{action}");
    let (status, body) = server_a
        .post(&case_path("submit"), &office, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server_a.post(&case_path("claim"), &reader, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server_b.post(&case_path("claim"), &rival, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("already_claimed")),
        "{body}"
    );
    let impression = "Benign compound naevus; no follow-up needed.";
    for (method, action) in [
        (reqwest::Method::PUT, "report"),
        (reqwest::Method::POST, "report/sign"),
    ] {
        let request = server_a
            .http
            .request(method, server_a.url(&case_path(action)))
            .json(&json!({"impression": impression}));
        let (status, body) = server_a.send(request, &reader).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    let (status, report) = server_b.get(&case_path("report"), &office).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["impression"].as_str(), report["status"].as_str()),
        (Some(impression), Some("signed")),
        "{report}"
    );
    let (status, case) = server_b
        .get(&format!("/api/v1/cases/{skin}"), &office)
        .await;
    assert_eq!(
        (status, case["status"].as_str()),
        (200, Some("reported")),
        "{case}"
    );
    worker.stop();
}

/// Promise: a worker killed with SIGKILL mid-job has its job finished by
/// another worker once the lease runs out, and only then. How: the first
/// worker reaches S3 through a proxy that is stalled once it has started,
/// so after it claims the derive job its read of the original waits for an
/// answer: the job is mid-run, holding its lease by heartbeat, for the
/// store's answer timeout (10 s an attempt), longer than the test needs (a
/// job that is merely slow would race the kill). A second worker
/// on the direct endpoint waits two leases without taking the job from the
/// live first one; then the first is killed with SIGKILL, and the second
/// finishes the job: `done` on its second attempt, by another worker,
/// one thumbnail and one preview, derived once in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_has_its_job_finished_by_another() {
    let test = "a_worker_killed_mid_job_has_its_job_finished_by_another";
    let Some((database, blobs)) = shared_stores(test).await else {
        return;
    };
    let lease = Duration::from_secs(2);
    let worker_args = ["--workers", "1", "--job-lease", "2s"];
    let proxy = Proxy::start(endpoint(&blobs));
    let office_relay = Relay::with_backends(&database, &blobs);
    let doomed_relay = Relay::with_backends(&database, &via(&blobs, proxy.addr()));
    let heir_relay = Relay::with_backends(&database, &blobs);
    let (_, _, office) = office_relay.office_with_user("Clinic");
    let server =
        office_relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], &[]);
    let doomed = doomed_relay.start_worker(&worker_args);
    proxy.set(Mode::Stall);

    let case = server.create_case(&office, "radiology").await;
    let receipt = server
        .upload(&office, &case, "dicom/emri_small.dcm", "application/dicom")
        .await;
    let image = receipt["id"].as_str().expect("image id");
    let mut db = connect(&database).await;
    let (_, _, holder) = wait_for_job(&mut db, image, "claimed by the first worker", |job| {
        job.0 == "running"
    })
    .await;
    let holder = holder.expect("a running job names its worker");

    let heir = heir_relay.start_worker(&worker_args);
    tokio::time::sleep(lease * 2 + Duration::from_millis(500)).await;
    assert_eq!(
        derive_job(&mut db, image).await,
        ("running".to_owned(), 1, Some(holder.clone())),
        "a live worker keeps its job by heartbeat"
    );

    let doomed_log = doomed.log();
    doomed.kill_hard();
    let started = Instant::now();
    let derived = server.derived(&office, image).await;
    assert_eq!(derived["derive_state"], "ready", "{derived}");
    eprintln!(
        "the job was finished {:?} after the kill",
        started.elapsed()
    );
    let (state, attempts, finisher) = derive_job(&mut db, image).await;
    assert_eq!((state.as_str(), attempts), ("done", 2));
    assert_ne!(finisher, Some(holder), "finished by the other worker");
    assert_eq!(derivatives(&mut db, image).await, thumbnail_and_preview());
    assert_eq!(
        (
            derived_in(&doomed_log, image),
            derived_in(&heir.log(), image)
        ),
        (0, 1)
    );
    read_back(&server, &office, &receipt, &fixture("dicom/emri_small.dcm")).await;
    heir.stop();
}

/// What one request of the background traffic got.
#[derive(Debug)]
struct Answer {
    what: &'static str,
    status: u16,
    body: Value,
}

/// The photo the background traffic uploads.
const TRAFFIC_PHOTO: &str = "photos/camera-plain.jpg";

/// Uploads a photo into a new case, over and over, until `stop`; returns
/// every answer and the receipts of the acknowledged uploads.
async fn traffic(
    http: reqwest::Client,
    base: String,
    token: String,
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<Answer>, Vec<Value>) {
    let photo = fixture(TRAFFIC_PHOTO);
    let mut answers = Vec::new();
    let mut receipts = Vec::new();
    while !stop.is_cancelled() {
        let create = http
            .post(format!("{base}/api/v1/cases"))
            .bearer_auth(&token)
            .json(&support::referral("dermatology"));
        let (status, body) = answer(create).await;
        answers.push(Answer {
            what: "create case",
            status,
            body: body.clone(),
        });
        let Some(case) = body["id"].as_str().filter(|_| status == 201) else {
            continue;
        };
        let upload = http
            .post(format!(
                "{base}/api/v1/cases/{case}/images?filename=photo.jpg"
            ))
            .bearer_auth(&token)
            .header("content-type", "image/jpeg")
            .body(photo.clone());
        let (status, body) = answer(upload).await;
        if status == 201 {
            receipts.push(body.clone());
        }
        answers.push(Answer {
            what: "upload",
            status,
            body,
        });
    }
    (answers, receipts)
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Requires a 503 with the JSON error body.
fn assert_unavailable(status: u16, body: &Value, what: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{what}: {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry")),
        "{what} says what to do: {body}"
    );
}

/// Polls `/readyz` until it answers `want`; returns its last body.
async fn wait_ready(server: &Server, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server.get("/readyz", "").await;
        if status == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Promise: when PostgreSQL goes away, requests answer 503 with a JSON body
/// and `/readyz` goes red; when it returns, both recover without a restart,
/// and nothing acknowledged before or during the outage is lost. How: a
/// private cluster (the machine's own server cannot be stopped by a test)
/// is stopped the hard way (`pg_ctl -m immediate`: no checkpoint) while
/// uploads run in a loop, and started again. Every answer the traffic got is
/// a success or a 503 `unavailable`; every acknowledged upload reads back
/// hash-verified and is derived by the server's own worker, which went on
/// by itself (short job lease, so a job whose completion the outage lost
/// runs again soon).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_during_traffic() {
    let test = "postgres_stopped_and_restarted_during_traffic";
    let Some(s3) = testing::s3(test) else {
        return;
    };
    let Some(cluster) = Cluster::start(test) else {
        return;
    };
    let relay = Relay::with_backends(
        &cluster.url(),
        &with_prefix(&s3, &testing::unique_name(test)),
    );
    let (_, _, office) = relay.office_with_user("Clinic");
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--job-lease",
            "2s",
        ],
        &[],
    );
    let before = server.create_case(&office, "dermatology").await;
    let acknowledged_before = server
        .upload(&office, &before, "photos/camera-gps.jpg", "image/jpeg")
        .await;

    let stop = tokio_util::sync::CancellationToken::new();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(traffic(
                server.http.clone(),
                server.base.clone(),
                office.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.stop_immediately();
    let down = Instant::now();

    // Each waits out the pool's acquire timeout, so both at once.
    let ((status, ready), (read_status, body)) = tokio::join!(
        server.get("/readyz", ""),
        server.get("/api/v1/cases", &office)
    );
    assert_eq!(
        (status, ready["status"].as_str()),
        (503, Some("unavailable")),
        "{ready}"
    );
    assert_ne!(ready["database"], "ok", "{ready}");
    assert_eq!(ready["blobs"], "ok", "{ready}");
    assert_unavailable(read_status, &body, "a read while the database is down");

    cluster.start_again();
    eprintln!("PostgreSQL was down for {:?}", down.elapsed());
    let back = Instant::now();
    wait_ready(&server, 200).await;
    eprintln!(
        "/readyz was green again {:?} after PostgreSQL started",
        back.elapsed()
    );
    let after = server.create_case(&office, "dermatology").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut answers = Vec::new();
    let mut receipts = vec![(acknowledged_before, "photos/camera-gps.jpg")];
    for handle in loops {
        let (a, r) = handle.await.expect("traffic ran");
        answers.extend(a);
        receipts.extend(r.into_iter().map(|receipt| (receipt, TRAFFIC_PHOTO)));
    }
    let last = server
        .upload(&office, &after, "photos/plain.png", "image/png")
        .await;
    receipts.push((last, "photos/plain.png"));

    let refused = answers.iter().filter(|a| a.status == 503).count();
    eprintln!(
        "traffic: {} answers, {refused} of them 503, {} uploads acknowledged",
        answers.len(),
        receipts.len()
    );
    for a in &answers {
        if a.status >= 300 {
            assert_unavailable(a.status, &a.body, a.what);
        }
    }
    for (receipt, path) in &receipts {
        read_back(&server, &office, receipt, &fixture(path)).await;
        let id = receipt["id"].as_str().expect("image id");
        let image = server.derived(&office, id).await;
        assert_eq!(image["derive_state"], "ready", "{image}");
    }
    let mut db = connect(&cluster.url()).await;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT id FROM images")
        .fetch_all(&mut db)
        .await
        .expect("images");
    let stored: HashSet<String> = stored.into_iter().map(|(id,)| id).collect();
    for (receipt, _) in &receipts {
        let id = receipt["id"].as_str().expect("image id");
        assert!(
            stored.contains(id),
            "acknowledged image {id} is in the catalog"
        );
    }
    db.close().await.expect("close");
    server.stop();
}

/// Promise: an S3 endpoint that is down fails an upload cleanly and
/// visibly, and everything recovers when it returns, without a restart.
/// How: the server and a worker reach the test S3 server through a proxy
/// the test takes down (the port refuses connections) and brings back on
/// the same port. While down: the upload answers 503 `unavailable` saying
/// to retry, leaves no catalog row and no spool file; `/readyz` is red for
/// the blob store only; a derive job that meets the outage is queued again
/// (a transient failure), not dead. Once back: `/readyz` is green, the same
/// upload succeeds and reads back hash-verified, and the delayed derive job
/// completes on its second attempt. Before that, an endpoint that hangs
/// (accepts, never answers) turns `/readyz` red within its check timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_endpoint_down_fails_uploads_cleanly_and_recovers() {
    let test = "an_s3_endpoint_down_fails_uploads_cleanly_and_recovers";
    let Some((database, blobs)) = shared_stores(test).await else {
        return;
    };
    let proxy = Proxy::start(endpoint(&blobs));
    let blobs = via(&blobs, proxy.addr());
    let relay = Relay::with_backends(&database, &blobs);
    let worker_relay = Relay::with_backends(&database, &blobs);
    let (_, _, office) = relay.office_with_user("Clinic");
    let server = relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], &[]);
    let case = server.create_case(&office, "dermatology").await;
    let first = server
        .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let first_id = first["id"].as_str().expect("image id");

    proxy.set(Mode::Stall);
    let asked = Instant::now();
    let (status, ready) = server.get("/readyz", "").await;
    eprintln!(
        "/readyz answered {status} after {:?} with S3 hung",
        asked.elapsed()
    );
    assert_eq!(
        (status, ready["database"].as_str()),
        (503, Some("ok")),
        "{ready}"
    );
    assert!(
        ready["blobs"]
            .as_str()
            .is_some_and(|b| b.contains("no answer")),
        "{ready}"
    );

    proxy.set(Mode::Down);
    let photo = fixture("photos/lesion.png");
    let upload = || {
        server
            .http
            .post(server.url(&format!("/api/v1/cases/{case}/images?filename=lesion.png")))
            .bearer_auth(&office)
            .header("content-type", "image/png")
            .body(photo.clone())
    };
    let (status, body) = server.send(upload(), &office).await;
    assert_unavailable(status, &body, "an upload while S3 is down");
    let mut db = connect(&database).await;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM images WHERE sha256 = $1")
        .bind(hex_sha256(&photo))
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(rows, 0, "no catalog row for the refused upload");
    let spool = relay.data_dir().join("spool");
    assert_eq!(
        files_under(&spool),
        Vec::<PathBuf>::new(),
        "no spool file left"
    );
    let asked = Instant::now();
    let (status, ready) = server.get("/readyz", "").await;
    eprintln!(
        "/readyz answered {status} after {:?} with S3 down",
        asked.elapsed()
    );
    assert_eq!(
        (status, ready["database"].as_str()),
        (503, Some("ok")),
        "{ready}"
    );
    assert!(
        ready["blobs"]
            .as_str()
            .is_some_and(|b| b.contains("does not answer")),
        "says why: {ready}"
    );

    // A derive job meeting the outage is retried later, not given up.
    let worker = worker_relay.start_worker(&["--workers", "1", "--job-lease", "2s"]);
    let job = wait_for_job(&mut db, first_id, "failed once", |job| {
        job.0 != "running" && job.1 == 1
    })
    .await;
    assert_eq!(job.0, "queued", "a store outage is transient: {job:?}");

    proxy.set(Mode::Forward);
    wait_ready(&server, 200).await;
    let (status, receipt) = server.send(upload(), &office).await;
    assert_eq!(status, 201, "{receipt}");
    read_back(&server, &office, &receipt, &photo).await;
    let image = server.derived(&office, first_id).await;
    assert_eq!(image["derive_state"], "ready", "{image}");
    assert_eq!(derive_job(&mut db, first_id).await.1, 2);
    assert_eq!(
        derivatives(&mut db, first_id).await,
        thumbnail_and_preview()
    );
    worker.stop();
}
