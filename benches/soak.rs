//! Soak: the real `relay serve` under steady mixed load for `SOAK_SECONDS`
//! (default 600), killed with SIGKILL and started again every
//! `SOAK_KILL_EVERY` seconds (default 60; a quarter of the run when the
//! run is shorter than four of those), over one data directory.
//!
//! `SOAK_CLIENTS` clients (default 6) loop without pause over a mix of the
//! office's calls: raw uploads (`POST /api/v1/cases/{id}/images`, real
//! DICOM and JPEG fixtures, each made distinct: a DICOM with a SOP Instance
//! UID of its own, a JPEG with a comment segment of its own, now and then a
//! CT slice grown to 2 MB), resumable uploads (tus, a DICOM in three chunks,
//! now and then one of 1 MB, resumed from `HEAD` after a kill), reads of
//! stored bytes and of
//! receipts, case reads and case lists, and a new case for every 40 images.
//! Each call carries an `x-request-id` of its own, which the audit trail
//! records.
//!
//! What it measures and asserts:
//!
//! - **Memory and descriptors.** `VmRSS` and the entries of `/proc/PID/fd`
//!   every 5 s, and at the same point of every life (10 s after the
//!   restart). Flat means: the median of the samples in the run's last
//!   quarter is at most 25 % above the median of its first quarter, for
//!   the interval samples and for the same-point ones alike.
//! - **Disk.** After a clean stop, the files under `blobs/sha256/` against
//!   the catalog's `blobs` rows: a kill between an upload's durable link
//!   and its commit may leave an orphan blob by design (`relay reprocess
//!   sweep` removes them), so orphans are counted and bounded by the kills
//!   times the clients; no spool file may remain, every row's file must be
//!   there with the row's size, and after a sweep (grace 0) the bytes on
//!   disk must equal the sum of the rows' sizes exactly.
//! - **Audit.** Every event of an office user must carry a request id of a
//!   call the clients made. A call answered 2xx must have exactly its
//!   events (one per upload, read and case read; `upload.start`, one
//!   `upload.append` per chunk and `image.create` with the last; one
//!   `case.list` per listed case), a call answered otherwise none. A call
//!   the kill cut off (no answer) may have committed or not: it must have
//!   all its events or none. So the audit rows equal the events of the
//!   calls answered 2xx plus those of the cut calls that committed,
//!   counted apart.
//! - **Nothing acknowledged is lost.** Every image a client was given a
//!   receipt for is in the catalog with the digest it was given, reads
//!   of stored bytes are checked against it, and `relay admin audit verify`
//!   passes at the end.
//!
//! Run with `.ci/soak`, which builds the release `relay` and passes it as
//! `RELAY_SOAK_RELAY`; without it, this build's `relay` is used. Prints a
//! summary and writes `target/bench-soak.json`; exits non-zero when an
//! assertion fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The same point of every life at which RSS and descriptors are compared.
const SAME_POINT: Duration = Duration::from_secs(10);
/// How much the last quarter's median may exceed the first quarter's.
const FLAT: f64 = 1.25;
/// A new case after this many images in the current one.
const IMAGES_PER_CASE: usize = 40;
const TUS_CHUNKS: usize = 3;
/// The kind of a [`Call`] that stands for a client's own failure (bytes
/// served that are not the ones stored, an answer without its headers).
const CLIENT_ERROR: &str = "client error";

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    relay_workers::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(soak(settings))
}

#[derive(Debug, Clone)]
struct Settings {
    seconds: u64,
    kill_every: u64,
    clients: usize,
    relay: PathBuf,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let number = |name: &str, default: u64| -> Result<u64> {
            match std::env::var(name) {
                Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v}: {e}"))?),
                Err(_) => Ok(default),
            }
        };
        let seconds = number("SOAK_SECONDS", 600)?;
        let kill_every = number("SOAK_KILL_EVERY", 60.min((seconds / 4).max(1)))?;
        let clients = number("SOAK_CLIENTS", 6)? as usize;
        let relay = std::env::var_os("RELAY_SOAK_RELAY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relay")));
        Ok(Self {
            seconds,
            kill_every,
            clients,
            relay,
        })
    }
}

async fn soak(settings: Settings) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let relay = Relay {
        binary: settings.relay.clone(),
        data: data.clone(),
        logs: dir.path().to_owned(),
    };
    let office = relay.admin(&["office", "create", "--name", "Soak Practice"])?;
    let user = relay.admin(&[
        "user", "create", "--office", &office, "--name", "Soak", "--role", "office",
    ])?;
    let token = relay.admin(&["token", "create", "--user", &user])?;
    println!(
        "soak: {} s, SIGKILL every {} s, {} clients, relay {}",
        settings.seconds,
        settings.kill_every,
        settings.clients,
        settings.relay.display()
    );

    let mut server = relay.start(0)?;
    let shared = Arc::new(Shared {
        base: RwLock::new(server.base.clone()),
        token,
        images: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        inputs: Inputs::load()?,
    });
    let clients: Vec<_> = (0..settings.clients)
        .map(|n| tokio::spawn(client(shared.clone(), n)))
        .collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(settings.seconds);
    let mut samples = Vec::new();
    let mut life = 0;
    let mut kills = 0;
    loop {
        let born = Instant::now();
        let end = (born + Duration::from_secs(settings.kill_every)).min(deadline);
        let mut next = born + SAMPLE_EVERY;
        while next < end {
            tokio::time::sleep_until(next.into()).await;
            if let Some((rss_kb, fds)) = proc_sample(server.pid()) {
                samples.push(Sample {
                    at: next.duration_since(started).as_secs_f64(),
                    life,
                    in_life: next.duration_since(born).as_secs_f64(),
                    rss_kb,
                    fds,
                });
            }
            next += SAMPLE_EVERY;
        }
        tokio::time::sleep_until(end.into()).await;
        if end >= deadline {
            break;
        }
        server.kill();
        kills += 1;
        life += 1;
        server = relay.start(life)?;
        *shared.base.write().expect("base lock") = server.base.clone();
        println!(
            "soak: {:>4.0} s: killed, life {life} started",
            started.elapsed().as_secs_f64()
        );
    }
    shared.stop.store(true, Ordering::SeqCst);
    let mut calls = Vec::new();
    for handle in clients {
        calls.extend(handle.await?);
    }
    server.stop()?;
    let elapsed = started.elapsed().as_secs_f64();

    let mut failures = Vec::new();
    check_answers(&calls, &mut failures);
    let flat = flatness(&samples, settings.seconds as f64, &mut failures);
    let audit = check_audit(&data, &calls, &mut failures).await?;
    let acknowledged = check_images(&data, &shared, &mut failures).await?;
    let disk = check_disk(&relay, kills * settings.clients, &mut failures).await?;
    match relay.admin(&["audit", "verify"]) {
        Ok(_) => {}
        Err(e) => failures.push(format!("audit verify: {e}")),
    }
    let errors = relay.logged_errors()?;

    let mut by_kind: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for call in &calls {
        *by_kind
            .entry(call.kind)
            .or_default()
            .entry(call.outcome.name())
            .or_default() += 1;
    }
    let report = json!({
        "seconds": elapsed,
        "kills": kills,
        "clients": settings.clients,
        "calls": calls.len(),
        "calls_by_kind": by_kind,
        "flat": flat,
        "audit": audit,
        "acknowledged_images": acknowledged,
        "disk": disk,
        "server_log_errors": errors,
        "samples": samples.iter().map(|s| json!({
            "at_s": s.at, "life": s.life, "in_life_s": s.in_life,
            "rss_kb": s.rss_kb, "fds": s.fds,
        })).collect::<Vec<_>>(),
        "failures": failures,
    });
    println!("soak: {elapsed:.0} s, {kills} kills, {} calls", calls.len());
    for (kind, outcomes) in &by_kind {
        println!("  {kind}: {outcomes:?}");
    }
    println!("  flat: {flat}");
    println!("  audit: {audit}");
    println!("  acknowledged images: {acknowledged}");
    println!("  disk: {disk}");
    println!("  server log lines at ERROR: {errors}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-soak.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", out.display());
    if failures.is_empty() {
        println!("soak: every check passed");
        Ok(())
    } else {
        for failure in &failures {
            println!("FAILED: {failure}");
        }
        Err(format!("{} soak checks failed", failures.len()).into())
    }
}

/// The installation under test: its binary, data directory and logs.
struct Relay {
    binary: PathBuf,
    data: PathBuf,
    logs: PathBuf,
}

impl Relay {
    /// `relay` with no `RELAY_*` settings from the environment running the soak.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RELAY_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.arg("--data-dir").arg(&self.data);
        command
    }

    /// Runs `relay admin ARGS…`; returns what it printed, trimmed.
    fn admin(&self, args: &[&str]) -> Result<String> {
        let out = self.command().arg("admin").args(args).output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Starts `relay serve` on a free port, its log in `relay-<life>.log`,
    /// and waits until it listens.
    fn start(&self, life: usize) -> Result<Server> {
        let log = self.logs.join(format!("relay-{life}.log"));
        let child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut server = Server {
            child,
            base: String::new(),
        };
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_secs(60) {
            let text = std::fs::read_to_string(&log)?;
            if let Some(rest) = text.split("listening on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                server.base = format!("http://{addr}");
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("relay serve exited ({status}):\n{text}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("relay serve did not listen within 60 s".into())
    }

    /// Log lines at ERROR over every life.
    fn logged_errors(&self) -> Result<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir(&self.logs)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&path)?;
                count += text.lines().filter(|l| l.contains(" ERROR ")).count();
            }
        }
        Ok(count)
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stops it, and wait.
    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("relay serve stopped with {status}").into());
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct Sample {
    at: f64,
    life: usize,
    in_life: f64,
    rss_kb: u64,
    fds: u64,
}

/// `VmRSS` in kB and the number of open descriptors of process `pid`.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss_kb, fds))
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Compares the last quarter's medians with the first quarter's, for the
/// interval samples (by time) and the same-point samples (by life).
fn flatness(samples: &[Sample], seconds: f64, failures: &mut Vec<String>) -> Value {
    let quarter = seconds / 4.0;
    let same_point: Vec<&Sample> = samples
        .iter()
        .filter(|s| (s.in_life - SAME_POINT.as_secs_f64()).abs() < 0.5)
        .collect();
    let lives = same_point.len();
    let per_quarter = lives.div_ceil(4).max(1);
    let mut out = serde_json::Map::new();
    for (what, first, last) in [
        (
            "interval",
            samples
                .iter()
                .filter(|s| s.at <= quarter)
                .collect::<Vec<_>>(),
            samples
                .iter()
                .filter(|s| s.at > seconds - quarter)
                .collect::<Vec<_>>(),
        ),
        (
            "same point",
            same_point.iter().take(per_quarter).copied().collect(),
            same_point
                .iter()
                .skip(lives.saturating_sub(per_quarter))
                .copied()
                .collect(),
        ),
    ] {
        for (metric, get) in [
            (
                "rss_mb",
                (|s: &Sample| s.rss_kb as f64 / 1024.0) as fn(&Sample) -> f64,
            ),
            ("fds", |s: &Sample| s.fds as f64),
        ] {
            let a = median(first.iter().map(|s| get(s)).collect());
            let b = median(last.iter().map(|s| get(s)).collect());
            let ratio = b / a;
            if ratio.is_nan() || ratio > FLAT {
                failures.push(format!(
                    "{what} {metric}: last quarter's median {b:.1} vs first quarter's {a:.1} ({ratio:.2}×, over {FLAT}×)"
                ));
            }
            out.insert(
                format!("{what} {metric}"),
                json!({"first_quarter_median": a, "last_quarter_median": b, "ratio": ratio,
                       "min": samples.iter().map(get).fold(f64::INFINITY, f64::min),
                       "max": samples.iter().map(get).fold(0.0, f64::max)}),
            );
        }
    }
    Value::Object(out)
}

/// What the clients share: where the server is, the token, the images
/// acknowledged so far (id and stored sha256), the inputs, and when to stop.
struct Shared {
    base: RwLock<String>,
    token: String,
    images: Mutex<Vec<(String, String)>>,
    stop: AtomicBool,
    http: reqwest::Client,
    inputs: Inputs,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.read().expect("base lock"))
    }

    fn some_image(&self, pick: u64) -> Option<(String, String)> {
        let images = self.images.lock().expect("images lock");
        (!images.is_empty()).then(|| images[pick as usize % images.len()].clone())
    }
}

/// The fixtures the uploads are made from.
struct Inputs {
    dicom: Vec<dicom_object::DefaultDicomObject>,
    /// A real CT slice, grown into multi-frame instances.
    ct: dicom_object::DefaultDicomObject,
    jpegs: Vec<Vec<u8>>,
}

impl Inputs {
    fn load() -> Result<Self> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut dicom = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(fixtures.join("dicom"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        names.sort();
        for name in names {
            dicom.push(dicom_object::open_file(&name)?);
        }
        let ct = dicom_object::open_file(fixtures.join("dicom/CT_small.dcm"))?;
        let mut jpegs = Vec::new();
        for name in ["camera-plain.jpg", "camera-portrait.jpg", "camera-gps.jpg"] {
            jpegs.push(std::fs::read(fixtures.join("photos").join(name))?);
        }
        Ok(Self { dicom, ct, jpegs })
    }

    /// A distinct real image for upload `n` of `client`: with `megabytes`,
    /// a CT slice grown to that size; else a DICOM fixture with a SOP
    /// Instance UID of its own, or every 4th a JPEG fixture with a comment
    /// of its own.
    fn image(&self, client: usize, n: u64, megabytes: usize) -> Result<(Vec<u8>, &'static str)> {
        let uid = format!("2.25.1{client:03}{n:012}");
        if megabytes == 0 && n % 4 == 3 {
            let jpeg = &self.jpegs[(n / 4) as usize % self.jpegs.len()];
            // The comment goes after SOI and the APPn segments (JFIF, EXIF).
            let mut at = 2;
            while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && (0xE0..=0xEF).contains(&jpeg[at + 1])
            {
                at += 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
            }
            let comment = format!("soak {uid}");
            let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
            out.extend_from_slice(&jpeg[..at]);
            out.extend_from_slice(&[0xFF, 0xFE]);
            out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(comment.as_bytes());
            out.extend_from_slice(&jpeg[at..]);
            return Ok((out, "image/jpeg"));
        }
        let mut object = if megabytes > 0 {
            let mut object = self.ct.clone();
            let frame = object.element(tags::PIXEL_DATA)?.to_bytes()?.into_owned();
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
        } else {
            self.dicom[n as usize % self.dicom.len()].clone()
        };
        object.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid.as_str()),
        ));
        let meta = object.meta_mut();
        meta.media_storage_sop_instance_uid = uid;
        meta.update_information_group_length();
        let mut out = Vec::new();
        object.write_all(&mut out)?;
        Ok((out, "application/dicom"))
    }
}

/// One call a client made, and how it ended.
#[derive(Debug)]
struct Call {
    request_id: String,
    kind: &'static str,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered 2xx: exactly this many audit events are due.
    Answered2xx { events: usize },
    /// Answered with another status: no event is due.
    Refused { status: u16 },
    /// No connection: the server was down.
    Unreached,
    /// Sent, but no answer came (the server was killed): all or nothing.
    Cut { events: usize },
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Answered2xx { .. } => "2xx",
            Outcome::Refused { .. } => "refused",
            Outcome::Unreached => "unreached",
            Outcome::Cut { .. } => "cut",
        }
    }
}

/// A client's state: its number, its calls, its case and how full it is.
struct Client {
    shared: Arc<Shared>,
    n: usize,
    seq: u64,
    rng: u64,
    case: Option<String>,
    in_case: usize,
    calls: Vec<Call>,
}

impl Client {
    fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_id(&mut self) -> String {
        self.seq += 1;
        format!("soak-{}-{}", self.n, self.seq)
    }

    /// Sends one call, recording it; returns the response when answered 2xx.
    /// `events` says how many audit events a 2xx answer is due (`None`: as
    /// many as the entries of the JSON answer).
    async fn call(
        &mut self,
        kind: &'static str,
        request: reqwest::RequestBuilder,
        events: Option<usize>,
    ) -> Option<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let request_id = self.next_id();
        let sent = request
            .bearer_auth(&self.shared.token)
            .header("x-request-id", &request_id)
            .send()
            .await;
        let (outcome, answer) = match sent {
            Err(e) if e.is_connect() => (Outcome::Unreached, None),
            Err(_) => (
                Outcome::Cut {
                    events: events.unwrap_or(usize::MAX),
                },
                None,
            ),
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Err(_) => (
                        Outcome::Cut {
                            events: events.unwrap_or(usize::MAX),
                        },
                        None,
                    ),
                    Ok(body) if status.is_success() => {
                        let events = events.unwrap_or_else(|| entries(&body));
                        (
                            Outcome::Answered2xx { events },
                            Some((status, headers, body.to_vec())),
                        )
                    }
                    Ok(_) => (
                        Outcome::Refused {
                            status: status.as_u16(),
                        },
                        None,
                    ),
                }
            }
        };
        self.calls.push(Call {
            request_id,
            kind,
            outcome,
        });
        if answer.is_none() && !matches!(outcome, Outcome::Refused { .. }) {
            // The server is down or restarting.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answer
    }

    async fn case(&mut self) -> Option<String> {
        if self.case.is_none() || self.in_case >= IMAGES_PER_CASE {
            let body = json!({
                "patient": {"name": "Soak Test", "birth_date": "1970-01-02", "sex": "female", "mrn": format!("SOAK-{}", self.n)},
                "specialty": "radiology", "priority": "routine",
                "question": "Soak: images, reads and lists under restarts."
            });
            let url = self.shared.url("/api/v1/cases");
            let request = self.shared.http.post(url).json(&body);
            let (_, _, body) = self.call("case.create", request, Some(1)).await?;
            let case: Value = serde_json::from_slice(&body).ok()?;
            self.case = Some(case["id"].as_str()?.to_owned());
            self.in_case = 0;
        }
        self.case.clone()
    }

    fn acknowledged(&mut self, image: &str, sha256: &str) {
        self.in_case += 1;
        self.shared
            .images
            .lock()
            .expect("images lock")
            .push((image.to_owned(), sha256.to_owned()));
    }

    async fn upload(&mut self) -> Result<()> {
        let Some(case) = self.case().await else {
            return Ok(());
        };
        let grown = if self.seq.is_multiple_of(50) { 2 } else { 0 };
        let (bytes, media_type) = self.shared.inputs.image(self.n, self.seq, grown)?;
        let url = self
            .shared
            .url(&format!("/api/v1/cases/{case}/images?filename=soak"));
        let request = self
            .shared
            .http
            .post(url)
            .header("content-type", media_type)
            .body(bytes);
        if let Some((_, _, body)) = self.call("image.upload", request, Some(1)).await {
            let receipt: Value = serde_json::from_slice(&body)?;
            let id = receipt["id"].as_str().ok_or("receipt without id")?;
            let sha = receipt["stored_sha256"]
                .as_str()
                .ok_or("no stored_sha256")?;
            self.acknowledged(id, sha);
        }
        Ok(())
    }

    /// A resumable upload in chunks; after a cut or a refused connection it
    /// asks `HEAD` where the upload stands and goes on from there.
    async fn tus(&mut self) -> Result<()> {
        let Some(case) = self.case().await else {
            return Ok(());
        };
        let grown = if self.seq.is_multiple_of(10) { 1 } else { 0 };
        let (bytes, media_type) = self.shared.inputs.image(self.n, self.seq, grown)?;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let metadata = format!(
            "case {},filename {},filetype {}",
            b64(&case),
            b64(if media_type == "image/jpeg" {
                "soak.jpg"
            } else {
                "soak.dcm"
            }),
            b64(media_type)
        );
        let request = self
            .shared
            .http
            .post(self.shared.url("/api/v1/uploads"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", bytes.len().to_string())
            .header("upload-metadata", metadata);
        let Some((_, headers, _)) = self.call("upload.start", request, Some(1)).await else {
            return Ok(());
        };
        let location = header(&headers, "location").ok_or("no Location")?;
        let chunk = bytes.len().div_ceil(TUS_CHUNKS);
        let mut offset = 0;
        for _attempt in 0..200 {
            if self.shared.stop.load(Ordering::SeqCst) && offset == 0 {
                return Ok(());
            }
            let end = (offset + chunk).min(bytes.len());
            let last = end == bytes.len();
            let request = self
                .shared
                .http
                .patch(self.shared.url(&location))
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(bytes[offset..end].to_vec());
            let events = if last { 2 } else { 1 };
            match self.call("upload.append", request, Some(events)).await {
                Some((_, headers, _)) if last => {
                    let image = header(&headers, "location").ok_or("no image Location")?;
                    let digest = header(&headers, "content-digest").ok_or("no digest")?;
                    let id = image.rsplit('/').next().unwrap_or_default().to_owned();
                    self.acknowledged(&id, &digest_hex(&digest)?);
                    return Ok(());
                }
                Some(_) => offset = end,
                None => {
                    if matches!(
                        self.calls.last().map(|c| c.outcome),
                        Some(Outcome::Refused { .. })
                    ) {
                        return Ok(()); // counted; the check reports it
                    }
                    // Where does it stand? (HEAD leaves no audit event.)
                    let request = self
                        .shared
                        .http
                        .head(self.shared.url(&location))
                        .header("tus-resumable", "1.0.0");
                    if let Some((_, headers, _)) = self.call("upload.head", request, Some(0)).await
                    {
                        if let Some(image) = header(&headers, "relay-image") {
                            // The last chunk had been taken before the kill.
                            let id = image.rsplit('/').next().unwrap_or_default().to_owned();
                            let sha = hex::encode(Sha256::digest(&bytes));
                            self.acknowledged(&id, &sha);
                            return Ok(());
                        }
                        offset = header(&headers, "upload-offset")
                            .and_then(|o| o.parse().ok())
                            .ok_or("HEAD without Upload-Offset")?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<()> {
        let pick = self.random();
        match pick % 100 {
            0..30 => self.upload().await,
            30..38 => self.tus().await,
            38..63 => {
                if let Some((image, sha)) = self.shared.some_image(pick >> 8) {
                    let url = self.shared.url(&format!("/api/v1/images/{image}/original"));
                    let request = self.shared.http.get(url);
                    if let Some((_, _, body)) = self.call("image.original", request, Some(1)).await
                        && hex::encode(Sha256::digest(&body)) != sha
                    {
                        return Err(format!("image {image}: the bytes served are not {sha}").into());
                    }
                }
                Ok(())
            }
            63..75 => {
                if let Some((image, _)) = self.shared.some_image(pick >> 8) {
                    let url = self.shared.url(&format!("/api/v1/images/{image}"));
                    let request = self.shared.http.get(url);
                    self.call("image.read", request, Some(1)).await;
                }
                Ok(())
            }
            75..90 => {
                if let Some(case) = self.case().await {
                    let url = self.shared.url(&format!("/api/v1/cases/{case}"));
                    let request = self.shared.http.get(url);
                    self.call("case.read", request, Some(1)).await;
                }
                Ok(())
            }
            _ => {
                let url = self.shared.url("/api/v1/cases?per_page=10");
                let request = self.shared.http.get(url);
                self.call("case.list", request, None).await;
                Ok(())
            }
        }
    }
}

async fn client(shared: Arc<Shared>, n: usize) -> Vec<Call> {
    let mut client = Client {
        shared,
        n,
        seq: 0,
        rng: 0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1).wrapping_mul(0x1000_0000_01B3),
        case: None,
        in_case: 0,
        calls: Vec::new(),
    };
    while !client.shared.stop.load(Ordering::SeqCst) {
        if let Err(e) = client.step().await {
            eprintln!("soak: client {n}: {e}");
            client.calls.push(Call {
                request_id: String::new(),
                kind: CLIENT_ERROR,
                outcome: Outcome::Refused { status: 0 },
            });
        }
    }
    client.calls
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

/// `sha-256=:<base64>:` as hex.
fn digest_hex(header: &str) -> Result<String> {
    let b64 = header
        .strip_prefix("sha-256=:")
        .and_then(|s| s.strip_suffix(':'))
        .ok_or("not a sha-256 Content-Digest")?;
    Ok(hex::encode(
        base64::engine::general_purpose::STANDARD.decode(b64)?,
    ))
}

/// The entries of a list answer: `items` or the array itself.
fn entries(body: &[u8]) -> usize {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    value["items"]
        .as_array()
        .or_else(|| value.as_array())
        .map_or(0, Vec::len)
}

async fn database(data: &Path) -> Result<sqlx::SqliteConnection> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("relay.db").display());
    Ok(sqlx::SqliteConnection::connect(&url).await?)
}

/// No call may fail on the client's side or be answered 5xx, and only a
/// resumable upload whose creation a kill cut off may be answered 4xx (its
/// chunks then find no upload).
fn check_answers(calls: &[Call], failures: &mut Vec<String>) {
    let mut refused: HashMap<(&str, u16), usize> = HashMap::new();
    for call in calls {
        if let Outcome::Refused { status } = call.outcome {
            *refused.entry((call.kind, status)).or_default() += 1;
        }
    }
    for ((kind, status), count) in refused {
        let tus = kind.starts_with("upload.") && status == 404;
        if !tus {
            failures.push(format!("{count} × {kind} answered {status}"));
        }
    }
}

/// Reconciles the audit trail with the calls, by request id.
async fn check_audit(data: &Path, calls: &[Call], failures: &mut Vec<String>) -> Result<Value> {
    let mut db = database(data).await?;
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT request_id, COUNT(*) FROM audit_events \
         WHERE actor_role NOT IN ('operator', 'system') GROUP BY request_id",
    )
    .fetch_all(&mut db)
    .await?;
    let mut events: HashMap<String, usize> = HashMap::new();
    let mut rows_total = 0;
    for (request_id, count) in rows {
        rows_total += count as usize;
        match request_id {
            Some(id) if id.starts_with("soak-") => {
                events.insert(id, count as usize);
            }
            other => failures.push(format!(
                "{count} audit events of a user with request id {other:?}, no call of the clients"
            )),
        }
    }
    let mut due_2xx = 0;
    let (mut cut, mut cut_committed, mut cut_events) = (0, 0, 0);
    let mut wrong = Vec::new();
    let mut known = 0;
    for call in calls.iter().filter(|c| !c.request_id.is_empty()) {
        let found = events.get(&call.request_id).copied().unwrap_or(0);
        known += found;
        match call.outcome {
            Outcome::Answered2xx { events } => {
                due_2xx += events;
                if found != events {
                    wrong.push(format!(
                        "{} {} answered 2xx: {found} events, {events} due",
                        call.kind, call.request_id
                    ));
                }
            }
            Outcome::Refused { .. } | Outcome::Unreached => {
                if found != 0 {
                    wrong.push(format!(
                        "{} {} {:?}: {found} events, none due",
                        call.kind, call.request_id, call.outcome
                    ));
                }
            }
            // A call of several events may have committed some: a tus
            // chunk's `upload.append` is written before its bytes, the
            // image's `image.create` after them.
            Outcome::Cut { events } => {
                cut += 1;
                if found > 0 {
                    cut_committed += 1;
                    cut_events += found;
                    if found > events {
                        wrong.push(format!(
                            "{} {} cut off: {found} events, at most {events} due",
                            call.kind, call.request_id
                        ));
                    }
                }
            }
        }
    }
    if known != events.values().sum::<usize>() {
        failures.push(format!(
            "{} audit events name request ids no client used",
            events.values().sum::<usize>() - known
        ));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "{} calls with the wrong audit events, e.g. {}",
            wrong.len(),
            wrong[..wrong.len().min(5)].join("; ")
        ));
    }
    if rows_total != due_2xx + cut_events {
        failures.push(format!(
            "audit rows of users {rows_total} ≠ events due to 2xx calls {due_2xx} + events of committed cut calls {cut_events}"
        ));
    }
    Ok(json!({
        "user_rows": rows_total,
        "due_to_2xx_calls": due_2xx,
        "cut_calls": cut,
        "cut_calls_committed": cut_committed,
        "events_of_committed_cut_calls": cut_events,
        "calls_with_wrong_events": wrong.len(),
    }))
}

/// Every acknowledged image is in the catalog with the digest it was given.
async fn check_images(data: &Path, shared: &Shared, failures: &mut Vec<String>) -> Result<usize> {
    let mut db = database(data).await?;
    let stored: HashMap<String, String> =
        sqlx::query_as::<_, (String, String)>("SELECT id, stored_sha256 FROM images")
            .fetch_all(&mut db)
            .await?
            .into_iter()
            .collect();
    let images = shared.images.lock().expect("images lock").clone();
    let lost: Vec<_> = images
        .iter()
        .filter(|(id, sha)| stored.get(id) != Some(sha))
        .collect();
    if !lost.is_empty() {
        failures.push(format!(
            "{} acknowledged images missing or changed, e.g. {:?}",
            lost.len(),
            lost.first()
        ));
    }
    Ok(images.len())
}

/// The blob store against the catalog, before and after a sweep.
async fn check_disk(
    relay: &Relay,
    orphan_bound: usize,
    failures: &mut Vec<String>,
) -> Result<Value> {
    let blobs = relay.data.join("blobs");
    let spool: Vec<_> = std::fs::read_dir(blobs.join("tmp"))?.collect();
    if !spool.is_empty() {
        failures.push(format!("{} spool files left in blobs/tmp", spool.len()));
    }
    let before = compare_blobs(relay).await?;
    let swept = relay
        .command()
        .args(["reprocess", "sweep", "--grace", "0s"])
        .output()?;
    if !swept.status.success() {
        failures.push(format!(
            "sweep failed: {}",
            String::from_utf8_lossy(&swept.stderr)
        ));
    }
    let after = compare_blobs(relay).await?;
    if before.missing > 0 || before.wrong_size > 0 {
        failures.push(format!(
            "{} catalog blobs missing on disk, {} with another size",
            before.missing, before.wrong_size
        ));
    }
    if before.orphans > orphan_bound {
        failures.push(format!(
            "{} orphan blobs, more than the kills times the clients ({orphan_bound})",
            before.orphans
        ));
    }
    if after.disk_bytes != after.catalog_bytes || after.orphans > 0 || after.missing > 0 {
        failures.push(format!(
            "after the sweep: {} bytes on disk, {} in the catalog, {} orphans, {} missing",
            after.disk_bytes, after.catalog_bytes, after.orphans, after.missing
        ));
    }
    Ok(json!({
        "blobs": before.rows,
        "catalog_bytes": before.catalog_bytes,
        "disk_bytes_before_sweep": before.disk_bytes,
        "orphans_before_sweep": before.orphans,
        "orphan_bytes_before_sweep": before.orphan_bytes,
        "disk_bytes_after_sweep": after.disk_bytes,
        "catalog_bytes_after_sweep": after.catalog_bytes,
        "du_kb_after_sweep": du_kb(&blobs.join("sha256")),
    }))
}

#[derive(Debug, Default)]
struct BlobComparison {
    rows: usize,
    catalog_bytes: u64,
    disk_bytes: u64,
    orphans: usize,
    orphan_bytes: u64,
    missing: usize,
    wrong_size: usize,
}

async fn compare_blobs(relay: &Relay) -> Result<BlobComparison> {
    let mut db = database(&relay.data).await?;
    let rows: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT sha256, size FROM blobs")
            .fetch_all(&mut db)
            .await?
            .into_iter()
            .collect();
    let mut files = HashMap::new();
    let mut stack = vec![relay.data.join("blobs/sha256")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.file_name().to_string_lossy().into_owned(), meta.len());
            }
        }
    }
    let mut out = BlobComparison {
        rows: rows.len(),
        catalog_bytes: rows.values().map(|&s| s as u64).sum(),
        disk_bytes: files.values().sum(),
        ..BlobComparison::default()
    };
    for (name, size) in &files {
        match rows.get(name) {
            None => {
                out.orphans += 1;
                out.orphan_bytes += size;
            }
            Some(&row) if row as u64 != *size => out.wrong_size += 1,
            Some(_) => {}
        }
    }
    out.missing = rows.keys().filter(|k| !files.contains_key(*k)).count();
    Ok(out)
}

fn du_kb(dir: &Path) -> Option<u64> {
    let out = Command::new("du").arg("-sk").arg(dir).output().ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
