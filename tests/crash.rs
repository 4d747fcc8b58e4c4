//! Nothing acknowledged is lost: clients upload real files while the server
//! is killed with SIGKILL at random moments. After every restart each upload
//! that got its 201 reads back hash-verified, no image row lacks its blob,
//! no image lacks its derive job (nor a job its image), leftover spool files
//! are gone, and retrying the uploads that never got an answer creates no
//! duplicates.
//!
//! The files run from a 2 KB DICOM fixture to real CT instances grown at
//! run time to `RELAY_CRASH_LARGEST_MB` (3 in the suite). The suite runs a
//! few rounds; `.ci/crash-loop` runs the long version (many rounds, files up
//! to 50 MB, a wider kill window). To replay a failure, fix the seed it
//! printed: `RELAY_CRASH_SEED=42 cargo test --release --test crash`.
//!
//! After each restart every acknowledged upload is checked in the catalog
//! (its row, with the sha256 its receipt gave) and on disk (every blob
//! re-hashed); the uploads acknowledged since the last restart, the retried
//! ones and a sample of older ones are also read back over HTTP and
//! re-hashed, so the long run does not re-download gigabytes each round.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::Row;
use support::{Relay, files_under, fixture};

/// A small deterministic generator, seeded per run and printed, so a failing
/// sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sizes, in MB, of the CT instances grown for the corpus: 1 MB, then
/// fourfold steps, then `largest`.
fn grown_sizes(largest: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut mb = 1;
    while mb < largest {
        sizes.push(mb);
        mb *= 4;
    }
    sizes.push(largest.max(1));
    sizes
}

/// The files clients upload: every real photo and DICOM fixture, and real
/// CT instances of 1 MB up to `largest_mb`, made in `dir`.
fn corpus(dir: &Path, largest_mb: usize) -> Vec<(String, &'static str, Vec<u8>)> {
    let mut files = Vec::new();
    for name in [
        "camera-gps.jpg",
        "camera-gps-xmp.jpg",
        "camera-plain.jpg",
        "camera-portrait.jpg",
    ] {
        let path = format!("photos/{name}");
        files.push((path.clone(), "image/jpeg", fixture(&path)));
    }
    for name in ["lesion.png", "plain.png"] {
        let path = format!("photos/{name}");
        files.push((path.clone(), "image/png", fixture(&path)));
    }
    for path in support::dicom_fixtures() {
        files.push((path.clone(), "application/dicom", fixture(&path)));
    }
    for (i, mb) in grown_sizes(largest_mb).into_iter().enumerate() {
        let path = dir.join(format!("ct-{mb}mb.dcm"));
        support::large_dicom_instance(&path, mb, &format!("2.25.{}", 7_000_000_019_u64 + i as u64));
        let bytes = std::fs::read(&path).expect("the grown instance");
        files.push((format!("ct-{mb}mb.dcm"), "application/dicom", bytes));
    }
    files
}

/// A SIGKILLed server's way back: how long each start took.
#[derive(Default)]
struct Restarts(Vec<Duration>);

impl Restarts {
    fn start(&mut self, relay: &Relay) -> support::Server {
        let began = Instant::now();
        let server = relay.start_with(
            &["serve", "--listen", "127.0.0.1:0", "--job-lease", "1s"],
            &[],
        );
        self.0.push(began.elapsed());
        server
    }

    fn median(&self) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied().unwrap_or_default()
    }

    fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

/// Reads an image back over HTTP and checks its bytes against the sha256
/// its receipt gave.
async fn read_back(server: &support::Server, token: &str, image: &str, stored: &str, round: u64) {
    let response = server
        .http
        .get(server.url(&format!("/api/v1/images/{image}/original")))
        .bearer_auth(token)
        .send()
        .await
        .expect("read back");
    assert_eq!(
        response.status(),
        200,
        "round {round}: acknowledged image {image} unreadable"
    );
    let bytes = response.bytes().await.expect("body");
    assert_eq!(
        &hex::encode(Sha256::digest(&bytes)),
        stored,
        "round {round}: image {image}"
    );
}

#[derive(Debug, Clone)]
struct Attempt {
    case: String,
    file: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_uploads_survive_sigkill() {
    let rounds = env_number("RELAY_CRASH_ROUNDS", 4);
    let clients_per_round = env_number("RELAY_CRASH_CLIENTS", 3);
    let largest_mb = env_number("RELAY_CRASH_LARGEST_MB", 3) as usize;
    let window_ms = env_number("RELAY_CRASH_WINDOW_MS", 450).max(1);
    let seed = env_number("RELAY_CRASH_SEED", 0x5eed_u64 ^ std::process::id() as u64).max(1);
    eprintln!(
        "crash test: {rounds} rounds, {clients_per_round} clients, files up to {largest_mb} MB, \
         kills 50–{} ms in, RELAY_CRASH_SEED={seed}",
        50 + window_ms
    );
    let began = Instant::now();
    let mut rng = Rng(seed);
    let relay = Relay::new();
    let files = corpus(relay.dir(), largest_mb);
    let (_, _, token) = relay.office_with_user("Crash Clinic");
    // image id -> stored sha256, for every upload that was acknowledged.
    let mut acknowledged: HashMap<String, String> = HashMap::new();
    let mut unanswered: Vec<Attempt> = Vec::new();
    let mut acknowledged_bytes = 0u64;
    let mut largest_acknowledged = 0usize;
    let mut retried = 0usize;
    // Each round begins with a start after a clean stop (SIGTERM) on the
    // same, growing data: the baseline the restarts after SIGKILL are
    // compared with.
    let mut clean_start = Restarts::default();
    let mut restarts = Restarts::default();

    for round in 0..rounds {
        let server = clean_start.start(&relay);
        let mut clients = Vec::new();
        for client in 0..clients_per_round {
            let http = server.http.clone();
            let base = server.base.clone();
            let token = token.clone();
            let files: Vec<(&'static str, Vec<u8>)> =
                files.iter().map(|(_, ct, b)| (*ct, b.clone())).collect();
            let mut local = Rng(rng.next() | 1);
            clients.push(tokio::spawn(async move {
                upload_until_failure(&http, &base, &token, &files, &mut local, client).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50 + rng.below(window_ms))).await;
        server.kill_hard();
        let mut fresh: Vec<(String, String)> = Vec::new();
        for client in clients {
            let (acked, pending) = client.await.expect("client task");
            for (image, sha, file) in acked {
                acknowledged_bytes += files[file].2.len() as u64;
                largest_acknowledged = largest_acknowledged.max(files[file].2.len());
                fresh.push((image.clone(), sha.clone()));
                acknowledged.insert(image, sha);
            }
            unanswered.extend(pending);
        }

        // Restart on the same data and check every promise. The spool files
        // the crash left behind must be gone (new ones may appear at once:
        // the restarted worker derives while we look).
        // Plus one planted like a half-written upload, so the check never
        // passes for want of leftovers.
        let planted = relay.data_dir().join(format!("blobs/tmp/.tmpcrash{round}"));
        std::fs::write(&planted, b"half an upload").expect("plant a spool file");
        let left_by_crash = files_under(&relay.data_dir().join("blobs/tmp"));
        assert!(left_by_crash.contains(&planted));
        let server = restarts.start(&relay);
        let survivors: Vec<_> = left_by_crash.iter().filter(|f| f.exists()).collect();
        assert!(
            survivors.is_empty(),
            "round {round}: spool files survived the restart: {survivors:?}"
        );
        for (image, stored) in &fresh {
            read_back(&server, &token, image, stored, round).await;
        }
        let mut older: Vec<(&String, &String)> = acknowledged.iter().collect();
        older.sort();
        for _ in 0..older.len().min(32) {
            let (image, stored) = older[rng.below(older.len() as u64) as usize];
            read_back(&server, &token, image, stored, round).await;
        }
        check_catalog(&relay, &acknowledged, round).await;

        // Retrying what never got an answer creates nothing twice.
        for attempt in unanswered.drain(..) {
            retried += 1;
            let (_, content_type, bytes) = &files[attempt.file];
            let request = server
                .http
                .post(server.url(&format!("/api/v1/cases/{}/images", attempt.case)))
                .header("content-type", *content_type)
                .body(bytes.clone());
            let (status, body) = server.send(request, &token).await;
            assert!(
                status == 200 || status == 201,
                "round {round}: retry answered {status}: {body}"
            );
            let image = body["id"].as_str().expect("id").to_owned();
            let stored = body["stored_sha256"].as_str().expect("sha").to_owned();
            read_back(&server, &token, &image, &stored, round).await;
            if !acknowledged.contains_key(&image) {
                acknowledged_bytes += bytes.len() as u64;
                largest_acknowledged = largest_acknowledged.max(bytes.len());
            }
            acknowledged.insert(image, stored);
        }
        check_catalog(&relay, &acknowledged, round).await;
        server.stop();
    }
    // Jobs ran while the server was being killed: none may be lost. A last
    // server drains the queue; every image must end derived.
    let server = clean_start.start(&relay);
    let mut db = relay.database().await;
    let mut open = i64::MAX;
    for _ in 0..(600 + 200 * largest_mb) {
        open = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
            .fetch_one(&mut db)
            .await
            .expect("open jobs");
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open, 0, "jobs left unfinished after the crashes");
    let underived: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM images WHERE derive_state NOT IN ('ready', 'unsupported')",
    )
    .fetch_one(&mut db)
    .await
    .expect("underived");
    assert_eq!(underived, 0, "an image lost its derive job");
    server.stop();
    assert!(
        !acknowledged.is_empty(),
        "no upload was ever acknowledged: the test proved nothing"
    );
    eprintln!(
        "crash test: {rounds} rounds in {:.0?}; {} acknowledged uploads ({:.1} MB, largest {:.1} MB) \
         all verified, {retried} unanswered uploads retried without duplicates; restart after SIGKILL \
         median {:.0?} (max {:.0?}) against a start after a clean stop of {:.0?}: {:.2}×",
        began.elapsed(),
        acknowledged.len(),
        acknowledged_bytes as f64 / 1e6,
        largest_acknowledged as f64 / 1e6,
        restarts.median(),
        restarts.max(),
        clean_start.median(),
        restarts.median().as_secs_f64() / clean_start.median().as_secs_f64().max(1e-9),
    );
}

/// Uploads random files into fresh cases until the server goes away.
/// Returns the acknowledged (image id, stored sha256, file) triples and the
/// attempts that got no answer.
async fn upload_until_failure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    files: &[(&'static str, Vec<u8>)],
    rng: &mut Rng,
    client: u64,
) -> (Vec<(String, String, usize)>, Vec<Attempt>) {
    let mut acked = Vec::new();
    loop {
        let referral = support::referral(if client.is_multiple_of(2) {
            "dermatology"
        } else {
            "radiology"
        });
        let Ok(response) = http
            .post(format!("{base}/api/v1/cases"))
            .bearer_auth(token)
            .json(&referral)
            .send()
            .await
        else {
            return (acked, Vec::new());
        };
        let Ok(case) = response.json::<serde_json::Value>().await else {
            return (acked, Vec::new());
        };
        let case = case["id"].as_str().expect("case id").to_owned();
        for _ in 0..3 {
            let file = rng.below(files.len() as u64) as usize;
            let (content_type, bytes) = &files[file];
            let sent = http
                .post(format!("{base}/api/v1/cases/{case}/images"))
                .bearer_auth(token)
                .header("content-type", *content_type)
                .body(bytes.clone())
                .send()
                .await;
            let receipt = match sent {
                Ok(response) if response.status().is_success() => {
                    response.json::<serde_json::Value>().await.ok()
                }
                Ok(response) => panic!("upload refused with {}", response.status()),
                Err(_) => None,
            };
            match receipt {
                Some(r) => acked.push((
                    r["id"].as_str().expect("id").to_owned(),
                    r["stored_sha256"].as_str().expect("sha").to_owned(),
                    file,
                )),
                None => return (acked, vec![Attempt { case, file }]),
            }
        }
    }
}

/// The catalog and the blob store agree, and the catalog holds every
/// acknowledged upload as its receipt gave it. Each distinct blob is
/// re-hashed once.
async fn check_catalog(relay: &Relay, acknowledged: &HashMap<String, String>, round: u64) {
    let mut db = relay.database().await;
    let images = sqlx::query("SELECT id, stored_sha256 FROM images")
        .fetch_all(&mut db)
        .await
        .expect("images");
    let mut image_ids = HashSet::new();
    let mut catalog: HashMap<String, String> = HashMap::new();
    let mut hashed: HashSet<String> = HashSet::new();
    for row in &images {
        let id: String = row.get("id");
        let sha: String = row.get("stored_sha256");
        catalog.insert(id.clone(), sha.clone());
        if !hashed.insert(sha.clone()) {
            image_ids.insert(id);
            continue;
        }
        let path =
            relay
                .data_dir()
                .join(format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|_| panic!("round {round}: image {id} points at a missing blob"));
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            sha,
            "round {round}: blob {sha} is corrupt"
        );
        image_ids.insert(id);
    }
    for (image, stored) in acknowledged {
        assert_eq!(
            catalog.get(image),
            Some(stored),
            "round {round}: acknowledged image {image} is not in the catalog as received"
        );
    }
    let jobs: Vec<String> = sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = 'derive'")
        .fetch_all(&mut db)
        .await
        .expect("jobs");
    let job_images: Vec<String> = jobs
        .iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(p).expect("payload")["image_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    let distinct: HashSet<&String> = job_images.iter().collect();
    assert_eq!(
        distinct.len(),
        job_images.len(),
        "round {round}: an image has two derive jobs"
    );
    assert_eq!(
        distinct.into_iter().cloned().collect::<HashSet<_>>(),
        image_ids,
        "round {round}: images and derive jobs disagree"
    );
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT case_id, sha256 FROM images GROUP BY case_id, sha256 HAVING COUNT(*) > 1)",
    )
    .fetch_one(&mut db)
    .await
    .expect("duplicates");
    assert_eq!(
        duplicates, 0,
        "round {round}: the same upload was stored twice in a case"
    );
}
