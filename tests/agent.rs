//! `relay agent`, the edge agent, against a real server: folders of real
//! DICOM files and photos become cases, each file uploaded once and moved
//! to `done/` (bad ones to `failed/` with a reason); a file still being
//! written waits until it is complete; an agent SIGKILLed mid-folder and
//! started again ends with every file uploaded exactly once; and while the
//! server is unreachable files stay queued, then go up when it is back.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::Digest;
use support::proxy::{Mode, Proxy};
use support::{PATIENT_NAME, Relay, Server, files_under, referral};

fn sha_of(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Copies fixtures into `dir` (made as needed); returns the copies.
fn copy(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("dir");
    names
        .iter()
        .map(|name| {
            let dest = dir.join(Path::new(name).file_name().expect("name"));
            std::fs::copy(fixture(name), &dest).expect("copy");
            dest
        })
        .collect()
}

fn sidecar(dir: &Path, specialty: &str, submit: bool) {
    let mut body = referral(specialty);
    if submit {
        body["submit"] = json!(true);
    }
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(dir.join("case.json"), body.to_string()).expect("case.json");
}

/// The installation, its server, an office token and a watched folder.
struct Site {
    relay: Relay,
    server: Server,
    token: String,
    tokens: PathBuf,
    watch: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let relay = Relay::new();
        let (_, _, token) = relay.office_with_user("Rural Clinic");
        let server = relay.start();
        let tokens = relay.dir().join("office.token");
        std::fs::write(&tokens, &token).expect("token file");
        Self {
            relay,
            server,
            token,
            tokens,
            watch: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn watch(&self) -> &Path {
        self.watch.path()
    }

    /// `relay agent` against `server` with a fast poll.
    fn agent(&self, server: &str, extra: &[&str]) -> std::process::Command {
        let mut cmd = self.relay.command();
        cmd.args(["agent", "--server", server, "--token-file"])
            .arg(&self.tokens)
            .arg("--watch")
            .arg(self.watch())
            .arg("--state-dir")
            .arg(self.relay.dir().join("agent-state"))
            .args(["--poll", "150ms", "--status-every", "1s"])
            .args(extra)
            .env("RUST_LOG", "info");
        cmd
    }

    /// Starts the agent in the background, its log captured.
    fn spawn(&self, server: &str, extra: &[&str]) -> Agent {
        let mut child = self
            .agent(server, extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay agent starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Agent { child, log }
    }

    async fn cases(&self) -> Vec<Value> {
        let (status, page) = self.server.get("/api/v1/cases", &self.token).await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().expect("items").clone()
    }

    async fn images(&self, case: &str) -> Vec<Value> {
        let (status, listed) = self
            .server
            .get(&format!("/api/v1/cases/{case}/images"), &self.token)
            .await;
        assert_eq!(status, 200, "{listed}");
        listed.as_array().expect("images").clone()
    }

    /// The sha256 of every image of every case of the office.
    async fn all_image_shas(&self) -> Vec<String> {
        let mut shas = Vec::new();
        for case in self.cases().await {
            for image in self.images(case["id"].as_str().expect("id")).await {
                shas.push(image["sha256"].as_str().expect("sha").to_owned());
            }
        }
        shas.sort();
        shas
    }
}

struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it holds or `secs` pass.
async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bytes of uploads in progress on the server.
/// The size of the largest upload the server holds part of: with small
/// files going up beside a large one, only a size past every small file
/// says the large one's bytes are the ones in flight.
fn largest_part(uploads: &Path) -> u64 {
    files_under(uploads)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

/// Relative paths of the files under `dir`.
fn rels(root: &Path, dir: &str) -> BTreeSet<String> {
    files_under(&root.join(dir))
        .iter()
        .map(|p| {
            p.strip_prefix(root.join(dir))
                .expect("under")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[tokio::test]
async fn folders_become_cases_each_file_once_and_a_bad_file_goes_to_failed() {
    let site = Site::new();
    let watch = site.watch();
    // A study folder asking to be submitted, with a subfolder of photos.
    sidecar(&watch.join("ct"), "radiology", true);
    std::fs::create_dir_all(watch.join("ct/SE1")).expect("dir");
    let mut ct = support::dicom_instances(&watch.join("ct/SE1"), 4);
    ct.extend(copy(
        &watch.join("ct/photos"),
        &["photos/camera-plain.jpg", "photos/plain.png"],
    ));
    // A dermatology folder left as a draft, with two bad files.
    sidecar(&watch.join("derm"), "dermatology", false);
    let derm = copy(
        &watch.join("derm"),
        &["photos/lesion.png", "photos/camera-portrait.jpg"],
    );
    let bad = copy(
        &watch.join("derm"),
        &["bad/truncated.jpg", "bad/not-an-image.txt"],
    );
    let sha = |files: &[PathBuf]| -> Vec<String> {
        let mut shas: Vec<String> = files.iter().map(|f| sha_of(f)).collect();
        shas.sort();
        shas
    };
    let (ct_shas, derm_shas) = (sha(&ct), sha(&derm));

    let out = site
        .agent(
            &site.server.url(""),
            &["--once", "--json", "--settle", "0s"],
        )
        .output()
        .expect("relay agent runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a refused file fails the run\n{stderr}"
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 10, "{lines:?}");
    for line in lines.iter().filter(|l| l["state"] == "done") {
        let moved = watch
            .join("done")
            .join(line["file"].as_str().expect("file"));
        assert_eq!(
            line["sha256"],
            sha_of(&moved).as_str(),
            "the receipt is the file's"
        );
    }
    let failed: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l["state"] == "failed")
        .map(|l| l["file"].as_str().expect("file"))
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from(["derm/not-an-image.txt", "derm/truncated.jpg"])
    );

    // Two cases; the study's submitted, the other a draft.
    let cases = site.cases().await;
    assert_eq!(cases.len(), 2, "{cases:?}");
    let by_specialty = |s: &str| {
        cases
            .iter()
            .find(|c| c["specialty"] == s)
            .unwrap_or_else(|| panic!("a {s} case"))
    };
    let (ct_case, derm_case) = (by_specialty("radiology"), by_specialty("dermatology"));
    assert_eq!(ct_case["status"], "submitted");
    assert_eq!(derm_case["status"], "draft");
    for (case, expected) in [(ct_case, &ct_shas), (derm_case, &derm_shas)] {
        let mut stored: Vec<String> = site
            .images(case["id"].as_str().expect("id"))
            .await
            .iter()
            .map(|i| i["sha256"].as_str().expect("sha").to_owned())
            .collect();
        stored.sort();
        assert_eq!(&stored, expected, "every good file once, in its case");
    }

    // Everything moved, keeping relative paths; a reason beside each bad file.
    let remaining: Vec<_> = files_under(watch)
        .into_iter()
        .filter(|p| !p.starts_with(watch.join("done")) && !p.starts_with(watch.join("failed")))
        .collect();
    assert_eq!(
        remaining,
        vec![watch.join("derm/case.json")],
        "the draft's referral stays; the submitted one moved to done/"
    );
    let done = rels(watch, "done");
    for expected in [
        "ct/case.json",
        "ct/SE1/instance-0.dcm",
        "ct/photos/plain.png",
        "derm/lesion.png",
    ] {
        assert!(done.contains(expected), "{expected} in {done:?}");
    }
    for file in &bad {
        let name = file.file_name().expect("name").to_string_lossy();
        let reason = std::fs::read_to_string(watch.join(format!("failed/derm/{name}.reason.txt")))
            .expect("a reason file");
        assert!(reason.contains("refused: "), "{reason}");
        assert!(
            reason.contains(derm_case["id"].as_str().expect("id")),
            "{reason}"
        );
        assert!(!reason.contains(PATIENT_NAME), "ids only: {reason}");
        assert!(watch.join(format!("failed/derm/{name}")).is_file());
    }
    assert!(!stderr.contains(PATIENT_NAME), "no patient data in the log");
    site.server.stop();
}

#[tokio::test]
async fn a_file_still_being_written_waits_until_it_is_complete() {
    let site = Site::new();
    let watch = site.watch();
    sidecar(&watch.join("visit"), "dermatology", false);
    let bytes = support::fixture("photos/camera-plain.jpg");
    let growing = watch.join("visit/photo.jpg");
    let mut file = std::fs::File::create(&growing).expect("create");
    file.write_all(&bytes[..4096]).expect("write");
    file.sync_all().expect("sync");
    let agent = site.spawn(&site.server.url(""), &["--once", "--stable-for", "400ms"]);
    // The copy goes on in pieces, each sooner than the agent's stable time.
    for chunk in bytes[4096..].chunks(4096) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        file.write_all(chunk).expect("write");
        file.sync_all().expect("sync");
        assert!(
            growing.is_file(),
            "taken while still growing\n{}",
            agent.log()
        );
    }
    drop(file);
    let mut agent = agent;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not finish\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{}", agent.log());
    let moved = watch.join("done/visit/photo.jpg");
    assert_eq!(sha_of(&moved), hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(!watch.join("failed").exists(), "no partial file was sent");
    let cases = site.cases().await;
    assert_eq!(cases.len(), 1);
    let images = site.images(cases[0]["id"].as_str().expect("id")).await;
    assert_eq!(images.len(), 1, "one image, of the whole file");
    assert_eq!(images[0]["sha256"], sha_of(&moved).as_str());
    site.server.stop();
}

#[tokio::test]
async fn an_agent_killed_mid_folder_and_restarted_uploads_every_file_exactly_once() {
    let site = Site::new();
    let watch = site.watch();
    sidecar(&watch.join("ct"), "radiology", false);
    support::large_dicom(&watch.join("ct/a-large.dcm"), 32);
    std::fs::create_dir_all(watch.join("ct/series")).expect("dir");
    support::dicom_instances(&watch.join("ct/series"), 40);
    let mut expected: Vec<String> = files_under(watch)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .map(|p| sha_of(p))
        .collect();
    expected.sort();
    let total = expected.len();
    let largest_small = files_under(&watch.join("ct/series"))
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let server = site.server.url("");

    let mut first = site.spawn(&server, &[]);
    // Killed with files done, and the large one's bytes part-way up.
    let uploads = site.relay.data_dir().join("uploads");
    until(60, "files in done/ and the large one in flight", || {
        rels(watch, "done").len() >= 5 && largest_part(&uploads) > largest_small
    })
    .await;
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    let moved = rels(watch, "done").len();
    assert!(moved < total, "killed part-way ({moved} of {total} moved)");

    let second = site.spawn(&server, &[]);
    until(120, "every file in done/", || {
        rels(watch, "done").len() == total
            && !watch
                .join("ct/series")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
    })
    .await;
    assert!(!watch.join("ct/a-large.dcm").exists(), "{}", second.log());
    assert!(
        second
            .log()
            .contains("going on with the upload an earlier run began"),
        "the large file resumed from the server's offset\n{}",
        second.log()
    );
    drop(second);
    let cases = site.cases().await;
    assert_eq!(cases.len(), 1, "one case, not one per run");
    assert_eq!(
        site.all_image_shas().await,
        expected,
        "each file exactly once"
    );
    assert!(!watch.join("failed").exists());
    site.server.stop();
}

#[tokio::test]
async fn files_stay_queued_while_the_server_is_unreachable_and_go_up_when_it_is_back() {
    let site = Site::new();
    let watch = site.watch();
    let upstream = site
        .server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("addr");
    let proxy = Proxy::start(upstream);
    proxy.set(Mode::Down);
    sidecar(&watch.join("visit"), "radiology", false);
    let files = copy(
        &watch.join("visit"),
        &[
            "dicom/CT_small.dcm",
            "dicom/MR_small.dcm",
            "photos/plain.png",
        ],
    );
    let mut expected: Vec<String> = files.iter().map(|f| sha_of(f)).collect();
    expected.sort();
    let agent = site.spawn(
        &format!("http://{}", proxy.addr()),
        &["--max-backoff", "1s"],
    );
    until(30, "the agent to notice the server is down", || {
        agent.log().contains("cannot reach the server")
    })
    .await;
    until(30, "a status line while offline", || {
        agent.log().contains("status: server unreachable")
    })
    .await;
    for file in &files {
        assert!(file.is_file(), "queued, not moved: {}", file.display());
    }
    assert!(
        !watch.join("failed").exists(),
        "no file failed for a network fault"
    );
    assert!(site.cases().await.is_empty());

    proxy.set(Mode::Forward);
    until(60, "the queued files in done/", || {
        rels(watch, "done").len() == files.len()
    })
    .await;
    assert!(
        agent.log().contains("the server answers again"),
        "{}",
        agent.log()
    );
    assert_eq!(site.all_image_shas().await, expected);
    assert!(!watch.join("failed").exists());
    drop(agent);
    drop(proxy);
    site.server.stop();
}

#[tokio::test]
async fn case_per_study_groups_loose_dicom_by_study_with_the_referral_template() {
    let site = Site::new();
    let watch = site.watch();
    copy(
        watch,
        &[
            "dicom/CT_small.dcm",
            "dicom/MR_small.dcm",
            "dicom/MR_small_RLE.dcm",
            "photos/plain.png",
        ],
    );
    let template = site.relay.dir().join("referral.json");
    std::fs::write(&template, referral("radiology").to_string()).expect("template");
    let out = site
        .agent(&site.server.url(""), &["--once", "--case-per", "study"])
        .arg("--referral-template")
        .arg(&template)
        .output()
        .expect("relay agent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The CT study, the MR study (two files), and the loose photo.
    let mut sizes = Vec::new();
    for case in site.cases().await {
        sizes.push(site.images(case["id"].as_str().expect("id")).await.len());
        assert_eq!(case["status"], "draft", "left for the clinic to submit");
    }
    sizes.sort();
    assert_eq!(sizes, [1, 1, 2]);
    assert_eq!(rels(watch, "done").len(), 4);
}
