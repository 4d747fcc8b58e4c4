//! Ingest benchmark: how fast the real `relay serve` binary takes images in
//! over loopback HTTP, next to the least any durable store has to do on the
//! same disk.
//!
//! What is measured, in one run, inside one temporary directory:
//!
//! - **Throughput**: `POST /api/v1/cases/{id}/images` with the file as the
//!   raw body, for a ~4 MB JPEG, a ~200 MB DICOM and a ~1 GB DICOM: the file
//!   size over the wall time of the request (sent to `201` read), the median
//!   of several runs. Every upload goes to a new case and carries bytes no
//!   earlier upload had, so dedupe never skips the work or the `fsync`.
//! - **Concurrency**: 50 distinct small photos uploaded at once, each to its
//!   own case, in uploads per second.
//! - **Memory**: the server's resident set around every upload: `VmHWM`
//!   reset just before and read just after (and `VmRSS` sampled every
//!   10 ms), then read again once the derive job the upload queued has run.
//!   The target, < 100 MB, is for the ~1 GB DICOM uploads themselves.
//! - **CPU**: the server's and this client's CPU time during each request,
//!   as a share of its wall time: where the time goes.
//!
//! The baseline is the work ingest cannot avoid: read the file in 256 KiB
//! chunks, hash them with sha256, write them to a new file, `fsync` the file
//! and then its directory. It runs in the same process run, on the same
//! filesystem (the temporary directory also holds the server's data), with
//! no network and no parsing. relay/baseline therefore says what HTTP,
//! validation and the catalog cost on top of durable, verified storage; the
//! target for large files is ≥ 0.7. Absolute MB/s depend on the machine and
//! its neighbours, so the ratio is the number to watch. Baseline and relay
//! alternate run by run, and before every timed step (untimed) the server's
//! job queue is left to drain and the filesystem is flushed, so no step
//! pays for the background work or the writeback of another.
//!
//! The inputs are generated at start: real formats, synthetic content (noise
//! over a gradient for photos, a 16-bit multi-frame secondary capture for
//! DICOM). The photos carry no EXIF, so no location is rewritten. reqwest is
//! built without its `stream` feature here, so each body is read into
//! memory before its request is timed, and sent from there.
//!
//! Run with `cargo bench --bench ingest`. The numbers are printed as a table
//! and written as JSON to `target/bench-ingest.json`. Missing a target is
//! reported, never a failure: the process fails only when it cannot measure.

use std::collections::VecDeque;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

/// The chunk size of the baseline's read-hash-write loop.
const CHUNK: usize = 256 * 1024;
/// Decimal megabytes, as disks and networks count them.
const MB: f64 = 1e6;

const JPEG_RUNS: usize = 5;
const DICOM_RUNS: usize = 5;
const BIG_DICOM_RUNS: usize = 3;
const SMALL_PHOTOS: usize = 50;
const SMALL_ROUNDS: usize = 3;

/// ~12 MP, a phone camera's size; with this noise, ~4 MB at quality 90.
const PHOTO_SIZE: (u32, u32) = (4032, 3024);
/// ~0.7 MP; ~230 KB at quality 90.
const SMALL_PHOTO_SIZE: (u32, u32) = (960, 720);
const NOISE: i32 = 10;
const JPEG_QUALITY: u8 = 90;

/// One 512 × 512 frame of 16-bit pixels.
const DICOM_SIDE: u16 = 512;
const FRAME_BYTES: usize = 512 * 512 * 2;
const DICOM_BYTES: usize = 200_000_000;
const BIG_DICOM_BYTES: usize = 1_000_000_000;

const LARGE_RATIO_TARGET: f64 = 0.7;
const RSS_TARGET_MB: f64 = 100.0;
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
const QUEUE_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

fn main() -> Result<()> {
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let work = tempfile::Builder::new()
        .prefix("relay-bench-ingest-")
        .tempdir()
        .context("create the temporary directory")?;
    eprintln!("bench: working in {}", work.path().display());
    let inputs = Inputs::generate(&work.path().join("inputs"))?;
    let baseline_dir = work.path().join("baseline");
    std::fs::create_dir(&baseline_dir).context("create the baseline directory")?;
    let server = Server::start(work.path())?;
    let api = Api::connect(&server)?;
    let report = measure(&api, server.pid(), &inputs, &baseline_dir)?;
    server.stop()?;
    let elapsed = started.elapsed();
    print_report(&report, cores, elapsed);
    let json_path = write_json(&report, cores, elapsed)?;
    println!("JSON: {}", json_path.display());
    work.close().context("remove the temporary directory")?;
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

// --- inputs ------------------------------------------------------------------

/// Every file the benchmark uploads, each distinct from all the others.
#[derive(Debug)]
struct Inputs {
    /// One ~4 MB JPEG per run.
    jpegs: Vec<PathBuf>,
    /// One ~200 MB DICOM per run.
    dicoms: Vec<PathBuf>,
    /// One ~1 GB DICOM per run; the memory check watches these.
    big_dicoms: Vec<PathBuf>,
    /// `SMALL_ROUNDS` rounds of `SMALL_PHOTOS` small JPEGs.
    photos: Vec<Vec<PathBuf>>,
    /// A small JPEG uploaded once, untimed, before anything is measured.
    warm_up: PathBuf,
}

impl Inputs {
    fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir(dir).context("create the inputs directory")?;
        eprintln!("bench: generating inputs");
        let mut seed = 0;
        let mut next_seed = || {
            seed += 1;
            seed
        };
        let jpegs = (0..JPEG_RUNS)
            .map(|i| write_photo(&dir.join(format!("photo-{i}.jpg")), PHOTO_SIZE, next_seed()))
            .collect::<Result<Vec<_>>>()?;
        let warm_up = write_photo(&dir.join("warm-up.jpg"), SMALL_PHOTO_SIZE, next_seed())?;
        let mut photos = Vec::with_capacity(SMALL_ROUNDS);
        for round in 0..SMALL_ROUNDS {
            let paths = (0..SMALL_PHOTOS)
                .map(|i| {
                    let path = dir.join(format!("small-{round}-{i}.jpg"));
                    write_photo(&path, SMALL_PHOTO_SIZE, next_seed())
                })
                .collect::<Result<Vec<_>>>()?;
            photos.push(paths);
        }
        let dicoms = write_dicoms(dir, "ct-200mb", frames_for(DICOM_BYTES), DICOM_RUNS)?;
        let big_dicoms = write_dicoms(dir, "ct-1gb", frames_for(BIG_DICOM_BYTES), BIG_DICOM_RUNS)?;
        // Nothing the generation left dirty may be flushed by a measured fsync.
        sync_path(dir)?;
        Ok(Self {
            jpegs,
            dicoms,
            big_dicoms,
            photos,
            warm_up,
        })
    }
}

/// A small, fast, seedable generator (splitmix64): no extra dependency.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Noise of ±`NOISE` over a colour gradient: compresses like a real photo
/// (neither flat nor random), and a different seed gives different bytes.
fn noisy_photo((width, height): (u32, u32), seed: u64) -> image::RgbImage {
    let mut rng = SplitMix(seed);
    let span = 2 * NOISE + 1;
    image::RgbImage::from_fn(width, height, |x, y| {
        let bits = rng.next();
        let noise = |shift: u32| ((bits >> shift) % span as u64) as i32 - NOISE;
        let channel = |base: u32, shift: u32| (base as i32 + noise(shift)).clamp(0, 255) as u8;
        image::Rgb([
            channel(x * 255 / width, 0),
            channel(y * 255 / height, 16),
            channel((x + y) * 255 / (width + height), 32),
        ])
    })
}

fn write_photo(path: &Path, size: (u32, u32), seed: u64) -> Result<PathBuf> {
    let file = File::create(path).context(format!("create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&noisy_photo(size, seed))
        .context(format!("encode {}", path.display()))?;
    out.flush().context(format!("write {}", path.display()))?;
    Ok(path.to_owned())
}

fn frames_for(bytes: usize) -> usize {
    bytes.div_ceil(FRAME_BYTES)
}

/// A unique UID under the `2.25` (UUID-derived) root, of even length so it
/// needs no padding: `2.25.1` then 38 digits from the sha256 of `label`.
fn uid(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    let mut high = [0u8; 16];
    high.copy_from_slice(&digest[..16]);
    let n = u128::from_be_bytes(high) % 10u128.pow(38);
    format!("2.25.1{n:038}")
}

/// A multi-frame 16-bit secondary capture: 512 × 512 frames of Pixel Data
/// (OW), explicit VR little endian, with every identifier Relay requires.
fn dicom_object(label: &str, frames: usize) -> Result<FileDicomObject<InMemDicomObject>> {
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let short = |tag, value: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(value));
    let object = InMemDicomObject::from_element_iter([
        text(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::MULTI_FRAME_GRAYSCALE_WORD_SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        text(tags::SOP_INSTANCE_UID, VR::UI, &uid(&format!("{label}/0"))),
        text(tags::STUDY_DATE, VR::DA, "20240101"),
        text(tags::MODALITY, VR::CS, "OT"),
        text(tags::CONVERSION_TYPE, VR::CS, "WSD"),
        text(tags::PATIENT_NAME, VR::PN, "Bench^Synthetic"),
        text(tags::PATIENT_ID, VR::LO, "BENCH-0001"),
        text(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &uid(&format!("{label}/study")),
        ),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &uid(&format!("{label}/series")),
        ),
        short(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        short(tags::ROWS, DICOM_SIDE),
        short(tags::COLUMNS, DICOM_SIDE),
        short(tags::BITS_ALLOCATED, 16),
        short(tags::BITS_STORED, 12),
        short(tags::HIGH_BIT, 11),
        short(tags::PIXEL_REPRESENTATION, 0),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::from(pixel_data(frames)),
        ),
    ]);
    object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .context("build the DICOM file meta group")
}

/// 12-bit pixels, little endian, a pattern that changes with each frame.
fn pixel_data(frames: usize) -> Vec<u8> {
    let side = usize::from(DICOM_SIDE);
    let mut bytes = Vec::with_capacity(frames * FRAME_BYTES);
    for frame in 0..frames {
        for y in 0..side {
            for x in 0..side {
                let value = (((x ^ y) + frame * 7) & 0x0FFF) as u16;
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    bytes
}

/// Writes `count` files of one object, each with its own SOP Instance UID.
fn write_dicoms(dir: &Path, label: &str, frames: usize, count: usize) -> Result<Vec<PathBuf>> {
    let mut object = dicom_object(label, frames)?;
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        let instance = uid(&format!("{label}/{i}"));
        object.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(instance.as_str()),
        ));
        let meta = object.meta_mut();
        meta.media_storage_sop_instance_uid = instance;
        meta.update_information_group_length();
        let path = dir.join(format!("{label}-{i}.dcm"));
        object
            .write_to_file(&path)
            .context(format!("write {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// fsyncs every file in `dir`, then `dir` itself.
fn sync_path(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).context(format!("list {}", dir.display()))? {
        let path = entry.context("read a directory entry")?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .context(format!("sync {}", path.display()))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(format!("sync {}", dir.display()))
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .context(format!("stat {}", path.display()))?
        .len())
}

// --- the baseline --------------------------------------------------------------

/// Reads `src` in 256 KiB chunks through sha256 into a new file in `dir`,
/// fsyncs the file, then the directory; returns the time it took. The copy
/// stays until [`remove_copies`].
fn baseline_store(src: &Path, dir: &Path, name: &str) -> Result<Duration> {
    let dest = dir.join(name);
    let started = Instant::now();
    let mut input = File::open(src).context(format!("open {}", src.display()))?;
    let mut output = File::create_new(&dest).context(format!("create {}", dest.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = input
            .read(&mut buffer)
            .context(format!("read {}", src.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .context(format!("write {}", dest.display()))?;
    }
    output
        .sync_all()
        .context(format!("sync {}", dest.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(format!("sync {}", dir.display()))?;
    std::hint::black_box(hasher.finalize());
    Ok(started.elapsed())
}

/// Removes the baseline's copies (untimed), so the disk does not fill up.
fn remove_copies(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).context(format!("list {}", dir.display()))? {
        let path = entry.context("read a directory entry")?.path();
        std::fs::remove_file(&path).context(format!("remove {}", path.display()))?;
    }
    Ok(())
}

/// The baseline for many small files, one after the other.
fn baseline_sequential(files: &[PathBuf], dir: &Path, round: usize) -> Result<Duration> {
    let started = Instant::now();
    for (i, file) in files.iter().enumerate() {
        baseline_store(file, dir, &format!("seq-{round}-{i}"))?;
    }
    let took = started.elapsed();
    remove_copies(dir)?;
    Ok(took)
}

/// The baseline for many small files, all at once (one thread each, like
/// the server's one request each).
fn baseline_concurrent(files: &[PathBuf], dir: &Path, round: usize) -> Result<Duration> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, file)| {
                scope.spawn(move || baseline_store(file, dir, &format!("par-{round}-{i}")))
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| "a baseline thread panicked")?
                .map(drop)
        })
    })?;
    let took = started.elapsed();
    remove_copies(dir)?;
    Ok(took)
}

// --- the server ------------------------------------------------------------------

/// `relay` run in `dir` (so it uses `./relay-data`), without any `RELAY_*`
/// or `RUST_LOG` from the environment running the benchmark.
fn relay_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
    command.current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RELAY_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `relay admin ARGS…`; returns what it printed, trimmed.
fn admin(dir: &Path, args: &[&str]) -> Result<String> {
    let output = relay_command(dir)
        .arg("admin")
        .args(args)
        .output()
        .context("run relay admin")?;
    if !output.status.success() {
        return Err(format!(
            "relay admin {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)
        .context("relay admin output")?
        .trim()
        .to_owned())
}

/// A running `relay serve` with an office user's token.
#[derive(Debug)]
struct Server {
    child: Child,
    base: String,
    token: String,
    /// The last lines the server logged, for error messages.
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    fn start(dir: &Path) -> Result<Self> {
        let office = admin(dir, &["office", "create", "--name", "Bench Practice"])?;
        let user = admin(
            dir,
            &[
                "user", "create", "--office", &office, "--name", "Bench", "--role", "office",
            ],
        )?;
        let token = admin(dir, &["token", "create", "--user", &user])?;
        let mut child = relay_command(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--max-upload-bytes", "2000000000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start relay serve")?;
        let stderr = child.stderr.take().ok_or("relay serve has no stderr")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let listening = follow_log(stderr, log.clone());
        let mut server = Self {
            child,
            base: String::new(),
            token,
            log,
        };
        match listening.recv_timeout(SERVER_START_TIMEOUT) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => {
                return Err(format!("relay serve did not start:\n{}", server.log_tail()).into());
            }
        }
        eprintln!(
            "bench: relay serve (pid {}) at {}",
            server.pid(),
            server.base
        );
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// SIGTERM, as an orchestrator would, then wait for a clean exit.
    fn stop(mut self) -> Result<()> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("run kill")?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed").into());
        }
        let deadline = Instant::now() + SERVER_STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("wait for relay")? {
                if !status.success() {
                    eprintln!(
                        "bench: warning: relay exited with {status}:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("relay did not stop within {SERVER_STOP_TIMEOUT:?} of SIGTERM").into())
    }
}

impl Drop for Server {
    /// On an early return the server must not outlive the benchmark.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Drains the server's stderr on a thread (so it never blocks on a full
/// pipe), keeping the last lines; sends the address it listens on.
fn follow_log(
    stderr: std::process::ChildStderr,
    log: Arc<Mutex<VecDeque<String>>>,
) -> mpsc::Receiver<String> {
    const KEEP: usize = 50;
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
                if lines.len() == KEEP {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    });
    rx
}

/// A field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`…) in bytes.
fn proc_status(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).context(format!("read {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or(format!("{path} has no {field}"))?;
    Ok(kib * 1024)
}

/// User + system CPU time of a process (`self` or a pid), in seconds, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).context(format!("read {path}"))?;
    // Fields after the command name, which is in parentheses; utime is the
    // 14th field overall, the 12th after the name.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        return Err(format!("{path} has no utime/stime").into());
    };
    Ok((user + system) as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK`, once (100 on Linux, whenever it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Resets the peak resident set (`VmHWM`) to the current one (Linux ≥ 4.0).
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples `VmRSS` every 10 ms on a thread until stopped (or dropped, on
/// an early return); yields the peak.
#[derive(Debug)]
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(proc_status(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .ok_or("the RSS sampler was already finished")?
            .join()
            .map_err(|_| "the RSS sampler panicked".into())
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// --- the client --------------------------------------------------------------------

/// The HTTP side: a reqwest client on its own runtime, driven from the
/// (synchronous) measuring code.
#[derive(Debug)]
struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn connect(server: &Server) -> Result<Self> {
        // reqwest is built with `rustls-no-provider` in this workspace: it
        // needs the process's provider even for plain HTTP.
        relay_workers::tls::install_crypto_provider();
        Ok(Self {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the client runtime")?,
            http: reqwest::Client::new(),
            base: server.base.clone(),
            token: server.token.clone(),
        })
    }

    /// A new draft case (see `referral()` in tests/support/mod.rs).
    fn create_case(&self, specialty: &str) -> Result<String> {
        self.runtime
            .block_on(create_case(&self.http, &self.base, &self.token, specialty))
    }

    /// Uploads `body` into `case`; requires `201`; returns the wall time.
    fn upload(&self, case: &str, body: Vec<u8>, content_type: &str) -> Result<Duration> {
        self.runtime.block_on(upload(
            self.http.clone(),
            self.upload_url(case),
            self.token.clone(),
            body,
            content_type.to_owned(),
        ))
    }

    /// Starts every upload at once; returns the wall time until the last.
    fn upload_all(&self, uploads: Vec<(String, Vec<u8>)>, content_type: &str) -> Result<Duration> {
        self.runtime.block_on(async {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (case, body) in uploads {
                tasks.spawn(upload(
                    self.http.clone(),
                    self.upload_url(&case),
                    self.token.clone(),
                    body,
                    content_type.to_owned(),
                ));
            }
            while let Some(done) = tasks.join_next().await {
                done.context("an upload task failed")??;
            }
            Ok(started.elapsed())
        })
    }

    /// Polls `/metrics` until no job is queued or running, for at most
    /// `QUEUE_IDLE_TIMEOUT` (then warns and goes on).
    fn wait_for_idle_queue(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let pending = self
                .runtime
                .block_on(pending_jobs(&self.http, &self.base))?;
            if pending == 0 {
                return Ok(());
            }
            if started.elapsed() > QUEUE_IDLE_TIMEOUT {
                eprintln!(
                    "bench: warning: {pending} jobs still pending after {QUEUE_IDLE_TIMEOUT:?}"
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn upload_url(&self, case: &str) -> String {
        format!("{}/api/v1/cases/{case}/images", self.base)
    }
}

async fn create_case(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    specialty: &str,
) -> Result<String> {
    let referral = json!({
        "patient": {"name": "Bench Synthetic", "birth_date": "1961-07-14", "sex": "male", "mrn": "BENCH-0001"},
        "specialty": specialty,
        "priority": "routine",
        "question": "Benchmark upload: synthetic image, no clinical question.",
        "history": "None: generated by benches/ingest.rs.",
        "clinical": {"body_site": "left forearm", "duration": "3 months"}
    });
    let response = http
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(token)
        .json(&referral)
        .send()
        .await
        .context("POST /api/v1/cases")?;
    let status = response.status();
    let body: Value = response.json().await.context("read the case")?;
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("POST /api/v1/cases answered {status}: {body}").into());
    }
    Ok(body["id"].as_str().ok_or("the case has no id")?.to_owned())
}

async fn upload(
    http: reqwest::Client,
    url: String,
    token: String,
    body: Vec<u8>,
    content_type: String,
) -> Result<Duration> {
    let started = Instant::now();
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .context(format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.context("read the receipt")?;
    let elapsed = started.elapsed();
    if status != reqwest::StatusCode::CREATED {
        return Err(format!("POST {url} answered {status}, not 201: {text}").into());
    }
    Ok(elapsed)
}

/// Jobs queued or running, summed from `relay_jobs{kind,state}` in
/// `/metrics` (0 from a server without a queue).
async fn pending_jobs(http: &reqwest::Client, base: &str) -> Result<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .error_for_status()
        .context("GET /metrics")?
        .text()
        .await
        .context("read /metrics")?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("relay_jobs{"))
        .filter(|line| line.contains(r#"state="queued""#) || line.contains(r#"state="running""#))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|n| n.max(0.0) as u64)
        .sum())
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).context(format!("read {}", path.display()))
}

// --- measuring -----------------------------------------------------------------------

/// The server around one timed step: its resident set in bytes, and the
/// CPU time both processes spent.
#[derive(Debug)]
struct ServerSample {
    /// The step's wall time.
    wall: Duration,
    /// The server's user + system CPU time during the step, in seconds.
    server_cpu: f64,
    /// This process's (the client's) user + system CPU time, in seconds.
    client_cpu: f64,
    before: u64,
    /// `VmHWM` right after the step; since the reset when `peak_was_reset`.
    hwm: u64,
    peak_was_reset: bool,
    /// The largest `VmRSS` seen every 10 ms during the step.
    sampled_peak: u64,
    after: u64,
    /// `VmHWM` once the jobs the step queued (derive) have run too.
    hwm_with_jobs: u64,
}

impl ServerSample {
    fn peak(&self) -> u64 {
        self.hwm.max(self.sampled_peak)
    }
}

/// The highest peak during the steps themselves.
fn step_peak(samples: &[ServerSample]) -> u64 {
    samples.iter().map(ServerSample::peak).max().unwrap_or(0)
}

/// The server's CPU time per step, as a share of the step's wall time
/// (1.0 = one core busy throughout), the median over the steps; the same
/// for the client.
fn cpu_shares(samples: &[ServerSample]) -> (f64, f64) {
    let share = |cpu: fn(&ServerSample) -> f64| {
        median(
            &samples
                .iter()
                .map(|s| cpu(s) / s.wall.as_secs_f64())
                .collect::<Vec<_>>(),
        )
    };
    (share(|s| s.server_cpu), share(|s| s.client_cpu))
}

/// The highest peak once the steps' background jobs had run too.
fn jobs_peak(samples: &[ServerSample]) -> u64 {
    samples.iter().map(|s| s.hwm_with_jobs).max().unwrap_or(0)
}

/// Watches the server's memory and both processes' CPU around one timed
/// step.
#[derive(Debug)]
struct Watch {
    pid: u32,
    before: u64,
    peak_was_reset: bool,
    sampler: RssSampler,
    server_cpu: f64,
    client_cpu: f64,
    started: Instant,
}

impl Watch {
    fn start(pid: u32) -> Result<Self> {
        Ok(Self {
            pid,
            before: proc_status(pid, "VmRSS")?,
            peak_was_reset: reset_peak_rss(pid),
            sampler: RssSampler::start(pid),
            server_cpu: cpu_seconds(&pid.to_string())?,
            client_cpu: cpu_seconds("self")?,
            started: Instant::now(),
        })
    }

    /// Call as soon as the step is done: reads the CPU times and the peak,
    /// then waits for the jobs the step queued and reads the peak again.
    fn finish(self, api: &Api) -> Result<ServerSample> {
        let wall = self.started.elapsed();
        let server_cpu = cpu_seconds(&self.pid.to_string())? - self.server_cpu;
        let client_cpu = cpu_seconds("self")? - self.client_cpu;
        let sampled_peak = self.sampler.finish()?;
        let hwm = proc_status(self.pid, "VmHWM")?;
        let after = proc_status(self.pid, "VmRSS")?;
        api.wait_for_idle_queue()?;
        Ok(ServerSample {
            wall,
            server_cpu,
            client_cpu,
            before: self.before,
            hwm,
            peak_was_reset: self.peak_was_reset,
            sampled_peak,
            after,
            hwm_with_jobs: proc_status(self.pid, "VmHWM")?,
        })
    }
}

/// Relay and baseline throughput for one kind of file, run by run.
#[derive(Debug)]
struct Throughput {
    name: String,
    /// The size of one file (they differ by a few bytes at most).
    bytes: u64,
    relay_mb_s: Vec<f64>,
    baseline_mb_s: Vec<f64>,
    /// The server (memory, CPU) around each upload.
    server: Vec<ServerSample>,
}

impl Throughput {
    fn relay(&self) -> f64 {
        median(&self.relay_mb_s)
    }

    fn baseline(&self) -> f64 {
        median(&self.baseline_mb_s)
    }

    fn ratio(&self) -> f64 {
        self.relay() / self.baseline()
    }

    fn is_large(&self) -> bool {
        self.bytes >= 100_000_000
    }
}

/// Small files: relay uploads/s next to the baseline's files/s.
#[derive(Debug)]
struct Concurrency {
    files: usize,
    mean_bytes: u64,
    relay_per_s: Vec<f64>,
    baseline_sequential_per_s: Vec<f64>,
    baseline_concurrent_per_s: Vec<f64>,
    /// The server (memory, CPU) around each round of uploads.
    server: Vec<ServerSample>,
}

impl Concurrency {
    fn relay(&self) -> f64 {
        median(&self.relay_per_s)
    }

    /// Like for like: the baseline with every file at once.
    fn baseline(&self) -> f64 {
        median(&self.baseline_concurrent_per_s)
    }

    fn ratio(&self) -> f64 {
        self.relay() / self.baseline()
    }
}

#[derive(Debug)]
struct Report {
    /// ~1 GB DICOM, measured first: also the memory check.
    big: Throughput,
    jpeg: Throughput,
    dicom: Throughput,
    concurrency: Concurrency,
}

impl Report {
    fn throughput(&self) -> [&Throughput; 3] {
        [&self.jpeg, &self.dicom, &self.big]
    }
}

fn measure(api: &Api, pid: u32, inputs: &Inputs, baseline_dir: &Path) -> Result<Report> {
    eprintln!("bench: warm-up");
    let case = api.create_case("dermatology")?;
    api.upload(&case, read_input(&inputs.warm_up)?, "image/jpeg")?;
    // First, while nothing else has grown the server's heap.
    eprintln!("bench: {BIG_DICOM_RUNS} × ~1 GB DICOM, watching the server's memory");
    let big = throughput(api, pid, "DICOM", &inputs.big_dicoms, baseline_dir)?;
    eprintln!("bench: {JPEG_RUNS} × ~4 MB JPEG");
    let jpeg = throughput(api, pid, "JPEG", &inputs.jpegs, baseline_dir)?;
    eprintln!("bench: {DICOM_RUNS} × ~200 MB DICOM");
    let dicom = throughput(api, pid, "DICOM", &inputs.dicoms, baseline_dir)?;
    eprintln!("bench: {SMALL_ROUNDS} rounds of {SMALL_PHOTOS} concurrent small photos");
    let concurrency = concurrency(api, pid, &inputs.photos, baseline_dir)?;
    Ok(Report {
        big,
        jpeg,
        dicom,
        concurrency,
    })
}

/// Uploads each file and runs the baseline on it, alternating which goes
/// first, so drift in the machine's load touches both alike.
fn throughput(
    api: &Api,
    pid: u32,
    kind: &str,
    files: &[PathBuf],
    baseline_dir: &Path,
) -> Result<Throughput> {
    let bytes = file_size(files.first().ok_or("no input files")?)?;
    let content_type = if kind == "DICOM" {
        "application/dicom"
    } else {
        "image/jpeg"
    };
    let mut result = Throughput {
        name: format!("ingest {} {kind}", human_size(bytes)),
        bytes,
        relay_mb_s: Vec::with_capacity(files.len()),
        baseline_mb_s: Vec::with_capacity(files.len()),
        server: Vec::with_capacity(files.len()),
    };
    for (i, file) in files.iter().enumerate() {
        let name = format!("{kind}-{bytes}-{i}");
        if i % 2 == 1 {
            result
                .baseline_mb_s
                .push(baseline_run(api, file, baseline_dir, &name)?);
        }
        let (mb_s, server) = relay_run(api, pid, file, content_type)?;
        result.relay_mb_s.push(mb_s);
        result.server.push(server);
        if i % 2 == 0 {
            result
                .baseline_mb_s
                .push(baseline_run(api, file, baseline_dir, &name)?);
        }
    }
    Ok(result)
}

/// One baseline store of `file`, in MB/s.
fn baseline_run(api: &Api, file: &Path, baseline_dir: &Path, name: &str) -> Result<f64> {
    let size = file_size(file)?;
    settle(api, baseline_dir)?;
    let took = baseline_store(file, baseline_dir, name)?;
    remove_copies(baseline_dir)?;
    Ok(mb_per_s(size, took))
}

/// One upload of `file` into a new case, in MB/s, with the server around
/// it.
fn relay_run(api: &Api, pid: u32, file: &Path, content_type: &str) -> Result<(f64, ServerSample)> {
    let size = file_size(file)?;
    let specialty = if content_type == "application/dicom" {
        "radiology"
    } else {
        "dermatology"
    };
    let case = api.create_case(specialty)?;
    let body = read_input(file)?;
    settle(api, file)?;
    let watch = Watch::start(pid)?;
    let took = api.upload(&case, body, content_type)?;
    Ok((mb_per_s(size, took), watch.finish(api)?))
}

/// Lets the machine go quiet before a measured step, untimed: waits until
/// the server has no derive (or other) job queued or running, so no step
/// shares the cores with the background work of the one before, then
/// flushes the filesystem holding `path` (`sync -f`, i.e. syncfs), so no
/// step pays for writeback left by another.
fn settle(api: &Api, path: &Path) -> Result<()> {
    api.wait_for_idle_queue()?;
    let status = Command::new("sync")
        .arg("-f")
        .arg(path)
        .status()
        .context("run sync -f")?;
    if !status.success() {
        return Err(format!("sync -f {} failed", path.display()).into());
    }
    Ok(())
}

/// Rounds of many small photos: the baseline one by one, the baseline all
/// at once, then relay all at once.
fn concurrency(
    api: &Api,
    pid: u32,
    rounds: &[Vec<PathBuf>],
    baseline_dir: &Path,
) -> Result<Concurrency> {
    let mut result = Concurrency {
        files: rounds.first().map_or(0, Vec::len),
        mean_bytes: 0,
        relay_per_s: Vec::new(),
        baseline_sequential_per_s: Vec::new(),
        baseline_concurrent_per_s: Vec::new(),
        server: Vec::new(),
    };
    let mut total_bytes = 0;
    for (round, files) in rounds.iter().enumerate() {
        for file in files {
            total_bytes += file_size(file)?;
        }
        let n = files.len() as f64;
        settle(api, baseline_dir)?;
        let took = baseline_sequential(files, baseline_dir, round)?;
        result
            .baseline_sequential_per_s
            .push(n / took.as_secs_f64());
        settle(api, baseline_dir)?;
        let took = baseline_concurrent(files, baseline_dir, round)?;
        result
            .baseline_concurrent_per_s
            .push(n / took.as_secs_f64());
        let uploads = files
            .iter()
            .map(|file| Ok((api.create_case("dermatology")?, read_input(file)?)))
            .collect::<Result<Vec<_>>>()?;
        settle(api, baseline_dir)?;
        let watch = Watch::start(pid)?;
        let took = api.upload_all(uploads, "image/jpeg")?;
        result.relay_per_s.push(n / took.as_secs_f64());
        result.server.push(watch.finish(api)?);
    }
    let count = rounds.iter().map(Vec::len).sum::<usize>().max(1);
    result.mean_bytes = total_bytes / count as u64;
    Ok(result)
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / MB / took.as_secs_f64()
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

fn human_size(bytes: u64) -> String {
    let mb = bytes as f64 / MB;
    if mb >= 999.5 {
        format!("{:.0} GB", mb / 1000.0)
    } else if mb >= 10.0 {
        format!("{mb:.0} MB")
    } else if mb >= 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{:.0} KB", bytes as f64 / 1e3)
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / MB
}

// --- reporting -------------------------------------------------------------------------

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn large_ratio_met(report: &Report) -> bool {
    report
        .throughput()
        .iter()
        .filter(|t| t.is_large())
        .all(|t| t.ratio() >= LARGE_RATIO_TARGET)
}

fn rss_met(report: &Report) -> bool {
    megabytes(step_peak(&report.big.server)) < RSS_TARGET_MB
}

fn print_report(report: &Report, cores: usize, elapsed: Duration) {
    println!();
    println!("Relay ingest benchmark");
    println!(
        "measured: relay serve over loopback HTTP vs. read+sha256+write+fsync(file, dir) \
         on the same disk, in the same run; medians of n runs; {cores} cores; {:.0} s in all",
        elapsed.as_secs_f64()
    );
    println!("server RSS: peak during the uploads (and once the derive jobs they queued had run)");
    println!();
    print_table(report);
    println!();
    print_cpu(report);
    println!();
    println!(
        "target: relay/baseline ≥ {LARGE_RATIO_TARGET} for large files (≥ 100 MB): {}",
        verdict(large_ratio_met(report))
    );
    println!(
        "target: server peak RSS < {RSS_TARGET_MB:.0} MB during the {} uploads: {}",
        human_size(report.big.bytes),
        verdict(rss_met(report))
    );
}

fn print_table(report: &Report) {
    for t in report.throughput() {
        println!(
            "{:<22} relay {:>7.1} MB/s      baseline {:>7.1} MB/s     ratio {:.2}   n={}   server RSS {:.0} MB ({:.0} MB)",
            t.name,
            t.relay(),
            t.baseline(),
            t.ratio(),
            t.relay_mb_s.len(),
            megabytes(step_peak(&t.server)),
            megabytes(jobs_peak(&t.server)),
        );
    }
    let c = &report.concurrency;
    println!(
        "{:<22} relay {:>7.1} uploads/s baseline {:>7.1} files/s  ratio {:.2}   n={}   server RSS {:.0} MB ({:.0} MB)",
        concurrency_name(c),
        c.relay(),
        c.baseline(),
        c.ratio(),
        c.relay_per_s.len(),
        megabytes(step_peak(&c.server)),
        megabytes(jobs_peak(&c.server)),
    );
    println!(
        "{:<22} (baseline: {} files at once; one after the other {:.1} files/s)",
        "",
        c.files,
        median(&c.baseline_sequential_per_s),
    );
    let big = &report.big.server;
    println!(
        "{:<22} server RSS before {:.1} MB   peak during upload {:.1} MB   after {:.1} MB   \
         peak once its derive job ran {:.0} MB   n={}",
        format!("memory {} DICOM", human_size(report.big.bytes)),
        megabytes(big.first().map_or(0, |s| s.before)),
        megabytes(step_peak(big)),
        megabytes(big.last().map_or(0, |s| s.after)),
        megabytes(jobs_peak(big)),
        big.len(),
    );
    if !big.iter().all(|s| s.peak_was_reset) {
        println!("  (VmHWM could not be reset: each peak counts since the server started)");
    }
}

fn concurrency_name(c: &Concurrency) -> String {
    format!("{} × {} photos", c.files, human_size(c.mean_bytes))
}

/// Where the time goes: how busy each side kept the CPU during a request.
fn print_cpu(report: &Report) {
    println!("CPU time during the request over its wall time (1.00 = one core busy throughout):");
    let rows = report
        .throughput()
        .map(|t| (t.name.clone(), cpu_shares(&t.server)));
    let c = &report.concurrency;
    for (name, (server, client)) in rows
        .into_iter()
        .chain([(concurrency_name(c), cpu_shares(&c.server))])
    {
        println!("{name:<22} server {server:.2}   client {client:.2}");
    }
}

fn server_json(samples: &[ServerSample]) -> Value {
    json!({
        "peak_mb": megabytes(step_peak(samples)),
        "peak_with_jobs_mb": megabytes(jobs_peak(samples)),
        "peak_was_reset": samples.iter().all(|s| s.peak_was_reset),
        "server_cpu_share": cpu_shares(samples).0,
        "client_cpu_share": cpu_shares(samples).1,
        "per_run": samples.iter().map(|s| json!({
            "wall_s": s.wall.as_secs_f64(),
            "server_cpu_s": s.server_cpu,
            "client_cpu_s": s.client_cpu,
            "rss_before_mb": megabytes(s.before),
            "vm_hwm_mb": megabytes(s.hwm),
            "sampled_peak_mb": megabytes(s.sampled_peak),
            "rss_after_mb": megabytes(s.after),
            "vm_hwm_with_jobs_mb": megabytes(s.hwm_with_jobs),
        })).collect::<Vec<_>>(),
    })
}

fn throughput_json(t: &Throughput) -> Value {
    json!({
        "name": t.name,
        "bytes": t.bytes,
        "runs": t.relay_mb_s.len(),
        "relay_mb_s": t.relay(),
        "baseline_mb_s": t.baseline(),
        "ratio": t.ratio(),
        "relay_runs_mb_s": t.relay_mb_s,
        "baseline_runs_mb_s": t.baseline_mb_s,
        "server": server_json(&t.server),
    })
}

fn write_json(report: &Report, cores: usize, elapsed: Duration) -> Result<PathBuf> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target_dir).context(format!("create {}", target_dir.display()))?;
    let path = target_dir.join("bench-ingest.json");
    let c = &report.concurrency;
    let value = json!({
        "method": {
            "transport": "loopback HTTP to the real `relay serve` binary (default workers)",
            "baseline": "read in 256 KiB chunks, sha256, write a new file, fsync file and directory; same run, same filesystem",
            "between_steps": "untimed: wait for the job queue to drain, then sync -f",
            "statistic": "median of runs",
            "units": "MB = 10^6 bytes",
            "cores": cores,
            "seconds": elapsed.as_secs_f64(),
        },
        "throughput": report.throughput().map(throughput_json),
        "concurrency": {
            "files": c.files,
            "mean_bytes": c.mean_bytes,
            "rounds": c.relay_per_s.len(),
            "relay_uploads_per_s": c.relay(),
            "baseline_concurrent_files_per_s": c.baseline(),
            "baseline_sequential_files_per_s": median(&c.baseline_sequential_per_s),
            "ratio": c.ratio(),
            "relay_rounds": c.relay_per_s,
            "baseline_concurrent_rounds": c.baseline_concurrent_per_s,
            "baseline_sequential_rounds": c.baseline_sequential_per_s,
            "server": server_json(&c.server),
        },
        "targets": {
            "large_file_ratio_min": LARGE_RATIO_TARGET,
            "large_file_ratio_met": large_ratio_met(report),
            "upload_peak_rss_max_mb": RSS_TARGET_MB,
            "upload_peak_rss_mb": megabytes(step_peak(&report.big.server)),
            "upload_peak_rss_met": rss_met(report),
        },
    });
    let text = serde_json::to_string_pretty(&value).context("encode the JSON report")?;
    std::fs::write(&path, text + "\n").context(format!("write {}", path.display()))?;
    Ok(path)
}
