//! Nothing acknowledged is lost: clients upload real files while the server
//! is killed with SIGKILL at random moments. After every restart each upload
//! that got its 201 reads back hash-verified, no image row lacks its blob,
//! no image lacks its derive job (nor a job its image), leftover spool files
//! are gone, and retrying the uploads that never got an answer creates no
//! duplicates.
//!
//! The suite runs a few rounds. For a soak, raise the count (and fix the seed
//! to replay a failure):
//! `RELAY_CRASH_ROUNDS=200 RELAY_CRASH_SEED=42 cargo test --release --test crash`

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

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

/// The files clients upload: every real photo and DICOM fixture.
fn corpus() -> Vec<(String, &'static str, Vec<u8>)> {
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
    files
}

#[derive(Debug, Clone)]
struct Attempt {
    case: String,
    file: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_uploads_survive_sigkill() {
    let rounds = env_number("RELAY_CRASH_ROUNDS", 4);
    let seed = env_number("RELAY_CRASH_SEED", 0x5eed_u64 ^ std::process::id() as u64).max(1);
    eprintln!("crash test: {rounds} rounds, RELAY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let files = corpus();
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Crash Clinic");
    // image id -> stored sha256, for every upload that was acknowledged.
    let mut acknowledged: HashMap<String, String> = HashMap::new();
    let mut unanswered: Vec<Attempt> = Vec::new();

    for round in 0..rounds {
        let server = relay.start_with(
            &["serve", "--listen", "127.0.0.1:0", "--job-lease", "1s"],
            &[],
        );
        let mut clients = Vec::new();
        for client in 0..3u64 {
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
        tokio::time::sleep(Duration::from_millis(50 + rng.below(450))).await;
        server.kill_hard();
        for client in clients {
            let (acked, pending) = client.await.expect("client task");
            acknowledged.extend(acked);
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
        let server = relay.start_with(
            &["serve", "--listen", "127.0.0.1:0", "--job-lease", "1s"],
            &[],
        );
        let survivors: Vec<_> = left_by_crash.iter().filter(|f| f.exists()).collect();
        assert!(
            survivors.is_empty(),
            "round {round}: spool files survived the restart: {survivors:?}"
        );
        for (image, stored) in &acknowledged {
            let response = server
                .http
                .get(server.url(&format!("/api/v1/images/{image}/original")))
                .bearer_auth(&token)
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
        check_catalog(&relay, round).await;

        // Retrying what never got an answer creates nothing twice.
        for attempt in unanswered.drain(..) {
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
            acknowledged.insert(
                body["id"].as_str().expect("id").to_owned(),
                body["stored_sha256"].as_str().expect("sha").to_owned(),
            );
        }
        check_catalog(&relay, round).await;
        server.stop();
    }
    // Jobs ran while the server was being killed: none may be lost. A last
    // server drains the queue; every image must end derived.
    let server = relay.start_with(
        &["serve", "--listen", "127.0.0.1:0", "--job-lease", "1s"],
        &[],
    );
    let mut db = relay.database().await;
    let mut open = i64::MAX;
    for _ in 0..600 {
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
        "crash test: {} acknowledged uploads verified",
        acknowledged.len()
    );
}

/// Uploads random files into fresh cases until the server goes away.
/// Returns the acknowledged (image id, stored sha256) pairs and the attempts
/// that got no answer.
async fn upload_until_failure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    files: &[(&'static str, Vec<u8>)],
    rng: &mut Rng,
    client: u64,
) -> (Vec<(String, String)>, Vec<Attempt>) {
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
                )),
                None => return (acked, vec![Attempt { case, file }]),
            }
        }
    }
}

/// The catalog and the blob store agree.
async fn check_catalog(relay: &Relay, round: u64) {
    let mut db = relay.database().await;
    let images = sqlx::query("SELECT id, stored_sha256 FROM images")
        .fetch_all(&mut db)
        .await
        .expect("images");
    let mut image_ids = HashSet::new();
    for row in &images {
        let id: String = row.get("id");
        let sha: String = row.get("stored_sha256");
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
