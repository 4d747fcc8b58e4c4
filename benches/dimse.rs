//! C-STORE benchmark: instances per second into the real `relay serve`
//! through its DICOM door with DCMTK's `storescu` (one association for the
//! whole study), beside the same run's plain HTTP ingest of the same kind
//! of files (`POST /api/v1/cases/{id}/images`, one request after another
//! over one keep-alive connection).
//!
//! Each round makes a fresh study of `INSTANCES` real instances (the CT
//! and MR fixtures, each with its own SOP Instance UID), so no upload is
//! deduplicated and every one pays its `fsync` and commit. HTTP and C-STORE
//! alternate round by round. The wall time of C-STORE includes starting
//! `storescu` and the association; HTTP's excludes creating its case. The
//! number to watch is the ratio C-STORE/HTTP (the same ingest behind both
//! doors: ~1 means the DICOM protocol costs nothing extra).
//!
//! Run with `cargo bench --bench dimse`. The numbers are printed and
//! written as JSON to `target/bench-dimse.json`. The process fails only
//! when it cannot measure (no DCMTK, the server does not start).
//! `RELAY_BENCH_RELAY=FILE` measures another build of `relay` instead of
//! this one (an earlier commit's, say), with the same client and study, so
//! before and after can be compared in one session.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use serde_json::json;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const INSTANCES: usize = 100;
const ROUNDS: usize = 3;
const AE: &str = "BENCH_CT";

/// The `relay` binary measured: this build, or `RELAY_BENCH_RELAY`.
fn relay_binary() -> PathBuf {
    std::env::var_os("RELAY_BENCH_RELAY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_relay")))
}

fn main() -> Result<()> {
    if Command::new("storescu").arg("--version").output().is_err() {
        return Err("storescu (Debian package dcmtk) is not installed".into());
    }
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data_arg = data.display().to_string();
    let admin = |args: &[&str]| -> Result<String> {
        let out = Command::new(relay_binary())
            .args(["--data-dir", &data_arg, "admin"])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    };
    let office = admin(&["office", "create", "--name", "Bench Imaging"])?;
    admin(&["office", "set-ae", "--office", &office, "--ae-title", AE])?;
    let user = admin(&[
        "user", "create", "--office", &office, "--name", "Bench", "--role", "office",
    ])?;
    let token = admin(&["token", "create", "--user", &user])?;

    let mut server = Command::new(relay_binary())
        .args([
            "--data-dir",
            &data_arg,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dicom-port",
            "0",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = server.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut dicom = None;
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if let Some(rest) = line.split("DICOM listening on ").nth(1) {
                dicom = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send((rest.trim().to_owned(), dicom.clone()));
            }
        }
    });
    let (http_addr, dicom_addr) = rx.recv_timeout(Duration::from_secs(30))?;
    let dicom_addr = dicom_addr.ok_or("the DICOM port was not logged")?;
    let (host, port) = dicom_addr.rsplit_once(':').ok_or("bad DICOM address")?;
    let base = format!("http://{http_addr}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    relay_workers::tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let (mut http_rates, mut dimse_rates) = (Vec::new(), Vec::new());
    let mut bytes = 0u64;
    for round in 0..ROUNDS {
        for door in ["http", "c-store"] {
            let files = study(dir.path(), &format!("{round}-{door}"))?;
            bytes = files
                .iter()
                .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
                .sum();
            let elapsed = if door == "http" {
                runtime.block_on(http_ingest(&http, &base, &token, &files))?
            } else {
                let started = Instant::now();
                let out = Command::new("storescu")
                    .args(["-aet", AE, "-aec", "RELAY", host, port])
                    .args(&files)
                    .output()?;
                let elapsed = started.elapsed();
                let text = String::from_utf8_lossy(&out.stderr);
                if !out.status.success() || text.contains("Fail") {
                    return Err(format!("storescu failed: {text}").into());
                }
                elapsed
            };
            let rate = INSTANCES as f64 / elapsed.as_secs_f64();
            println!(
                "round {round} {door:>8}: {INSTANCES} instances in {:>6.2} s = {rate:>7.1} instances/s",
                elapsed.as_secs_f64()
            );
            if door == "http" {
                http_rates.push(rate)
            } else {
                dimse_rates.push(rate)
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let (http, dimse) = (median(&mut http_rates), median(&mut dimse_rates));
    println!(
        "\nmedian of {ROUNDS}: HTTP {http:.1} instances/s, C-STORE {dimse:.1} instances/s, C-STORE/HTTP = {:.2} ({INSTANCES} instances, {:.1} MB per study)",
        dimse / http,
        bytes as f64 / 1e6
    );
    let report = json!({
        "relay": if std::env::var_os("RELAY_BENCH_RELAY").is_some() { "RELAY_BENCH_RELAY" } else { "this build" },
        "instances": INSTANCES, "rounds": ROUNDS, "study_bytes": bytes,
        "http_instances_per_s": http, "cstore_instances_per_s": dimse, "ratio": dimse / http,
    });
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-dimse.json");
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

/// One study of [`INSTANCES`] files from the CT and MR fixtures.
fn study(dir: &Path, label: &str) -> Result<Vec<PathBuf>> {
    let dir = dir.join(label);
    std::fs::create_dir_all(&dir)?;
    let study = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
    (0..INSTANCES)
        .map(|i| {
            let source = ["CT_small.dcm", "MR_small.dcm"][i % 2];
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/dicom")
                .join(source);
            let mut object = dicom_object::open_file(&path)?;
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
            object.meta_mut().media_storage_sop_instance_uid = uid.clone();
            object.meta_mut().update_information_group_length();
            let out = dir.join(format!("{i}.dcm"));
            object.write_to_file(&out)?;
            Ok(out)
        })
        .collect()
}

/// Uploads `files` into a new draft case, one after another.
async fn http_ingest(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    files: &[PathBuf],
) -> Result<Duration> {
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
    let case = case["id"].as_str().ok_or("no case id")?.to_owned();
    let bodies: Vec<Vec<u8>> = files
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<_>>()?;
    let started = Instant::now();
    for (i, body) in bodies.into_iter().enumerate() {
        let response = http
            .post(format!(
                "{base}/api/v1/cases/{case}/images?filename={i}.dcm"
            ))
            .bearer_auth(token)
            .header("content-type", "application/dicom")
            .body(body)
            .send()
            .await?;
        if response.status().as_u16() != 201 {
            return Err(format!("upload answered {}", response.status()).into());
        }
    }
    Ok(started.elapsed())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
