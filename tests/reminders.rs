//! The loop closes on its own: a report the office has not acknowledged is
//! notified again (up to a limit, and never after acknowledgement), and a
//! case past its service level is announced to its office, escalated to the
//! site's administrators by e-mail and counted in the metrics — each notice
//! once, audited as Relay's own act, without patient data.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Relay;
use support::receivers::{Receiver, SmtpSink};

fn audit(relay: &Relay, action: &str) -> Vec<Value> {
    relay
        .ok(&["admin", "audit", "--action", action])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str, case: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == kind && e["case_id"] == case)
        .collect()
}

#[tokio::test]
async fn an_unacknowledged_report_is_notified_again_up_to_the_limit() {
    let (receiver, url) = Receiver::start(200).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Busy Clinic");
    let specialist = relay.specialist_token("dermatology");
    relay.set_webhook(&office_id, &url);
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
            "--renotify-after",
            "1s",
            "--renotify-limit",
            "2",
            "--reminder-interval",
            "200ms",
        ],
        &[],
    );
    let ignored = server.signed_case(&office, &specialist).await;
    let read = server.signed_case(&office, &specialist).await;
    let (status, _) = server
        .post(
            &format!("/api/v1/cases/{read}/acknowledge"),
            &office,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let acknowledged_at = chrono::Utc::now();

    // 2 signatures + 2 reminders for the ignored report.
    receiver.wait_for(4).await;
    // Long enough for a third reminder, were the limit not kept.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = receiver.events().await;
    let reminders = of_type(&events, "report_unacknowledged", &ignored);
    assert_eq!(reminders.len(), 2, "limit of 2 reminders: {events:#?}");
    assert_ne!(
        reminders[0]["id"], reminders[1]["id"],
        "each reminder is its own delivery"
    );
    for late in of_type(&events, "report_unacknowledged", &read) {
        let at: chrono::DateTime<chrono::Utc> = late["occurred_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("occurred_at");
        assert!(
            at < acknowledged_at,
            "no reminder after acknowledgement: {late}"
        );
    }

    let (_, notes) = server.get("/api/v1/notifications", &office).await;
    let in_app = notes
        .as_array()
        .expect("list")
        .iter()
        .filter(|n| n["event"] == "report_unacknowledged" && n["case_id"] == ignored.as_str())
        .count();
    assert_eq!(in_app, 2, "the in-app list has the reminders too");

    let remind = audit(&relay, "case.remind");
    let for_ignored: Vec<&Value> = remind
        .iter()
        .filter(|e| e["object_id"] == ignored.as_str())
        .collect();
    assert_eq!(for_ignored.len(), 2, "{remind:?}");
    assert!(
        for_ignored
            .iter()
            .all(|e| e["actor"] == "relay" && e["actor_role"] == "system")
    );
}

#[tokio::test]
async fn an_overdue_case_is_announced_to_its_office_and_escalated_once() {
    let (receiver, url) = Receiver::start(200).await;
    let (sink, smtp) = SmtpSink::start().await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Waiting Clinic");
    relay.set_webhook(&office_id, &url);
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-allow-loopback",
            "--sla-dermatology",
            "1s,1s,1s",
            "--reminder-interval",
            "200ms",
            "--escalate-after",
            "1s",
            "--escalate-to",
            "duty-admin@relay.example,lead@relay.example",
            "--smtp-url",
            &smtp,
            "--mail-from",
            "relay@relay.example",
        ],
        &[],
    );
    let case = server.create_case(&office, "dermatology").await;
    server
        .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let (status, _) = server
        .post(&format!("/api/v1/cases/{case}/submit"), &office, json!({}))
        .await;
    assert_eq!(status, 200);

    receiver.wait_for(1).await;
    sink.wait_for(2).await;
    // Long enough for duplicates to show, were a notice sent twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = receiver.events().await;
    assert_eq!(
        of_type(&events, "case_overdue", &case).len(),
        1,
        "{events:#?}"
    );
    assert_eq!(events.len(), 1, "{events:#?}");

    let mails = sink.all().await;
    assert_eq!(
        mails.len(),
        2,
        "one escalation per administrator: {mails:#?}"
    );
    for (mail, to) in mails
        .iter()
        .zip(["duty-admin@relay.example", "lead@relay.example"])
    {
        assert!(mail.contains(&format!("To: {to}")), "{mail}");
        assert!(mail.contains("Overdue urgent dermatology case"), "{mail}");
        assert!(mail.contains(&case), "{mail}");
        for secret in [support::PATIENT_NAME, "MRN-77120", "1961-07-14"] {
            assert!(!mail.contains(secret), "{secret} leaked into an escalation");
        }
    }

    let (_, notes) = server.get("/api/v1/notifications", &office).await;
    assert!(
        notes
            .as_array()
            .expect("list")
            .iter()
            .any(|n| n["event"] == "case_overdue" && n["case_id"] == case.as_str()),
        "{notes}"
    );
    assert_eq!(audit(&relay, "case.overdue").len(), 1);
    assert_eq!(audit(&relay, "case.escalate").len(), 1);

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_cases_overdue{specialty=\"dermatology\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("relay_cases_overdue{specialty=\"radiology\"} 0"),
        "{metrics}"
    );
}

/// Several Relay processes share one database; each sweeps, and each
/// notice still goes out once.
#[tokio::test]
async fn two_processes_sweeping_send_each_notice_once() {
    let (receiver, url) = Receiver::start(200).await;
    let relay = Relay::new();
    let (office_id, _, office) = relay.office_with_user("Shared Clinic");
    relay.set_webhook(&office_id, &url);
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--webhook-allow-loopback",
        "--sla-dermatology",
        "1s,1s,1s",
        "--reminder-interval",
        "50ms",
    ];
    let server = relay.start_with(&args, &[]);
    let mut worker = relay
        .command()
        .args([
            "worker",
            "--webhook-allow-loopback",
            "--sla-dermatology",
            "1s,1s,1s",
            "--reminder-interval",
            "50ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("worker starts");
    let mut cases = Vec::new();
    for _ in 0..5 {
        let case = server.create_case(&office, "dermatology").await;
        server
            .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
            .await;
        let (status, _) = server
            .post(&format!("/api/v1/cases/{case}/submit"), &office, json!({}))
            .await;
        assert_eq!(status, 200);
        cases.push(case);
    }
    receiver.wait_for(cases.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    let events = receiver.events().await;
    for case in &cases {
        assert_eq!(
            of_type(&events, "case_overdue", case).len(),
            1,
            "{events:#?}"
        );
    }
    assert_eq!(events.len(), cases.len());
    assert_eq!(audit(&relay, "case.overdue").len(), cases.len());
}
