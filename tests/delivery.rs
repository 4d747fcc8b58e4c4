//! Reports reach the office's own system: a signed webhook to a real local
//! HTTP receiver, retried after a 500 until it is accepted, with the same
//! delivery id each time (so the receiver can drop duplicates), no patient
//! name in it, and a signature the office verifies with its secret. A 4xx
//! leaves the job dead until an operator replays it.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::HeaderMap;
use relay_workers::webhook::{WebhookSecret, verify};
use serde_json::Value;
use support::Relay;
use support::receivers::Receiver;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_signed_report_is_delivered_signed_and_retried_until_accepted() {
    let (receiver, url) = Receiver::start(500).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Clinic With An EHR");
    let specialist = relay.specialist_token("dermatology");
    let secret: WebhookSecret = relay.set_webhook(&office_id, &url);
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
        ],
        &[],
    );
    let case = server.signed_case(&office, &specialist).await;

    receiver.wait_for(1).await;
    receiver.answer.store(200, Ordering::SeqCst);
    receiver.wait_for(2).await; // the retry, after backoff
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
    let (receiver, url) = Receiver::start(410).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Clinic");
    let specialist = relay.specialist_token("dermatology");
    relay.set_webhook(&office_id, &url);
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
        ],
        &[],
    );
    server.signed_case(&office, &specialist).await;
    receiver.wait_for(1).await;
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
    receiver.wait_for(2).await;
}

/// An office whose own system matches events to charts may ask for the
/// patient's name in them; Relay then reads it for the delivery, and that
/// read is audited under the delivery's id.
#[tokio::test]
async fn an_office_that_opts_in_gets_the_patient_name_and_the_read_is_audited() {
    let (receiver, url) = Receiver::start(200).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Clinic Matching Charts");
    let specialist = relay.specialist_token("dermatology");
    relay.set_webhook(&office_id, &url);
    relay.ok(&[
        "admin",
        "office",
        "webhook",
        "--office",
        &office_id,
        "--patient-name",
        "include",
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
    let case = server.signed_case(&office, &specialist).await;
    receiver.wait_for(1).await;
    let event = receiver.events().await.remove(0);
    assert_eq!(event["case_id"], case.as_str());
    assert_eq!(event["patient"]["name"], support::PATIENT_NAME, "{event}");

    let reads: Vec<Value> = relay
        .ok(&["admin", "audit", "--action", "case.read"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|e: &Value| e["actor"] == "relay")
        .collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(reads[0]["object_id"], case.as_str());
    assert_eq!(
        reads[0]["request_id"], event["id"],
        "audited under the delivery id"
    );

    // Opting out again stops it.
    relay.ok(&[
        "admin",
        "office",
        "webhook",
        "--office",
        &office_id,
        "--patient-name",
        "omit",
    ]);
    let second = server.signed_case(&office, &specialist).await;
    receiver.wait_for(2).await;
    let events = receiver.events().await;
    let later = events
        .iter()
        .find(|e| e["case_id"] == second.as_str())
        .expect("second event");
    assert!(later.get("patient").is_none(), "{later}");
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
