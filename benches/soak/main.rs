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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

mod checks;
mod clients;
#[path = "../../tests/support/mod.rs"]
mod support;

use checks::{check_answers, check_audit, check_disk, check_images};
use clients::{Inputs, Shared, client};

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
