//! Relay on both of its stacks, side by side in one run: the embedded
//! default (SQLite catalog and queue, blobs on the local filesystem) and the
//! scale-out stack (PostgreSQL, S3), so what many stateless processes cost
//! is a measured ratio, not a guess.
//!
//! `.ci/bench-scale-out` starts PostgreSQL and SeaweedFS as `.ci/test` does
//! (with PostgreSQL's `fsync` on) and runs `cargo bench --bench scale_out`.
//!
//! * **Ingest**: the real `relay serve` binary over loopback HTTP, one per
//!   stack, both up for the whole section, each with `--workers 0` so no
//!   derive job shares the cores with the uploads. Every upload is a raw
//!   `POST /api/v1/cases/{id}/images` to a new case (made untimed before the
//!   step), with bytes no other upload had (a unique SOP Instance UID, or a
//!   JPEG comment), so dedupe never skips the work; each must answer `201`.
//!   Steps: a ~20 MB DICOM one at a time and 8 at once (MB/s), a ~256 KB
//!   DICOM and a ~256 KB JPEG one at a time and 8 in flight (uploads/s).
//!   A third target takes the same bodies with the same concurrency: a bare
//!   PUT into the bucket through Relay's S3 client (no checksum, no
//!   condition), what the S3 server alone costs. Before each timed step the
//!   filesystem is flushed (`sync`, untimed); each step runs on every target
//!   back to back, the order rotating run by run. Figures are medians of the
//!   runs; the ratio is PG+S3 over SQLite+fs.
//! * **Queue**: no-op jobs claimed and completed through the real catalog,
//!   by 1 and by 4 workers: one job a claim through `Runner::run_once` (and,
//!   for 1 worker, through `Queue::claim` + `Queue::complete` alone, to show
//!   what the runner adds), and batches of 8 (`Queue::claim` with a limit,
//!   each job then completed one after another, or all at once as a
//!   runner's concurrent jobs finish). Just before each measurement, on the
//!   same database, the raw durable commit rate: one one-row `UPDATE` a
//!   transaction for half a second, from as many connections as workers.
//!   The ratio is jobs/s over that commit rate, the median of the runs'
//!   ratios (a shared machine's disk drifts, the pair much less); a job is
//!   two commits one at a time (claim, complete), so 0.5 is the ceiling for
//!   batch 1 and 8/9 for batch 8 unless commits overlap. SQLite runs in WAL
//!   mode with `synchronous=FULL`, as the catalog opens it; PostgreSQL with
//!   `synchronous_commit` at its default.
//!
//! The bench needs `RELAY_TEST_POSTGRES`, `RELAY_TEST_S3` and the `AWS_*`
//! credentials (`.ci/services` exports them). Without them, or when a
//! server does not answer, it says so and exits non-zero: it never skips.
//! It prints a table and writes the numbers to `target/bench-scale-out.json`.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use relay_workers::blob::S3BlobStore;
use relay_workers::catalog::{PoolSettings, Queue, SqlCatalog};
use relay_workers::queue::{Job, JobError, Outcome, Registry, Runner, RunnerConfig, Typed};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// Decimal megabytes, as disks and networks count them.
const MB: f64 = 1e6;
const RUNS: usize = 5;
/// Uploads in flight at once in the concurrent steps.
const CONCURRENCY: usize = 8;
const BIG_DICOM_BYTES: usize = 20_000_000;
const BIG_SEQUENTIAL: usize = 2;
const BIG_CONCURRENT: usize = CONCURRENCY;
const SMALL_SEQUENTIAL: usize = 12;
const SMALL_CONCURRENT: usize = 4 * CONCURRENCY;
/// ~0.8 MP; with this noise, ~256 KB at quality 90.
const PHOTO_SIZE: (u32, u32) = (1024, 768);

const QUEUE_RUNS: usize = 5;
const JOBS: u32 = 300;
const BATCH: u32 = 8;
/// How long each raw commit measurement runs.
const RAW_COMMITS_FOR: Duration = Duration::from_millis(500);
/// How the workers claim and complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claims {
    /// One job a claim, through `Runner::run_once`.
    Runner,
    /// One job a claim, `Queue::claim` and `Queue::complete` alone: what the
    /// runner adds is the difference.
    Bare,
    /// `BATCH` jobs a claim, completed one after another.
    Batch,
    /// `BATCH` jobs a claim, completed at once, as a runner's concurrent
    /// jobs finish.
    BatchAtOnce,
}

/// (workers, claims), in the order of the table.
const QUEUE_SHAPES: [(usize, Claims); 7] = [
    (1, Claims::Runner),
    (1, Claims::Bare),
    (4, Claims::Runner),
    (1, Claims::Batch),
    (4, Claims::Batch),
    (1, Claims::BatchAtOnce),
    (4, Claims::BatchAtOnce),
];

const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nbench scale_out: FAILED: {error}\n");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let services = Services::from_env()?;
    let measured = measure(&services).await;
    // Whether or not the measuring got through, the databases go.
    let dropped = services.drop_databases().await;
    measured.and(dropped)
}

async fn measure(services: &Services) -> Result<()> {
    let started = Instant::now();
    relay_workers::tls::install_crypto_provider();
    sqlx::any::install_default_drivers();
    let machine = Machine::describe(services).await?;
    eprintln!("bench: generating inputs");
    let inputs = Inputs::generate()?;
    let ingest = ingest(services, &inputs).await?;
    let queue = queue(services).await?;
    let elapsed = started.elapsed();
    print_report(&machine, &ingest, &queue, elapsed);
    let path = write_json(&machine, &ingest, &queue, elapsed)?;
    println!("JSON: {}", path.display());
    Ok(())
}

/// Adds what was being done to an error.
trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
}

impl<T, E: Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}").into())
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

// --- the services and the machine ---------------------------------------------

/// The PostgreSQL server and S3 bucket `.ci/services` started.
#[derive(Debug)]
struct Services {
    postgres: String,
    s3: String,
    /// The databases this run made, dropped at its end.
    databases: Mutex<Vec<String>>,
}

impl Services {
    fn from_env() -> Result<Self> {
        let var = |name: &str, what: &str| -> Result<String> {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    format!(
                        "{name} is not set: this benchmark compares against {what} and does not \
                         run without it; run .ci/bench-scale-out, which starts PostgreSQL and \
                         SeaweedFS (S3)"
                    )
                    .into()
                })
        };
        Ok(Self {
            postgres: var("RELAY_TEST_POSTGRES", "PostgreSQL")?,
            s3: var("RELAY_TEST_S3", "an S3 server")?,
            databases: Mutex::default(),
        })
    }

    async fn fresh_database(&self) -> Result<String> {
        let url = relay_workers::testing::fresh_postgres_database(&self.postgres)
            .await
            .context(format!(
                "create a database on PostgreSQL at {}",
                relay_workers::catalog::redact_url(&self.postgres)
            ))?;
        if let Ok(mut databases) = self.databases.lock() {
            databases.push(url.clone());
        }
        Ok(url)
    }

    /// Drops the databases this run made (their connections closed first).
    async fn drop_databases(&self) -> Result<()> {
        use sqlx::Connection;
        let urls = self
            .databases
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        let mut conn = sqlx::PgConnection::connect(&self.postgres)
            .await
            .context("connect to PostgreSQL")?;
        for url in urls {
            let base = url.split('?').next().unwrap_or(&url);
            let name = base.rsplit('/').next().unwrap_or_default();
            // `name` was made by `fresh_postgres_database`: letters, digits, `_`.
            let drop = sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            sqlx::query(drop)
                .execute(&mut conn)
                .await
                .context(format!("drop database {name}"))?;
        }
        Ok(())
    }

    /// The test bucket with a prefix no earlier run used.
    fn fresh_prefix(&self) -> String {
        let (path, query) = self.s3.split_once('?').unwrap_or((&self.s3, ""));
        let prefix = relay_workers::testing::unique_name("bench_scale_out");
        format!("{}/{prefix}?{query}", path.trim_end_matches('/'))
    }
}

/// What the numbers were measured on.
#[derive(Debug)]
struct Machine {
    cores: usize,
    cpu: String,
    postgres_version: String,
    fsync: String,
    synchronous_commit: String,
    wal_sync_method: String,
    s3: String,
}

impl Machine {
    async fn describe(services: &Services) -> Result<Self> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&services.postgres)
            .await
            .context("connect to PostgreSQL (RELAY_TEST_POSTGRES)")?;
        let mut show = async |name: &str| -> Result<String> {
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&mut conn)
                .await
                .context(format!("SHOW {name}"))
        };
        let postgres_version = show("server_version").await?;
        let fsync = show("fsync").await?;
        let synchronous_commit = show("synchronous_commit").await?;
        let wal_sync_method = show("wal_sync_method").await?;
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let s3_host = services
            .s3
            .split("endpoint=")
            .nth(1)
            .and_then(|rest| rest.split('&').next())
            .unwrap_or("?");
        let s3 = match std::env::var("RELAY_BENCH_S3_SERVER") {
            Ok(name) if !name.is_empty() => format!("{name} at {s3_host}"),
            _ => format!("S3 at {s3_host}"),
        };
        Ok(Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            postgres_version,
            fsync,
            synchronous_commit,
            wal_sync_method,
            s3,
        })
    }

    fn postgres(&self) -> String {
        format!(
            "PostgreSQL {} (fsync={}, synchronous_commit={}, wal_sync_method={})",
            self.postgres_version, self.fsync, self.synchronous_commit, self.wal_sync_method
        )
    }
}

// --- inputs -----------------------------------------------------------------------

/// One kind of upload: a template whose every copy is made distinct.
#[derive(Debug)]
struct Input {
    /// "DICOM" or "JPEG".
    kind: &'static str,
    content_type: &'static str,
    specialty: &'static str,
    template: Vec<u8>,
    /// Where the template's placeholder SOP Instance UID sits (DICOM only;
    /// a JPEG gets a comment segment instead).
    uid_offsets: Vec<usize>,
}

/// A SOP Instance UID under `2.25` of fixed width (44 characters, even, so
/// no padding): `2.25.1` then 38 digits.
fn instance_uid(n: u64) -> String {
    format!("2.25.1{n:038}")
}

impl Input {
    fn dicom(rows: u16, frames: usize) -> Result<Self> {
        let template = dicom_bytes(rows, frames)?;
        let placeholder = instance_uid(0);
        let uid_offsets: Vec<usize> = template
            .windows(placeholder.len())
            .enumerate()
            .filter(|(_, w)| *w == placeholder.as_bytes())
            .map(|(i, _)| i)
            .collect();
        if uid_offsets.len() != 2 {
            return Err(format!(
                "expected the SOP Instance UID in the meta group and the data set, found it {} times",
                uid_offsets.len()
            )
            .into());
        }
        Ok(Self {
            kind: "DICOM",
            content_type: "application/dicom",
            specialty: "radiology",
            template,
            uid_offsets,
        })
    }

    fn jpeg() -> Result<Self> {
        let mut template = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut template, 90)
            .encode_image(&noisy_photo(PHOTO_SIZE, 1))
            .context("encode the photo")?;
        Ok(Self {
            kind: "JPEG",
            content_type: "image/jpeg",
            specialty: "dermatology",
            template,
            uid_offsets: Vec::new(),
        })
    }

    /// Copy `n` of the template: bytes no other copy has.
    fn copy(&self, n: u64) -> Vec<u8> {
        if self.content_type == "image/jpeg" {
            // SOI, then a COM segment naming the copy, then the rest.
            let comment = format!("relay bench upload {n}");
            let length = u16::try_from(comment.len() + 2).unwrap_or(u16::MAX);
            let mut bytes = Vec::with_capacity(self.template.len() + comment.len() + 4);
            bytes.extend_from_slice(&self.template[..2]);
            bytes.extend_from_slice(&[0xFF, 0xFE]);
            bytes.extend_from_slice(&length.to_be_bytes());
            bytes.extend_from_slice(comment.as_bytes());
            bytes.extend_from_slice(&self.template[2..]);
            return bytes;
        }
        let mut bytes = self.template.clone();
        let uid = instance_uid(n);
        for &at in &self.uid_offsets {
            bytes[at..at + uid.len()].copy_from_slice(uid.as_bytes());
        }
        bytes
    }

    fn size(&self) -> usize {
        self.template.len()
    }
}

#[derive(Debug)]
struct Inputs {
    big_dicom: Input,
    small_dicom: Input,
    photo: Input,
    /// Numbers every copy, across inputs and stacks.
    next: AtomicU64,
}

impl Inputs {
    fn generate() -> Result<Self> {
        let frame = 512 * 512 * 2;
        Ok(Self {
            big_dicom: Input::dicom(512, BIG_DICOM_BYTES.div_ceil(frame))?,
            small_dicom: Input::dicom(256, 1)?,
            photo: Input::jpeg()?,
            next: AtomicU64::new(1),
        })
    }

    fn copies(&self, input: &Input, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| input.copy(self.next.fetch_add(1, Ordering::Relaxed)))
            .collect()
    }
}

/// A multi-frame 16-bit secondary capture, `rows` × 512 per frame, explicit
/// VR little endian, with every identifier Relay requires and the
/// placeholder SOP Instance UID.
fn dicom_bytes(rows: u16, frames: usize) -> Result<Vec<u8>> {
    let columns: u16 = 512;
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let short = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let pixels: Vec<u8> = (0..frames * usize::from(rows) * usize::from(columns))
        .flat_map(|i| {
            let (frame, at) = (i / (usize::from(rows) * 512), i % (usize::from(rows) * 512));
            ((((at % 512) ^ (at / 512)) + frame * 7) as u16 & 0x0FFF).to_le_bytes()
        })
        .collect();
    let object = InMemDicomObject::from_element_iter([
        text(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        text(tags::SOP_INSTANCE_UID, VR::UI, &instance_uid(0)),
        text(tags::STUDY_DATE, VR::DA, "20240101"),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::PATIENT_NAME, VR::PN, "Bench^Synthetic"),
        text(tags::PATIENT_ID, VR::LO, "BENCH-0001"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.2001"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, "2.25.2002"),
        short(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        short(tags::ROWS, rows),
        short(tags::COLUMNS, columns),
        short(tags::BITS_ALLOCATED, 16),
        short(tags::BITS_STORED, 12),
        short(tags::HIGH_BIT, 11),
        short(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::from(pixels)),
    ]);
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .context("build the DICOM file meta group")?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).context("write the DICOM")?;
    Ok(bytes)
}

/// Noise of ±10 over a colour gradient (splitmix64): compresses like a real
/// photo, neither flat nor random.
fn noisy_photo((width, height): (u32, u32), seed: u64) -> image::RgbImage {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    image::RgbImage::from_fn(width, height, |x, y| {
        let bits = next();
        let channel = |base: u32, shift: u32| {
            (base as i32 + ((bits >> shift) % 21) as i32 - 10).clamp(0, 255) as u8
        };
        image::Rgb([
            channel(x * 255 / width, 0),
            channel(y * 255 / height, 16),
            channel((x + y) * 255 / (width + height), 32),
        ])
    })
}

// --- the servers --------------------------------------------------------------------

/// One Relay installation: a data directory, and the shared stores when it
/// is the scale-out stack.
#[derive(Debug)]
struct Stack {
    label: &'static str,
    dir: tempfile::TempDir,
    /// `--database` and `--blobs`, or `None` for the embedded default.
    backends: Option<(String, String)>,
}

impl Stack {
    fn new(label: &'static str, backends: Option<(String, String)>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("relay-bench-scale-out-")
            .tempdir()
            .context("create a temporary directory")?;
        Ok(Self {
            label,
            dir,
            backends,
        })
    }

    /// `relay` in this installation's directory, without any `RELAY_*` or
    /// `RUST_LOG` of the environment (the `AWS_*` credentials stay).
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
        command.current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RELAY_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        if let Some((database, blobs)) = &self.backends {
            command.args(["--database", database, "--blobs", blobs]);
        }
        command
    }

    fn admin(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command()
            .arg("admin")
            .args(args)
            .output()
            .context("run relay admin")?;
        if !output.status.success() {
            return Err(format!(
                "{}: relay admin {args:?} failed: {}",
                self.label,
                String::from_utf8_lossy(&output.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// A running `relay serve --workers 0` with an office user's token.
#[derive(Debug)]
struct Server {
    label: &'static str,
    child: Child,
    base: String,
    token: String,
    log: Arc<Mutex<VecDeque<String>>>,
    http: reqwest::Client,
}

impl Server {
    async fn start(stack: &Stack) -> Result<Self> {
        let office = stack.admin(&["office", "create", "--name", "Bench Practice"])?;
        let user = stack.admin(&[
            "user", "create", "--office", &office, "--name", "Bench", "--role", "office",
        ])?;
        let token = stack.admin(&["token", "create", "--user", &user])?;
        let mut child = stack
            .command()
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start relay serve")?;
        let stderr = child.stderr.take().ok_or("relay serve has no stderr")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let listening = follow_log(stderr, log.clone());
        let mut server = Self {
            label: stack.label,
            child,
            base: String::new(),
            token,
            log,
            http: reqwest::Client::new(),
        };
        let addr =
            tokio::task::spawn_blocking(move || listening.recv_timeout(SERVER_START_TIMEOUT))
                .await
                .context("wait for relay serve")?;
        match addr {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => return Err(server.failure("relay serve did not start")),
        }
        let ready = server
            .http
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .context("GET /readyz")?;
        if !ready.status().is_success() {
            let status = ready.status();
            let body = ready.text().await.unwrap_or_default();
            return Err(server.failure(format!("/readyz answered {status}: {body}")));
        }
        eprintln!("bench: {} relay serve at {}", server.label, server.base);
        Ok(server)
    }

    fn failure(&self, what: impl Display) -> Error {
        let log = self
            .log
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        format!("{}: {what}; its log:\n{log}", self.label).into()
    }

    async fn create_case(&self, specialty: &str) -> Result<String> {
        let referral = json!({
            "patient": {"name": "Bench Synthetic", "birth_date": "1961-07-14", "sex": "male", "mrn": "BENCH-0001"},
            "specialty": specialty,
            "priority": "routine",
            "question": "Benchmark upload: synthetic image, no clinical question.",
        });
        let response = self
            .http
            .post(format!("{}/api/v1/cases", self.base))
            .bearer_auth(&self.token)
            .json(&referral)
            .send()
            .await
            .context("POST /api/v1/cases")?;
        let status = response.status();
        let body: Value = response.json().await.context("read the case")?;
        if status != reqwest::StatusCode::CREATED {
            return Err(self.failure(format!("POST /api/v1/cases answered {status}: {body}")));
        }
        Ok(body["id"].as_str().ok_or("the case has no id")?.to_owned())
    }

    async fn upload(&self, case: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        let url = format!("{}/api/v1/cases/{case}/images", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .context(format!("POST {url}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::CREATED {
            let text = response.text().await.unwrap_or_default();
            return Err(self.failure(format!("an upload answered {status}, not 201: {text}")));
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

/// Drains the server's stderr on a thread, keeping the last lines; sends
/// the address it listens on.
fn follow_log(
    stderr: std::process::ChildStderr,
    log: Arc<Mutex<VecDeque<String>>>,
) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.trim().to_owned());
            }
            if let Ok(mut lines) = log.lock() {
                if lines.len() == 40 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    });
    rx
}

// --- ingest ---------------------------------------------------------------------------

/// One timed ingest step: which input, how many uploads, how many at once.
#[derive(Debug, Clone, Copy)]
struct Step {
    input: fn(&Inputs) -> &Input,
    uploads: usize,
    at_once: usize,
    /// MB/s when true, uploads/s when false.
    in_mb: bool,
}

const STEPS: [Step; 6] = [
    Step {
        input: |i| &i.big_dicom,
        uploads: BIG_SEQUENTIAL,
        at_once: 1,
        in_mb: true,
    },
    Step {
        input: |i| &i.big_dicom,
        uploads: BIG_CONCURRENT,
        at_once: CONCURRENCY,
        in_mb: true,
    },
    Step {
        input: |i| &i.small_dicom,
        uploads: SMALL_SEQUENTIAL,
        at_once: 1,
        in_mb: false,
    },
    Step {
        input: |i| &i.small_dicom,
        uploads: SMALL_CONCURRENT,
        at_once: CONCURRENCY,
        in_mb: false,
    },
    Step {
        input: |i| &i.photo,
        uploads: SMALL_SEQUENTIAL,
        at_once: 1,
        in_mb: false,
    },
    Step {
        input: |i| &i.photo,
        uploads: SMALL_CONCURRENT,
        at_once: CONCURRENCY,
        in_mb: false,
    },
];

/// Where a step's uploads go: the two stacks, and the bare S3 PUT.
const TARGETS: [&str; 3] = ["SQLite+fs", "PG+S3", "S3 PUT alone"];

/// A step's figures, run by run, per target (see [`TARGETS`]).
#[derive(Debug)]
struct IngestRow {
    name: String,
    unit: &'static str,
    bytes: usize,
    uploads: usize,
    at_once: usize,
    runs: [Vec<f64>; 3],
}

impl IngestRow {
    fn median(&self, target: usize) -> f64 {
        median(&self.runs[target])
    }

    /// PG+S3 over SQLite+fs.
    fn ratio(&self) -> f64 {
        self.median(1) / self.median(0)
    }
}

async fn ingest(services: &Services, inputs: &Inputs) -> Result<Vec<IngestRow>> {
    let embedded = Stack::new("SQLite+fs", None)?;
    let prefix = services.fresh_prefix();
    let shared = Stack::new(
        "PG+S3",
        Some((services.fresh_database().await?, prefix.clone())),
    )?;
    let servers = [
        Server::start(&embedded).await?,
        Server::start(&shared).await?,
    ];
    // The bucket itself, through the S3 client Relay's store uses.
    let s3 = S3BlobStore::open(&prefix, shared.dir.path().join("raw-spool"))
        .await
        .context("open the S3 bucket")?;
    // Warm up each target (connections, caches), untimed.
    for input in [&inputs.big_dicom, &inputs.small_dicom, &inputs.photo] {
        for server in &servers {
            let case = server.create_case(input.specialty).await?;
            let body = inputs.copies(input, 1).remove(0);
            server.upload(&case, body, input.content_type).await?;
        }
        raw_put(&s3, inputs, input, 1, 1).await?;
    }
    let mut rows: Vec<IngestRow> = STEPS
        .iter()
        .map(|step| {
            let input = (step.input)(inputs);
            let size = human_size(input.size());
            IngestRow {
                name: if step.at_once == 1 {
                    format!("{size} {}, 1 at a time", input.kind)
                } else {
                    format!("{size} {}, {} at once", input.kind, step.at_once)
                },
                unit: if step.in_mb { "MB/s" } else { "uploads/s" },
                bytes: input.size(),
                uploads: step.uploads,
                at_once: step.at_once,
                runs: [Vec::new(), Vec::new(), Vec::new()],
            }
        })
        .collect();
    for run in 0..RUNS {
        eprintln!("bench: ingest run {}/{RUNS}", run + 1);
        for (step, row) in STEPS.iter().zip(&mut rows) {
            let input = (step.input)(inputs);
            let mut order = [0, 1, 2];
            order.rotate_left(run % 3);
            for target in order {
                let (uploads, seconds) = match target {
                    2 => raw_put(&s3, inputs, input, step.uploads, step.at_once).await?,
                    _ => timed_step(&servers[target], inputs, input, step).await?,
                };
                row.runs[target].push(if step.in_mb {
                    (uploads * input.size()) as f64 / MB / seconds
                } else {
                    uploads as f64 / seconds
                });
            }
        }
    }
    Ok(rows)
}

/// Runs `uploads` jobs `at_once` at a time; returns the seconds taken.
async fn in_lanes<F, Fut>(at_once: usize, jobs: Vec<F>) -> Result<f64>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let queue = Mutex::new(jobs);
    let next = || queue.lock().ok().and_then(|mut q| q.pop());
    let started = Instant::now();
    let lanes = (0..at_once).map(|_| async {
        while let Some(job) = next() {
            job().await?;
        }
        Ok::<(), Error>(())
    });
    for lane in futures_util::future::join_all(lanes).await {
        lane?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Runs one step against `server`: cases and bodies made first, the
/// filesystem flushed, then the uploads timed. Returns (uploads, seconds).
async fn timed_step(
    server: &Server,
    inputs: &Inputs,
    input: &Input,
    step: &Step,
) -> Result<(usize, f64)> {
    let mut jobs = Vec::with_capacity(step.uploads);
    for body in inputs.copies(input, step.uploads) {
        let case = server.create_case(input.specialty).await?;
        jobs.push(move || async move { server.upload(&case, body, input.content_type).await });
    }
    sync()?;
    Ok((step.uploads, in_lanes(step.at_once, jobs).await?))
}

/// The same bodies PUT straight into the bucket, no checksum, no
/// condition: what the S3 server alone costs. Returns (uploads, seconds).
async fn raw_put(
    s3: &S3BlobStore,
    inputs: &Inputs,
    input: &Input,
    uploads: usize,
    at_once: usize,
) -> Result<(usize, f64)> {
    let jobs: Vec<_> = inputs
        .copies(input, uploads)
        .into_iter()
        .map(|body| {
            let key = s3
                .location()
                .key(&format!("raw/{}", uuid::Uuid::now_v7().simple()));
            move || async move {
                s3.client()
                    .put_object()
                    .bucket(&s3.location().bucket)
                    .key(key)
                    .body(body.into())
                    .send()
                    .await
                    .map_err(|e| format!("a bare S3 PUT failed: {e:?}"))?;
                Ok(())
            }
        })
        .collect();
    sync()?;
    Ok((uploads, in_lanes(at_once, jobs).await?))
}

/// Flushes every filesystem, so no step pays for another's writeback.
fn sync() -> Result<()> {
    let status = Command::new("sync").status().context("run sync")?;
    if status.success() {
        Ok(())
    } else {
        Err("sync failed".into())
    }
}

// --- the queue --------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
struct Noop {
    n: u32,
}

impl Job for Noop {
    const KIND: &'static str = "noop";
}

/// One backend's queue figures, run by run.
#[derive(Debug)]
struct QueueBackend {
    label: &'static str,
    url: String,
    catalog: Arc<SqlCatalog>,
    /// For each of `QUEUE_SHAPES`, run by run: raw commits/s measured just
    /// before, from as many connections as the shape has workers.
    commits: [Vec<f64>; QUEUE_SHAPES.len()],
    /// Jobs/s for each of `QUEUE_SHAPES`.
    jobs: [Vec<f64>; QUEUE_SHAPES.len()],
    _dir: Option<tempfile::TempDir>,
}

impl QueueBackend {
    async fn connect(
        label: &'static str,
        url: String,
        dir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let settings = PoolSettings {
            max_connections: 16,
            ..PoolSettings::default()
        };
        let catalog = SqlCatalog::connect(&url, &settings)
            .await
            .context(format!("{label}: open the catalog"))?;
        Ok(Self {
            label,
            url,
            catalog: Arc::new(catalog),
            commits: Default::default(),
            jobs: Default::default(),
            _dir: dir,
        })
    }

    /// A raw connection to the same database, durable as the catalog's.
    async fn raw(&self) -> Result<sqlx::AnyConnection> {
        use sqlx::Connection;
        let mut conn = sqlx::AnyConnection::connect(&self.url)
            .await
            .context(format!("{}: connect", self.label))?;
        if self.url.starts_with("sqlite:") {
            sqlx::raw_sql("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
                .execute(&mut conn)
                .await
                .context("set SQLite's pragmas")?;
        }
        Ok(conn)
    }

    /// Empties the jobs table (untimed), so every run starts alike.
    async fn reset(&self) -> Result<()> {
        let mut conn = self.raw().await?;
        sqlx::raw_sql("DELETE FROM jobs")
            .execute(&mut conn)
            .await
            .context("empty the jobs table")?;
        // SQLite's WAL is left as it is (a truncated one makes the next
        // commits grow the file, which costs them more than in steady state).
        if !self.url.starts_with("sqlite:") {
            sqlx::raw_sql("VACUUM ANALYZE jobs")
                .execute(&mut conn)
                .await
                .context("VACUUM ANALYZE jobs")?;
        }
        Ok(())
    }

    async fn enqueue(&self, count: u32) -> Result<Vec<i64>> {
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..8 {
            let catalog = self.catalog.clone();
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for n in (lane..count).step_by(8) {
                    ids.push(catalog.enqueue(Noop::KIND, &json!({ "n": n }), 5).await?);
                }
                Ok::<_, relay_workers::catalog::CatalogError>(ids)
            });
        }
        let mut ids = Vec::new();
        while let Some(lane) = tasks.join_next().await {
            ids.extend(lane.context("an enqueue task")?.context("enqueue")?);
        }
        Ok(ids)
    }

    /// Raw durable commits per second from `connections` connections, each
    /// updating a row of its own, one `UPDATE` per transaction, for
    /// `RAW_COMMITS_FOR`.
    async fn commit_rate(&self, connections: usize) -> Result<f64> {
        self.reset().await?;
        let rows = self.enqueue(connections as u32).await?;
        let mut conns = Vec::new();
        for _ in 0..connections {
            conns.push(self.raw().await?);
        }
        let started = Instant::now();
        let lanes = conns
            .into_iter()
            .zip(rows)
            .map(|(mut conn, id)| async move {
                let mut commits = 0u32;
                while started.elapsed() < RAW_COMMITS_FOR {
                    sqlx::query("UPDATE jobs SET updated_at = $1 WHERE id = $2")
                        .bind(i64::from(commits))
                        .bind(id)
                        .execute(&mut conn)
                        .await?;
                    commits += 1;
                }
                Ok::<u32, sqlx::Error>(commits)
            });
        let mut commits = 0;
        for lane in futures_util::future::join_all(lanes).await {
            commits += lane.context(format!("{}: a raw commit", self.label))?;
        }
        Ok(f64::from(commits) / started.elapsed().as_secs_f64())
    }

    /// Jobs per second for `workers` workers draining `JOBS` no-op jobs.
    async fn queue_rate(&self, workers: usize, claims: Claims) -> Result<f64> {
        self.reset().await?;
        self.enqueue(JOBS).await?;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..workers {
            let catalog = self.catalog.clone();
            let worker = format!("bench-{w}");
            tasks.spawn(async move {
                match claims {
                    Claims::Runner => drain_one_by_one(catalog, worker).await,
                    Claims::Batch => drain_in_batches(catalog, worker, false, BATCH).await,
                    Claims::Bare => drain_in_batches(catalog, worker, false, 1).await,
                    Claims::BatchAtOnce => drain_in_batches(catalog, worker, true, BATCH).await,
                }
            });
        }
        let mut done = 0;
        while let Some(worker) = tasks.join_next().await {
            done += worker.context("a worker task")?.context("a worker")?;
        }
        let seconds = started.elapsed().as_secs_f64();
        if done != JOBS {
            return Err(format!("{}: {done} of {JOBS} jobs ran", self.label).into());
        }
        Ok(f64::from(JOBS) / seconds)
    }
}

/// The real runner, one claim per job, until the queue is empty.
async fn drain_one_by_one(
    catalog: Arc<SqlCatalog>,
    worker: String,
) -> std::result::Result<u32, relay_workers::catalog::CatalogError> {
    let registry = Registry::new().register(Typed::new(|_: Noop| async { Ok::<(), JobError>(()) }));
    let config = RunnerConfig {
        worker,
        concurrency: 1,
        lease: Duration::from_secs(60),
        poll: Duration::from_millis(5),
        grace: Duration::from_secs(5),
    };
    let runner = Runner::new(catalog, registry, config);
    let mut done = 0;
    loop {
        match runner.run_once().await? {
            Outcome::Idle => return Ok(done),
            _ => done += 1,
        }
    }
}

/// Claims up to `BATCH` jobs at a time and completes each (one after
/// another, or all at once as the runner's concurrent jobs would), until
/// the queue is empty.
async fn drain_in_batches(
    catalog: Arc<SqlCatalog>,
    worker: String,
    at_once: bool,
    batch: u32,
) -> std::result::Result<u32, relay_workers::catalog::CatalogError> {
    let lease = Duration::from_secs(60);
    let mut done = 0;
    loop {
        let jobs = catalog.claim(&[Noop::KIND], &worker, lease, batch).await?;
        if jobs.is_empty() {
            return Ok(done);
        }
        let completed = if at_once {
            let completions = jobs.iter().map(|job| catalog.complete(job.id, &worker));
            futures_util::future::join_all(completions).await
        } else {
            let mut completed = Vec::with_capacity(jobs.len());
            for job in &jobs {
                completed.push(catalog.complete(job.id, &worker).await);
            }
            completed
        };
        for ok in completed {
            if ok? {
                done += 1;
            }
        }
    }
}

async fn queue(services: &Services) -> Result<[QueueBackend; 2]> {
    let dir = tempfile::tempdir().context("create a temporary directory")?;
    let sqlite_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("queue.db").display()
    );
    let mut backends = [
        QueueBackend::connect("SQLite", sqlite_url, Some(dir)).await?,
        QueueBackend::connect("PostgreSQL", services.fresh_database().await?, None).await?,
    ];
    for run in 0..QUEUE_RUNS {
        eprintln!("bench: queue run {}/{QUEUE_RUNS}", run + 1);
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for b in order {
            let backend = &mut backends[b];
            for (i, (workers, claims)) in QUEUE_SHAPES.into_iter().enumerate() {
                let commits = backend.commit_rate(workers).await?;
                backend.commits[i].push(commits);
                let jobs = backend.queue_rate(workers, claims).await?;
                backend.jobs[i].push(jobs);
            }
        }
    }
    Ok(backends)
}

impl QueueBackend {
    /// Shape `i`'s jobs/s over the raw commits/s measured just before it,
    /// the median over the runs: the machine's disk drifts (more than
    /// tenfold between runs on a shared one), the pair much less.
    fn ratio(&self, i: usize) -> f64 {
        let pairs: Vec<f64> = self.jobs[i]
            .iter()
            .zip(&self.commits[i])
            .map(|(jobs, commits)| jobs / commits)
            .collect();
        median(&pairs)
    }

    /// Every raw commit rate measured from `connections` connections.
    fn raw_commits(&self, connections: usize) -> Vec<f64> {
        QUEUE_SHAPES
            .iter()
            .zip(&self.commits)
            .filter(|((workers, _), _)| *workers == connections)
            .flat_map(|(_, runs)| runs.iter().copied())
            .collect()
    }
}

fn shape_name((workers, claims): (usize, Claims)) -> String {
    let workers = format!("{workers} worker{}", if workers == 1 { "" } else { "s" });
    match claims {
        Claims::Runner => format!("{workers}, batch 1 (runner)"),
        Claims::Bare => format!("{workers}, batch 1 (no runner)"),
        Claims::Batch => format!("{workers}, batch {BATCH}"),
        Claims::BatchAtOnce => format!("{workers}, batch {BATCH}, completes at once"),
    }
}

/// What one connection's commit rate allows: a job is a claim and a
/// completion, or a completion and its share of a batch's claim.
fn ceiling(claims: Claims) -> f64 {
    match claims {
        Claims::Runner | Claims::Bare => 0.5,
        Claims::Batch | Claims::BatchAtOnce => f64::from(BATCH) / f64::from(BATCH + 1),
    }
}

// --- reporting ----------------------------------------------------------------------------

fn human_size(bytes: usize) -> String {
    if bytes as f64 >= MB {
        format!("{:.1} MB", bytes as f64 / MB)
    } else {
        format!("{:.0} KB", bytes as f64 / 1e3)
    }
}

fn print_report(
    machine: &Machine,
    ingest: &[IngestRow],
    queue: &[QueueBackend; 2],
    elapsed: Duration,
) {
    println!();
    println!("Relay on both stacks, one run: PostgreSQL + S3 against SQLite + filesystem");
    println!(
        "machine: {} cores ({}); the bench, relay, PostgreSQL and S3 share them and one disk; {:.0} s in all",
        machine.cores,
        machine.cpu,
        elapsed.as_secs_f64()
    );
    println!("{}; {}", machine.postgres(), machine.s3);
    if machine.fsync != "on" {
        println!(
            "WARNING: PostgreSQL runs with fsync={}: its commits are not durable, so its figures flatter it",
            machine.fsync
        );
    }
    println!();
    println!(
        "Ingest: relay serve --workers 0 over loopback HTTP; raw POST, distinct bytes, a new case each; \
         sync before each step; medians of {RUNS} runs, targets alternating"
    );
    println!(
        "{:<34} {:>16} {:>16} {:>7}   {:>16}",
        "", TARGETS[0], TARGETS[1], "ratio", TARGETS[2]
    );
    for row in ingest {
        let cell = |target| format!("{:.1} {}", row.median(target), row.unit);
        println!(
            "{:<34} {:>16} {:>16} {:>7.2}   {:>16}",
            row.name,
            cell(0),
            cell(1),
            row.ratio(),
            cell(2)
        );
    }
    println!("(ratio: PG+S3 / SQLite+fs; S3 PUT alone: the same bodies straight into the bucket)");
    println!();
    println!(
        "Queue: {JOBS} no-op jobs a run through the real catalog; raw commit: one-row UPDATE a \
         transaction; medians of {QUEUE_RUNS} runs"
    );
    println!("{:<54} {:>20} {:>20}", "", queue[0].label, queue[1].label);
    for connections in [1, 4] {
        let cell =
            |b: &QueueBackend| format!("{:.0} commits/s", median(&b.raw_commits(connections)));
        println!(
            "{:<54} {:>20} {:>20}",
            format!(
                "raw durable commits, {connections} connection{}",
                if connections == 1 { "" } else { "s" }
            ),
            cell(&queue[0]),
            cell(&queue[1]),
        );
    }
    for (i, shape) in QUEUE_SHAPES.into_iter().enumerate() {
        let cell = |b: &QueueBackend| {
            let rate = median(&b.jobs[i]);
            format!("{rate:.0} jobs/s ({:.2})", b.ratio(i))
        };
        println!(
            "{:<54} {:>20} {:>20}",
            format!("claim+complete, {}", shape_name(shape)),
            cell(&queue[0]),
            cell(&queue[1])
        );
    }
    println!(
        "(in brackets: jobs/s over the raw commits/s measured just before, from as many connections \
         as workers, median of the runs; committing one at a time allows {:.2} for batch 1, {:.2} for batch {BATCH})",
        ceiling(Claims::Runner),
        ceiling(Claims::Batch)
    );
}

fn write_json(
    machine: &Machine,
    ingest: &[IngestRow],
    queue: &[QueueBackend; 2],
    elapsed: Duration,
) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).context(format!("create {}", target.display()))?;
    let path = target.join("bench-scale-out.json");
    let backend = |b: &QueueBackend| {
        json!({
            "raw_commits_per_s": {
                "connections_1": median(&b.raw_commits(1)),
                "connections_4": median(&b.raw_commits(4)),
            },
            "claim_complete": QUEUE_SHAPES.into_iter().enumerate().map(|(i, shape)| json!({
                "shape": shape_name(shape),
                "workers": shape.0,
                "batch": if matches!(shape.1, Claims::Runner | Claims::Bare) { 1 } else { BATCH },
                "completions_at_once": shape.1 == Claims::BatchAtOnce,
                "jobs_per_s": median(&b.jobs[i]),
                "ratio_to_raw_commits": b.ratio(i),
                "raw_commits_per_s_runs": b.commits[i],
                "ceiling_one_at_a_time": ceiling(shape.1),
                "runs": b.jobs[i],
            })).collect::<Vec<_>>(),
        })
    };
    let value = json!({
        "method": {
            "ingest": format!("relay serve --workers 0 over loopback HTTP; raw POST /api/v1/cases/{{id}}/images of distinct bytes, a new case each (made untimed); sync before each step (untimed); S3 PUT alone: the same bodies PUT into the bucket with Relay's S3 client, no checksum; median of {RUNS} runs, targets alternating"),
            "queue": format!("{JOBS} no-op jobs a run through the real catalog: batch 1 by Runner::run_once, batch {BATCH} by Queue::claim(limit {BATCH}) with completions one after another or at once; raw commits: one-row UPDATE a transaction for {RAW_COMMITS_FOR:?} just before each measurement, from as many connections as workers; ratio: median over the runs of jobs/s over that raw commits/s; median of {QUEUE_RUNS} runs"),
            "units": "MB = 10^6 bytes",
            "cores": machine.cores,
            "cpu": machine.cpu,
            "postgres": machine.postgres(),
            "postgres_fsync": machine.fsync,
            "s3": machine.s3,
            "seconds": elapsed.as_secs_f64(),
        },
        "ingest": ingest.iter().map(|row| json!({
            "name": row.name,
            "unit": row.unit,
            "bytes": row.bytes,
            "uploads": row.uploads,
            "at_once": row.at_once,
            "sqlite_fs": row.median(0),
            "postgres_s3": row.median(1),
            "s3_put_alone": row.median(2),
            "ratio_postgres_s3_to_sqlite_fs": row.ratio(),
            "sqlite_fs_runs": row.runs[0],
            "postgres_s3_runs": row.runs[1],
            "s3_put_alone_runs": row.runs[2],
        })).collect::<Vec<_>>(),
        "queue": {
            "sqlite": backend(&queue[0]),
            "postgres": backend(&queue[1]),
        },
    });
    let text = serde_json::to_string_pretty(&value).context("encode the JSON report")?;
    std::fs::write(&path, text + "\n").context(format!("write {}", path.display()))?;
    Ok(path)
}
