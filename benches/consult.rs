//! Sign → webhook delivered: how long after a specialist's signature is
//! acknowledged the office's own system has the event, through the real
//! `relay serve` binary over loopback HTTP.
//!
//! `cargo bench --bench consult`
//!
//! Each round makes a case as an office would (referral, one real photo,
//! submit), and a dermatologist claims, drafts and signs it. The clock starts
//! when the `sign` response arrives (the signature and its `deliver` job are
//! committed) and stops when a local webhook receiver in this process has the
//! signed event (polled every 1 ms). Rounds run one after another, so the
//! worker is idle when each signature lands; before each, the bench waits a
//! different fraction of a second, so signatures land evenly over a polling
//! worker's cycle.
//!
//! The baseline is the least any delivery costs: this process POSTing the
//! same event to the same receiver over loopback, in the same run. The
//! ratio of the medians says what queueing, the worker's claim, the
//! catalog read and signing add to one HTTP round trip.
//!
//! Two servers are measured in the same run: one as configured by default
//! (the in-process worker is woken by the request that queued the job), and
//! one with `--workers 0` beside a separate `relay worker`, which finds the
//! job by polling the queue (every second), as a worker in another process
//! or on another machine does.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::Relay;
use support::receivers::Receiver;

const ROUNDS: usize = 40;

fn percentile(samples: &mut [f64], p: usize) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[(samples.len() * p / 100).min(samples.len() - 1)]
}

/// Sign→delivered latencies in milliseconds against `relay serve ARGS…`
/// (plus a separate worker when `separate_worker`).
async fn sign_to_delivered(serve_args: &[&str], separate_worker: bool) -> Vec<f64> {
    let (receiver, url) = Receiver::start(200).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Bench Clinic");
    let specialist = relay.specialist_token("dermatology");
    relay.set_webhook(&office_id, &url);
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--webhook-allow-loopback",
    ];
    args.extend_from_slice(serve_args);
    let server = relay.start_with(&args, &[]);
    let mut worker = separate_worker.then(|| {
        relay
            .command()
            .args(["worker", "--webhook-allow-loopback"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("relay worker starts")
    });
    let mut samples = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Land each signature at a different point of a polling worker's
        // one-second cycle (spread evenly over the rounds), not always just
        // after the poll that found the previous job.
        let offset = (round * 1000 * 17 / ROUNDS) % 1000;
        tokio::time::sleep(Duration::from_millis(offset as u64)).await;
        server.signed_case(&office, &specialist).await;
        let signed = Instant::now();
        loop {
            if receiver.received.lock().await.len() > round {
                break;
            }
            assert!(
                signed.elapsed() < Duration::from_secs(30),
                "no delivery within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(signed.elapsed().as_secs_f64() * 1000.0);
    }
    if let Some(worker) = worker.as_mut() {
        let _ = worker.kill();
        let _ = worker.wait();
    }
    server.stop();
    samples
}

/// One loopback POST of an event-sized body to a receiver, in milliseconds.
async fn direct_post() -> Vec<f64> {
    let (receiver, url) = Receiver::start(200).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "type": "report_signed", "id": "dlv_0", "case_id": "0", "office_id": "0",
        "occurred_at": "2026-01-01T00:00:00.000Z", "report_url": "/api/v1/cases/0/report",
    });
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let response = client.post(&url).json(&body).send().await.expect("post");
        assert!(response.status().is_success());
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    assert_eq!(receiver.received.lock().await.len(), ROUNDS);
    samples
}

#[tokio::main]
async fn main() {
    relay_workers::tls::install_crypto_provider();
    println!(
        "relay consult benchmark ({} cores; {ROUNDS} rounds each)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut baseline = direct_post().await;
    let base = percentile(&mut baseline, 50);
    println!("baseline: one loopback webhook POST        p50 {base:7.1} ms");
    for (label, args, separate) in [
        ("in-process worker, woken", &[][..], false),
        (
            "separate relay worker, polling",
            &["--workers", "0"][..],
            true,
        ),
    ] {
        let mut samples = sign_to_delivered(args, separate).await;
        let p50 = percentile(&mut samples, 50);
        let p99 = percentile(&mut samples, 99);
        println!(
            "sign → webhook delivered, {label:31} p50 {p50:7.1} ms   p99 {p99:7.1} ms   p50 ratio to baseline {:.1}",
            p50 / base
        );
    }
}
