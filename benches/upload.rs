//! `relay upload` benchmark: the office's client sending a 300-file CT
//! study to the real `relay serve` over loopback, beside the same run's
//! plain HTTP ingest of the same kind of files (`POST
//! /api/v1/cases/{id}/images` with the file as the body), one request after
//! another and also as many at once as `relay upload` sends.
//!
//! Each step gets a fresh study: the CT fixture (`fixtures/dicom/CT_small.dcm`,
//! real pixel data) copied 300 times, each copy with its own SOP Instance
//! UID under one new Study Instance UID, so no upload is deduplicated and
//! every one pays its `fsync` and commit. Each step uploads into a new
//! draft case (made untimed). The three ways alternate round by round; the
//! median of the rounds is reported, and the ratios of `relay upload` to
//! each HTTP way. `relay upload` is timed as a process, from start to exit:
//! walking the folder, hashing each file, the resumable (tus) requests with
//! their chunk and file checksums, checking each receipt, and the journal.
//! The HTTP bodies are read into memory before the clock starts (reqwest is
//! built without its `stream` feature here). The server runs with
//! `--workers 0`, so derive jobs wait in the queue instead of competing
//! with the uploads, and the filesystem is flushed before each step.
//!
//! Run with `cargo bench --bench upload`. The numbers are printed and
//! written as JSON to `target/bench-upload.json`. The process fails only
//! when it cannot measure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use futures_util::StreamExt;
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const FILES: usize = 300;
const ROUNDS: usize = 3;
/// `relay upload`'s default, and the HTTP concurrent way's.
const CONCURRENCY: usize = 4;
const MB: f64 = 1e6;

/// The ways a study goes up, in the order each round runs them.
const WAYS: [&str; 3] = ["relay upload", "HTTP sequential", "HTTP concurrent"];

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let office = admin(&data, &["office", "create", "--name", "Bench Imaging"])?;
    let user = admin(
        &data,
        &[
            "user", "create", "--office", &office, "--name", "Bench", "--role", "office",
        ],
    )?;
    let token = admin(&data, &["token", "create", "--user", &user])?;
    let token_file = dir.path().join("office.token");
    std::fs::write(&token_file, &token)?;
    let server = Server::start(&data)?;
    let base = server.base.clone();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    relay_workers::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let mut rates: Vec<Vec<(f64, f64)>> = vec![Vec::new(); WAYS.len()];
    let mut study_bytes = 0u64;
    for round in 0..ROUNDS {
        for (way, name) in WAYS.iter().enumerate() {
            let folder = dir.path().join(format!("study-{round}-{way}"));
            let files = study(&folder)?;
            study_bytes = files
                .iter()
                .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
                .sum();
            let case = runtime.block_on(create_case(&http, &base, &token))?;
            flush(dir.path());
            let elapsed = match way {
                0 => relay_upload(
                    &base,
                    &token_file,
                    &case,
                    &folder,
                    &dir.path().join(format!("state-{round}")),
                )?,
                1 => runtime.block_on(http_ingest(&http, &base, &token, &case, &files, 1))?,
                _ => runtime.block_on(http_ingest(
                    &http,
                    &base,
                    &token,
                    &case,
                    &files,
                    CONCURRENCY,
                ))?,
            };
            let seconds = elapsed.as_secs_f64();
            let (files_per_s, mb_per_s) =
                (FILES as f64 / seconds, study_bytes as f64 / MB / seconds);
            println!(
                "round {round} {name:>15}: {FILES} files in {seconds:>6.2} s = {files_per_s:>6.1} files/s, {mb_per_s:>5.2} MB/s"
            );
            rates[way].push((files_per_s, mb_per_s));
        }
    }
    drop(server);

    let medians: Vec<(f64, f64)> = rates
        .iter_mut()
        .map(|r| {
            let mut files: Vec<f64> = r.iter().map(|x| x.0).collect();
            let mut mb: Vec<f64> = r.iter().map(|x| x.1).collect();
            (median(&mut files), median(&mut mb))
        })
        .collect();
    println!(
        "\nmedian of {ROUNDS} rounds, {FILES} files ({:.1} MB) per study:",
        study_bytes as f64 / MB
    );
    for (name, (files, mb)) in WAYS.iter().zip(&medians) {
        println!("  {name:>15}: {files:>6.1} files/s, {mb:>5.2} MB/s");
    }
    let (upload, sequential, concurrent) = (medians[0].0, medians[1].0, medians[2].0);
    println!(
        "  relay upload / HTTP sequential = {:.2}, relay upload / HTTP concurrent = {:.2}",
        upload / sequential,
        upload / concurrent
    );
    let report = json!({
        "files": FILES, "rounds": ROUNDS, "concurrency": CONCURRENCY, "study_bytes": study_bytes,
        "relay_upload": {"files_per_s": medians[0].0, "mb_per_s": medians[0].1},
        "http_sequential": {"files_per_s": medians[1].0, "mb_per_s": medians[1].1},
        "http_concurrent": {"files_per_s": medians[2].0, "mb_per_s": medians[2].1},
        "ratio_to_http_sequential": upload / sequential,
        "ratio_to_http_concurrent": upload / concurrent,
        "rounds_detail": WAYS.iter().zip(&rates).map(|(name, r)| json!({
            "way": name,
            "files_per_s": r.iter().map(|x| x.0).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-upload.json");
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// `relay` with no `RELAY_*` settings from the environment running the bench.
fn relay(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RELAY_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.arg("--data-dir").arg(data);
    command
}

/// Runs `relay admin ARGS…`; returns what it printed, trimmed.
fn admin(data: &Path, args: &[&str]) -> Result<String> {
    let out = relay(data).arg("admin").args(args).output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A running `relay serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path) -> Result<Self> {
        let mut child = relay(data)
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "0"])
            .env("RUST_LOG", "warn,relay=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            base: String::new(),
        };
        server.base = format!("http://{}", rx.recv_timeout(Duration::from_secs(30))?);
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`FILES`] instances of one new CT study in `folder`.
fn study(folder: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(folder)?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom/CT_small.dcm");
    let template = dicom_object::open_file(&source)?;
    let study = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
    (0..FILES)
        .map(|i| {
            let mut object = template.clone();
            let uid = format!("{study}.{}", i + 1);
            object.put(DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(uid.as_str()),
            ));
            object.put(DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from(study.as_str()),
            ));
            object.put(DataElement::new(
                tags::INSTANCE_NUMBER,
                VR::IS,
                PrimitiveValue::from((i + 1).to_string()),
            ));
            object.meta_mut().media_storage_sop_instance_uid = uid;
            object.meta_mut().update_information_group_length();
            let path = folder.join(format!("CT{:04}.dcm", i + 1));
            object.write_to_file(&path)?;
            Ok(path)
        })
        .collect()
}

/// Writes back everything dirty (untimed), so no step pays for another's.
fn flush(dir: &Path) {
    let _ = Command::new("sync").arg("-f").arg(dir).status();
}

async fn create_case(http: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let case: serde_json::Value = http
        .post(format!("{base}/api/v1/cases"))
        .bearer_auth(token)
        .json(&json!({
            "patient": {"name": "Bench Patient", "birth_date": "1960-01-01", "sex": "other", "mrn": "B-1"},
            "specialty": "radiology", "question": "Benchmark study."
        }))
        .send()
        .await?
        .json()
        .await?;
    Ok(case["id"].as_str().ok_or("no case id")?.to_owned())
}

/// `relay upload` of `folder` into `case`, timed as a process; every file
/// must be reported uploaded.
fn relay_upload(
    base: &str,
    token_file: &Path,
    case: &str,
    folder: &Path,
    state: &Path,
) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["upload", "--server", base, "--case", case, "--json"])
        .args(["--concurrency", &CONCURRENCY.to_string()])
        .arg("--token-file")
        .arg(token_file)
        .arg("--state-dir")
        .arg(state)
        .arg(folder)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ok = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["ok"] == true)
        .count();
    if !out.status.success() || ok != FILES {
        return Err(format!(
            "relay upload: {ok} of {FILES} files uploaded ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(elapsed)
}

/// Uploads `files` into `case`, `at_once` requests at a time; every one
/// must answer `201`.
async fn http_ingest(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    case: &str,
    files: &[PathBuf],
    at_once: usize,
) -> Result<Duration> {
    let bodies: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x.dcm")
                .to_owned();
            std::fs::read(f).map(|body| (name, body))
        })
        .collect::<std::io::Result<_>>()?;
    let started = Instant::now();
    let mut answers = futures_util::stream::iter(bodies)
        .map(|(name, body)| async move {
            let response = http
                .post(format!("{base}/api/v1/cases/{case}/images?filename={name}"))
                .bearer_auth(token)
                .header("content-type", "application/dicom")
                .body(body)
                .send()
                .await?;
            let status = response.status();
            // The receipt is read, as a client would, so the connection is reused.
            response.bytes().await?;
            Ok::<_, reqwest::Error>(status)
        })
        .buffer_unordered(at_once);
    while let Some(status) = answers.next().await {
        let status = status?;
        if status.as_u16() != 201 {
            return Err(format!("upload answered {status}").into());
        }
    }
    Ok(started.elapsed())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
