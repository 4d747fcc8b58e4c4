//! The end-to-end harness: the real `relay` binary, a fresh data directory
//! per test, the server on port 0 over a real socket, and its log captured
//! so tests can assert what it does (and does not) write. An installation
//! may instead share a catalog and a blob store with others
//! ([`Relay::with_backends`]), as the machines of a many-process deployment do.

#![allow(dead_code)]

pub mod browser;
pub mod canary;
pub mod cluster;
pub mod dicom_peer;
pub mod proxy;
pub mod receivers;
pub mod routes;
pub mod stores;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

/// A Relay installation in a temporary directory.
pub struct Relay {
    dir: tempfile::TempDir,
    /// The catalog and blob store URLs every `relay` run here is given,
    /// when they are shared instead of the embedded default in `dir`.
    backends: Option<(String, String)>,
}

impl Default for Relay {
    fn default() -> Self {
        Self::new()
    }
}

impl Relay {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            backends: None,
        }
    }

    /// One machine of a many-process deployment: a data directory of its
    /// own (the upload spool), while every `relay` run here (server, worker
    /// and admin tool alike) uses the shared catalog `database` and blob
    /// store `blobs`. Make one per process that should not share local disk.
    pub fn with_backends(database: &str, blobs: &str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            backends: Some((database.to_owned(), blobs.to_owned())),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("relay-data")
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir().join("relay.db")
    }

    /// `relay` run in this installation's directory, with no `RELAY_*`
    /// variables inherited from the environment running the tests, and the
    /// shared stores, if any, as global flags. `AWS_*` variables are kept:
    /// they are how an S3 blob store finds its credentials.
    pub fn command(&self) -> Command {
        self.command_via(&[])
    }

    /// [`Relay::command`] run through `wrapper` (e.g. `fiu-run -x`), a
    /// program that ends by executing the `relay` command line it is given.
    pub fn command_via(&self, wrapper: &[&str]) -> Command {
        let relay = env!("CARGO_BIN_EXE_relay");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(relay);
                cmd
            }
            None => Command::new(relay),
        };
        cmd.current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("RELAY_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        if let Some((database, blobs)) = &self.backends {
            cmd.args(["--database", database, "--blobs", blobs]);
        }
        cmd
    }

    /// Runs `relay ARGS…` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("relay runs")
    }

    /// Runs `relay ARGS…`, requires success, returns stdout trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "relay {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Points `office`'s webhook at `url` (loopback allowed); returns the
    /// signing secret printed once.
    pub fn set_webhook(&self, office: &str, url: &str) -> relay_workers::webhook::WebhookSecret {
        self.ok(&[
            "--webhook-allow-loopback",
            "admin",
            "office",
            "webhook",
            "--office",
            office,
            "--url",
            url,
        ])
        .parse()
        .expect("the printed secret")
    }

    pub fn create_office(&self, name: &str) -> String {
        self.ok(&["admin", "office", "create", "--name", name])
    }

    pub fn token_for(&self, user: &str) -> String {
        self.ok(&["admin", "token", "create", "--user", user])
    }

    /// An office user of `office`; returns its id.
    pub fn create_office_user(&self, office: &str) -> String {
        self.ok(&[
            "admin",
            "user",
            "create",
            "--office",
            office,
            "--name",
            "Front Desk",
            "--role",
            "office",
        ])
    }

    /// A new office with one user; returns (office id, user id, token).
    pub fn office_with_user(&self, name: &str) -> (String, String, String) {
        let office = self.create_office(name);
        let user = self.create_office_user(&office);
        let token = self.token_for(&user);
        (office, user, token)
    }

    pub fn specialist_token(&self, specialty: &str) -> String {
        let user = self.ok(&[
            "admin",
            "user",
            "create",
            "--name",
            "Dr Reader",
            "--role",
            "specialist",
            "--specialty",
            specialty,
        ]);
        self.token_for(&user)
    }

    pub fn admin_token(&self) -> String {
        let user = self.ok(&[
            "admin",
            "user",
            "create",
            "--name",
            "Root Admin",
            "--role",
            "admin",
        ]);
        self.token_for(&user)
    }

    /// Starts `relay serve` on an ephemeral port and waits until it listens.
    pub fn start(&self) -> Server {
        self.start_with(&["serve", "--listen", "127.0.0.1:0"], &[])
    }

    /// Starts `relay ARGS…` with extra environment, waiting for its
    /// "listening on" line.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        let (process, addr) = self.spawn(args, env, "listening on http://");
        relay_workers::tls::install_crypto_provider();
        Server {
            process,
            base: format!("http://{}", addr.trim()),
            http: reqwest::Client::new(),
        }
    }

    /// Starts `relay worker ARGS…` and waits until it takes jobs.
    pub fn start_worker(&self, args: &[&str]) -> Worker {
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        let (process, _) = self.spawn(&all, &[], "worker started");
        Worker { process }
    }

    /// Spawns `relay ARGS…` with its log captured, and waits for a line
    /// containing `ready`; returns the process and the rest of that line.
    /// [`Relay::start_with`] through `wrapper` ([`Relay::command_via`]);
    /// the process started is `relay` itself when the wrapper executes it.
    pub fn start_via(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Server {
        let (process, addr) = self.spawn_via(wrapper, args, env, "listening on http://");
        relay_workers::tls::install_crypto_provider();
        Server {
            process,
            base: format!("http://{}", addr.trim()),
            http: reqwest::Client::new(),
        }
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)], ready: &str) -> (Process, String) {
        self.spawn_via(&[], args, env, ready)
    }

    fn spawn_via(
        &self,
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        ready: &str,
    ) -> (Process, String) {
        let mut cmd = self.command_via(wrapper);
        cmd.args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", log_level())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("relay starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        let ready = ready.to_owned();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(ready.as_str()).nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.to_owned());
                }
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let process = Process {
            what: format!("relay {}", args.join(" ")),
            child,
            log,
            reader: Some(reader),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(rest) => (process, rest),
            Err(_) => panic!("relay {args:?} did not start; log:\n{}", process.log()),
        }
    }

    /// Opens the catalog database directly, as an attacker with file access
    /// (or a forensic check) would.
    pub async fn database(&self) -> sqlx::SqliteConnection {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.database_path().display());
        sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open database")
    }
}

/// A `relay` process a test started, its stderr captured line by line.
/// Dropping it kills the process.
struct Process {
    /// The command line, for messages.
    what: String,
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// SIGKILL, as a power cut or the OOM killer would: no shutdown code runs.
    fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, as an orchestrator would; requires a clean exit within 10 s.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "relay exited with {status}; log:\n{}",
                    self.log()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("relay did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Process {
    /// Kills the process, then checks its whole log for PHI canaries
    /// (unless the test already failed for another reason).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if !std::thread::panicking() {
            canary::assert_clean_log(&self.what, &self.log());
        }
    }
}

/// The log level of every `relay` the tests start: the most verbose, so
/// the PHI canary check sees everything Relay could ever write
/// (`RELAY_TEST_LOG` overrides it, e.g. `info` to read a log by eye).
fn log_level() -> String {
    std::env::var("RELAY_TEST_LOG").unwrap_or_else(|_| "trace".to_owned())
}

/// A running `relay worker`.
pub struct Worker {
    process: Process,
}

impl Worker {
    /// Everything the worker logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Kills the worker with SIGKILL: its jobs stay leased until the lease
    /// runs out.
    pub fn kill_hard(mut self) {
        self.process.kill_hard();
    }

    /// Stops the worker with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

/// A running `relay serve`.
pub struct Server {
    process: Process,
    pub base: String,
    pub http: reqwest::Client,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The server's process id, for `/proc/<pid>/status` (of the wrapper's
    /// `relay` too, once it executed it).
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(self.http.get(self.url(path)), token).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(self.url(path)).json(&body), token)
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(self.http.patch(self.url(path)).json(&body), token)
            .await
    }

    /// Sends a request with a bearer token (none when `token` is empty) and
    /// returns the status and the JSON body (`null` when the body is empty, a
    /// JSON string when it is not JSON, as for `/metrics`).
    pub async fn send(&self, request: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
        let request = if token.is_empty() {
            request
        } else {
            request.bearer_auth(token)
        };
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, answer_body(status, response).await)
    }

    /// Creates a draft case and returns its id.
    pub async fn create_case(&self, token: &str, specialty: &str) -> String {
        let (status, body) = self.post("/api/v1/cases", token, referral(specialty)).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("case id").to_owned()
    }

    /// Uploads a fixture into a case; requires 201 and returns the receipt.
    pub async fn upload(
        &self,
        token: &str,
        case: &str,
        fixture_path: &str,
        content_type: &str,
    ) -> Value {
        let name = fixture_path.rsplit('/').next().unwrap_or(fixture_path);
        let name = format!("{} {name}", canary::FILENAME);
        self.upload_bytes(token, case, &name, fixture(fixture_path), content_type)
            .await
    }

    /// Uploads `bytes` named `name` into a case; requires 201 and returns
    /// the receipt.
    pub async fn upload_bytes(
        &self,
        token: &str,
        case: &str,
        name: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Value {
        let request = self
            .http
            .post(self.url(&format!("/api/v1/cases/{case}/images?filename={name}")))
            .header("content-type", content_type)
            .body(bytes);
        let (status, body) = self.send(request, token).await;
        assert_eq!(status, 201, "upload of {name}: {body}");
        body
    }

    /// The stored bytes of an image: status and body.
    pub async fn original(&self, token: &str, image: &str) -> (u16, Vec<u8>) {
        let response = self
            .http
            .get(self.url(&format!("/api/v1/images/{image}/original")))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (
            status,
            response
                .bytes()
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        )
    }

    /// Polls the image until derive has left `pending`; returns it.
    pub async fn derived(&self, token: &str, image: &str) -> Value {
        for _ in 0..300 {
            let (status, body) = self.get(&format!("/api/v1/images/{image}"), token).await;
            assert_eq!(status, 200);
            if body["derive_state"] != "pending" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("derive did not finish within 15 s");
    }

    /// A dermatology case with a photo, submitted by `office`, claimed,
    /// reported and signed by `specialist`; returns its id.
    pub async fn signed_case(&self, office: &str, specialist: &str) -> String {
        let case = self.create_case(office, "dermatology").await;
        self.upload(office, &case, "photos/camera-plain.jpg", "image/jpeg")
            .await;
        for (method, path, token) in [
            (reqwest::Method::POST, "submit", office),
            (reqwest::Method::POST, "claim", specialist),
            (reqwest::Method::PUT, "report", specialist),
            (reqwest::Method::POST, "report/sign", specialist),
        ] {
            let request = self
                .http
                .request(method, self.url(&format!("/api/v1/cases/{case}/{path}")))
                .json(&json!({"impression": "Benign naevus."}));
            let (status, reply) = self.send(request, token).await;
            assert_eq!(status, 200, "{path}: {reply}");
        }
        case
    }

    /// Stops the server, then hands its complete log to `check`.
    pub fn stop_and_then(self, check: impl FnOnce(&str)) {
        let log = self.process.log.clone();
        self.stop();
        check(&log.lock().expect("log lock"));
    }

    /// Kills the server with SIGKILL, as a power cut or the OOM killer
    /// would: no shutdown code runs.
    pub fn kill_hard(mut self) {
        self.process.kill_hard();
    }

    /// Stops the server as an orchestrator would (SIGTERM) and waits.
    pub fn stop(mut self) {
        self.process.stop();
    }
}

pub use canary::PATIENT_NAME;

/// A complete, valid referral.
pub fn referral(specialty: &str) -> Value {
    json!({
        "patient": {"name": PATIENT_NAME, "birth_date": canary::BIRTH_DATE, "sex": "male", "mrn": canary::MRN},
        "specialty": specialty,
        "priority": "urgent",
        "question": "Pigmented lesion, changing over 3 months. Melanoma?",
        "history": format!("Fair skin, history of sunburns. {}.", canary::HISTORY),
        "clinical": {
            "body_site": "left forearm, dorsal",
            "duration": "3 months",
            "medications": "none",
            "allergies": "penicillin"
        }
    })
}

/// The bytes of a file under `fixtures/`.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

/// The good DICOM fixtures, as paths under `fixtures/`.
pub fn dicom_fixtures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dcm"))
        .map(|n| format!("dicom/{n}"))
        .collect();
    files.sort();
    files
}

/// An answer's body, checked for canaries: JSON when it parses, else the
/// text, `Null` when empty.
pub async fn answer_body(status: u16, response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body read");
    canary::assert_clean_error(status, &text);
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

/// Every file below `dir` (recursively), sorted; empty when `dir` is absent.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Counts the rows of a table.
pub async fn count(db: &mut sqlx::SqliteConnection, table: &str) -> i64 {
    use sqlx::AssertSqlSafe;
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(db)
        .await
        .expect("count")
}

/// `count` real DICOM files in `dir`: the fixtures in turn, each copy with a
/// SOP Instance UID of its own, so each is a distinct instance (and blob)
/// with the fixture's real pixel data.
pub fn dicom_instances(dir: &Path, count: usize) -> Vec<PathBuf> {
    let fixtures = dicom_fixtures();
    (0..count)
        .map(|i| {
            let source = &fixtures[i % fixtures.len()];
            let full = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(source);
            let mut object = dicom_object::open_file(&full).expect("a fixture DICOM opens");
            let uid = format!("2.25.{}", 1_000_000_007_u64 * (i as u64 + 1));
            set_instance_uid(&mut object, &uid);
            let path = dir.join(format!("instance-{i}.dcm"));
            object.write_to_file(&path).expect("write an instance");
            path
        })
        .collect()
}

/// A real CT slice repeated as the frames of one multi-frame instance of
/// about `megabytes` MB: a large, valid DICOM file with real pixel data.
pub fn large_dicom(path: &Path, megabytes: usize) {
    grown_ct(megabytes)
        .write_to_file(path)
        .expect("write the instance");
}

/// `large_dicom` with a SOP Instance UID of its own, so instances of
/// several sizes are distinct instances.
pub fn large_dicom_instance(path: &Path, megabytes: usize, sop_instance_uid: &str) {
    let mut object = grown_ct(megabytes);
    set_instance_uid(&mut object, sop_instance_uid);
    object.write_to_file(path).expect("write the instance");
}

/// Gives `object` a SOP Instance UID of its own, in the data set and the
/// file meta group alike, so a copy of a fixture is a distinct instance.
pub fn set_instance_uid(object: &mut dicom_object::DefaultDicomObject, uid: &str) {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    object.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(uid),
    ));
    let meta = object.meta_mut();
    meta.media_storage_sop_instance_uid = uid.to_owned();
    meta.update_information_group_length();
}

/// The real CT fixture with its slice repeated as frames to about
/// `megabytes` MB.
fn grown_ct(megabytes: usize) -> dicom_object::DefaultDicomObject {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom/CT_small.dcm");
    grown(
        dicom_object::open_file(fixture).expect("fixture"),
        megabytes,
    )
}

/// A single-frame instance with its frame repeated as the frames of one
/// multi-frame instance of about `megabytes` MB: large, valid, real pixels.
pub fn grown(
    mut object: dicom_object::DefaultDicomObject,
    megabytes: usize,
) -> dicom_object::DefaultDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let frame = object
        .element(tags::PIXEL_DATA)
        .expect("pixel data")
        .to_bytes()
        .expect("native pixel data")
        .into_owned();
    let frames = (megabytes << 20) / frame.len();
    object.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(frames.to_string()),
    ));
    object.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(frame.repeat(frames)),
    ));
    object
}
