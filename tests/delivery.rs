//! Reports reach the office's own system: a signed webhook to a real local
//! HTTP receiver, retried after a 500 until it is accepted, with the same
//! delivery id each time (so the receiver can drop duplicates), no patient
//! name in it, and a signature the office verifies with its secret. A 4xx
//! leaves the job dead until an operator replays it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use relay_workers::webhook::{WebhookSecret, verify};
use serde_json::{Value, json};
use support::{Relay, Server};
use tokio::sync::Mutex;

/// A receiver that answers with whatever status the test sets.
#[derive(Clone, Default)]
struct Receiver {
    answer: Arc<AtomicU16>,
    received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.received.lock().await.push((headers, body));
    StatusCode::from_u16(r.answer.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

async fn start_receiver(first_answer: u16) -> (Receiver, String) {
    let receiver = Receiver::default();
    receiver.answer.store(first_answer, Ordering::SeqCst);
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, url)
}

async fn wait_for(receiver: &Receiver, n: usize) {
    for _ in 0..400 {
        if receiver.received.lock().await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} deliveries within 20 s");
}

/// A signed report for a case of `office`.
async fn signed_case(server: &Server, office: &str, specialist: &str) -> String {
    let case = server.create_case(office, "dermatology").await;
    server
        .upload(office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    for (method, path, body) in [
        (reqwest::Method::POST, "submit", office),
        (reqwest::Method::POST, "claim", specialist),
        (reqwest::Method::PUT, "report", specialist),
        (reqwest::Method::POST, "report/sign", specialist),
    ] {
        let request = server
            .http
            .request(method, server.url(&format!("/api/v1/cases/{case}/{path}")))
            .json(&json!({"impression": "Benign naevus."}));
        let (status, reply) = server.send(request, body).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    case
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_signed_report_is_delivered_signed_and_retried_until_accepted() {
    let (receiver, url) = start_receiver(500).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Clinic With An EHR");
    let specialist = relay.specialist_token("dermatology");
    let secret: WebhookSecret = relay
        .ok(&[
            "--webhook-allow-loopback",
            "admin",
            "office",
            "webhook",
            "--office",
            &office_id,
            "--url",
            &url,
        ])
        .parse()
        .expect("the printed secret");
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
        ],
        &[],
    );
    let case = signed_case(&server, &office, &specialist).await;

    wait_for(&receiver, 1).await;
    receiver.answer.store(200, Ordering::SeqCst);
    wait_for(&receiver, 2).await; // the retry, after backoff
    let received = receiver.received.lock().await.clone();
    let ids: Vec<&str> = received
        .iter()
        .map(|(h, _)| header(h, "webhook-id"))
        .collect();
    assert_eq!(ids[0], ids[1], "a retry carries the same delivery id");
    for (headers, body) in &received {
        let timestamp: i64 = header(headers, "webhook-timestamp")
            .parse()
            .expect("timestamp");
        let now = chrono::Utc::now().timestamp();
        verify(
            &secret,
            header(headers, "webhook-id"),
            timestamp,
            body,
            header(headers, "webhook-signature"),
            now,
            300,
        )
        .expect("the office can verify the signature");
        assert!(!header(headers, "webhook-key-id").is_empty());
        let event: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(
            (event["type"].as_str(), event["case_id"].as_str()),
            (Some("report_signed"), Some(case.as_str()))
        );
        assert!(
            !String::from_utf8_lossy(body).contains(support::PATIENT_NAME),
            "no patient name in a webhook"
        );
    }
    // A forged body does not verify.
    let (headers, body) = &received[0];
    let mut forged = body.to_vec();
    forged[2] ^= 1;
    let timestamp: i64 = header(headers, "webhook-timestamp")
        .parse()
        .expect("timestamp");
    assert!(
        verify(
            &secret,
            header(headers, "webhook-id"),
            timestamp,
            &forged,
            header(headers, "webhook-signature"),
            timestamp,
            300
        )
        .is_err()
    );

    // The job is done after two attempts.
    let mut done = Value::Null;
    for _ in 0..100 {
        let jobs = relay.ok(&["jobs", "list", "--kind", "deliver"]);
        done = serde_json::from_str(jobs.lines().next().expect("a job")).expect("json");
        if done["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (done["state"].as_str(), done["attempts"].as_i64()),
        (Some("done"), Some(2))
    );
}

#[tokio::test]
async fn a_refusing_endpoint_leaves_the_job_dead_until_replayed() {
    let (receiver, url) = start_receiver(410).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Clinic");
    let specialist = relay.specialist_token("dermatology");
    relay.ok(&[
        "--webhook-allow-loopback",
        "admin",
        "office",
        "webhook",
        "--office",
        &office_id,
        "--url",
        &url,
    ]);
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
        ],
        &[],
    );
    signed_case(&server, &office, &specialist).await;
    wait_for(&receiver, 1).await;
    let mut job = Value::Null;
    for _ in 0..100 {
        job = serde_json::from_str(
            relay
                .ok(&["jobs", "list", "--kind", "deliver"])
                .lines()
                .next()
                .expect("job"),
        )
        .expect("json");
        if job["state"] == "dead" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(job["state"], "dead", "{job}");
    assert!(job["last_error"].as_str().expect("error").contains("410"));
    receiver.answer.store(204, Ordering::SeqCst);
    relay.ok(&[
        "jobs",
        "retry",
        &job["id"].as_i64().expect("id").to_string(),
    ]);
    wait_for(&receiver, 2).await;
}

#[test]
fn webhook_targets_are_checked_when_configured() {
    let relay = Relay::new();
    let office = relay.create_office("Clinic");
    for url in [
        "http://127.0.0.1:9000/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://localhost/x",
        "ftp://example.org/",
    ] {
        let out = relay.run(&[
            "admin", "office", "webhook", "--office", &office, "--url", url,
        ]);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(out.stdout.is_empty());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot receive webhooks"),
            "{url}"
        );
    }
    let secret = relay.ok(&[
        "admin",
        "office",
        "webhook",
        "--office",
        &office,
        "--url",
        "https://ehr.clinic.example/relay",
    ]);
    assert!(secret.starts_with("whsec_"));
    relay.ok(&[
        "admin", "office", "webhook", "--office", &office, "--remove",
    ]);
}
