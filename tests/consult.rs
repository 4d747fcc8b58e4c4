//! The consult loop end to end: an office refers a case with a real photo;
//! the right specialist finds it in the worklist, claims it (a second
//! specialist cannot), asks for more; the office answers with another image;
//! the specialist signs a report that can never change, and adds an
//! addendum; the office is notified — in the app, by a signed webhook to its
//! own system (which fails the first delivery, so the retry is proven) and
//! by e-mail through a local SMTP sink — reads and acknowledges; the history
//! and the audit trail show every step.

mod support;

use std::time::Duration;

use std::sync::atomic::Ordering;

use relay_workers::webhook::{WebhookSecret, verify};
use serde_json::{Value, json};
use support::receivers::{Receiver, SmtpSink};
use support::{Relay, Server};

struct Loop {
    relay: Relay,
    server: Server,
    office_id: String,
    office: String,
    dermatologist: String,
    second_dermatologist: String,
    radiologist: String,
}

impl Loop {
    fn start(extra: &[&str]) -> Self {
        let relay = Relay::new();
        let (office_id, _, office) = relay.office_with_user("Referring Practice");
        let dermatologist = relay.specialist_token("dermatology");
        let second_dermatologist = relay.specialist_token("dermatology");
        let radiologist = relay.specialist_token("radiology");
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = relay.start_with(&args, &[]);
        Self {
            relay,
            server,
            office_id,
            office,
            dermatologist,
            second_dermatologist,
            radiologist,
        }
    }

    async fn submitted_case(&self) -> String {
        let case = self.server.create_case(&self.office, "dermatology").await;
        self.server
            .upload(&self.office, &case, "photos/camera-gps.jpg", "image/jpeg")
            .await;
        let (status, body) = self
            .server
            .post(
                &format!("/api/v1/cases/{case}/submit"),
                &self.office,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        case
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let request = self
            .server
            .http
            .request(method, self.server.url(path))
            .json(&body);
        self.server.send(request, token).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, body).await
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["case_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn the_whole_loop_from_referral_to_acknowledged_report() {
    // The office's own system (first failing, then answering) and its mail relay.
    let (receiver, hook) = Receiver::start(500).await;
    let (sink, smtp) = SmtpSink::start().await;
    let l = Loop::start(&[
        "--webhook-allow-loopback",
        "--smtp-url",
        &smtp,
        "--mail-from",
        "relay@relay.example",
    ]);
    let secret: WebhookSecret = l.relay.set_webhook(&l.office_id, &hook);
    l.relay.ok(&[
        "admin",
        "office",
        "email",
        "--office",
        &l.office_id,
        "--to",
        "frontdesk@clinic.example",
    ]);
    let case = l.submitted_case().await;

    // The right specialty sees it, with what a reader triages by; the other does not.
    let (status, page) = l.server.get("/api/v1/worklist", &l.dermatologist).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), vec![case.clone()]);
    let item = &page["items"][0];
    assert_eq!(
        (item["patient_sex"].as_str(), item["image_count"].as_u64()),
        (Some("male"), Some(1))
    );
    assert!(item["patient_age"].as_u64().is_some_and(|a| a >= 60));
    assert!(item["due_at"].is_string() && item["overdue"] == false);
    assert!(
        item.get("patient").is_none() && !page.to_string().contains(support::PATIENT_NAME),
        "no name in a worklist"
    );
    let (_, page) = l.server.get("/api/v1/worklist", &l.radiologist).await;
    assert!(ids(&page).is_empty());

    // Claim; a second dermatologist is refused while the claim lives.
    let (status, claimed) = l
        .post(
            &format!("/api/v1/cases/{case}/claim"),
            &l.dermatologist,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, claimed["status"].as_str()),
        (200, Some("in_review"))
    );
    let (status, body) = l
        .post(
            &format!("/api/v1/cases/{case}/claim"),
            &l.second_dermatologist,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("already_claimed"))
    );
    let (_, page) = l
        .server
        .get("/api/v1/worklist", &l.second_dermatologist)
        .await;
    assert!(
        ids(&page).is_empty(),
        "a claimed case leaves the others' worklists"
    );

    // Ask the office for more; the office answers with another image.
    let (status, body) = l
        .post(
            &format!("/api/v1/cases/{case}/request-info"),
            &l.dermatologist,
            json!({"text": "Please send a close-up with a ruler."}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("info_requested")),
        "{body}"
    );
    // The office's system fails the first delivery; from now on it accepts.
    receiver.wait_for(1).await;
    receiver.answer.store(200, Ordering::SeqCst);
    l.server
        .upload(&l.office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let (status, body) = l
        .post(
            &format!("/api/v1/cases/{case}/answer"),
            &l.office,
            json!({"text": "Close-up attached."}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("submitted")),
        "{body}"
    );
    let (_, messages) = l
        .server
        .get(&format!("/api/v1/cases/{case}/messages"), &l.dermatologist)
        .await;
    let kinds: Vec<&str> = messages
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["question", "answer"]);

    // Claim again, draft, sign.
    l.post(
        &format!("/api/v1/cases/{case}/claim"),
        &l.dermatologist,
        json!({}),
    )
    .await;
    let draft = json!({
        "findings": "Symmetric pigmented macule, regular network.",
        "impression": "Benign melanocytic naevus.",
        "recommendation": "Routine skin checks.",
        "in_person_visit": "not_needed",
        "diagnosis_codes": ["D22.6"]
    });
    let (status, saved) = l
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{case}/report"),
            &l.dermatologist,
            draft,
        )
        .await;
    assert_eq!(
        (status, saved["status"].as_str()),
        (200, Some("draft")),
        "{saved}"
    );
    let (status, body) = l
        .server
        .get(&format!("/api/v1/cases/{case}/report"), &l.office)
        .await;
    assert_eq!(status, 404, "the office does not see a draft: {body}");
    let (status, signed) = l
        .post(
            &format!("/api/v1/cases/{case}/report/sign"),
            &l.dermatologist,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, signed["status"].as_str()),
        (200, Some("signed")),
        "{signed}"
    );
    let seal = signed["sha256"].as_str().expect("sealed").to_owned();
    assert_eq!(seal.len(), 64);

    // Signed means final: no edit through the API, nor in the database.
    let (status, body) = l
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{case}/report"),
            &l.dermatologist,
            json!({"impression": "changed"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let mut db = l.relay.database().await;
    let tamper = sqlx::query("UPDATE reports SET impression = 'changed' WHERE case_id = ?")
        .bind(&case)
        .execute(&mut db)
        .await;
    assert!(
        tamper
            .expect_err("refused")
            .to_string()
            .contains("signed report cannot be changed")
    );

    // An addendum, signed and delivered like the report.
    let (status, with_addendum) = l
        .post(
            &format!("/api/v1/cases/{case}/report/addenda"),
            &l.dermatologist,
            json!({"text": "Dermoscopy reviewed: no change."}),
        )
        .await;
    assert_eq!(status, 200, "{with_addendum}");
    assert_eq!(with_addendum["addenda"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        with_addendum["sha256"],
        seal.as_str(),
        "the report's seal never changes"
    );

    // The office is told, reads, acknowledges.
    let (_, notes) = l.server.get("/api/v1/notifications", &l.office).await;
    let events: Vec<&str> = notes
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["event"].as_str())
        .collect();
    assert_eq!(
        events,
        ["addendum_signed", "report_signed", "info_requested"]
    );
    let (status, report) = l
        .server
        .get(&format!("/api/v1/cases/{case}/report"), &l.office)
        .await;
    assert_eq!(
        (status, report["impression"].as_str()),
        (200, Some("Benign melanocytic naevus."))
    );
    assert_eq!(report["diagnosis_codes"], json!(["D22.6"]));
    let (status, done) = l
        .post(
            &format!("/api/v1/cases/{case}/acknowledge"),
            &l.office,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, done["status"].as_str()),
        (200, Some("acknowledged"))
    );
    assert!(done["acknowledged_at"].is_string());

    // The office's system got every event, signed, the first only after a
    // retry (it answered 500 once); its mail relay got the notices.
    receiver.wait_for(4).await; // info_requested twice, report_signed, addendum_signed
    tokio::time::sleep(Duration::from_millis(300)).await; // and nothing more
    let received = receiver.received.lock().await.clone();
    let mut kinds = Vec::new();
    for (headers, body) in &received {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let timestamp: i64 = header("webhook-timestamp").parse().expect("timestamp");
        verify(
            &secret,
            &header("webhook-id"),
            timestamp,
            body,
            &header("webhook-signature"),
            chrono::Utc::now().timestamp(),
            300,
        )
        .expect("signed with the office's secret");
        let event: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(event["case_id"], case.as_str());
        kinds.push(event["type"].as_str().expect("type").to_owned());
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(kinds[0], "info_requested");
    assert_eq!(
        kinds.iter().filter(|k| *k == "info_requested").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"report_signed".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"addendum_signed".to_owned()), "{kinds:?}");
    sink.wait_for(3).await;
    let mails = sink.all().await;
    assert!(
        mails
            .iter()
            .any(|m| m.contains("A consult report is ready") && m.contains(&case)),
        "{mails:#?}"
    );

    // Every status change is in the history; every step in the audit trail.
    let (_, history) = l
        .server
        .get(&format!("/api/v1/cases/{case}/history"), &l.office)
        .await;
    let steps: Vec<String> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            format!(
                "{}>{}",
                h["from_status"].as_str().expect("from"),
                h["to_status"].as_str().expect("to")
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "draft>submitted",
            "submitted>in_review",
            "in_review>info_requested",
            "info_requested>submitted",
            "submitted>in_review",
            "in_review>reported",
            "reported>acknowledged"
        ]
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT action FROM audit_events WHERE object_id = ?")
            .bind(&case)
            .fetch_all(&mut db)
            .await
            .expect("audit");
    for expected in [
        "case.submit",
        "case.claim",
        "case.request_info",
        "case.answer_info",
        "report.draft",
        "report.sign",
        "report.addendum",
        "report.read",
        "case.acknowledge",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    // Delivery is queued for every event the office must hear about.
    let deliveries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'deliver'")
        .fetch_one(&mut db)
        .await
        .expect("jobs");
    assert_eq!(deliveries, 3);
}

#[tokio::test]
async fn an_expired_claim_returns_the_case_to_the_worklist() {
    let l = Loop::start(&["--claim-lease", "1s"]);
    let case = l.submitted_case().await;
    l.post(
        &format!("/api/v1/cases/{case}/claim"),
        &l.dermatologist,
        json!({}),
    )
    .await;
    let (_, page) = l
        .server
        .get("/api/v1/worklist", &l.second_dermatologist)
        .await;
    assert!(ids(&page).is_empty());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, page) = l
        .server
        .get("/api/v1/worklist", &l.second_dermatologist)
        .await;
    assert_eq!(
        ids(&page),
        vec![case.clone()],
        "back in line once the lease ran out"
    );
    let (status, body) = l
        .post(
            &format!("/api/v1/cases/{case}/claim"),
            &l.second_dermatologist,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The first specialist's lease is gone: they cannot sign on it.
    let (status, body) = l
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/cases/{case}/report"),
            &l.dermatologist,
            json!({"impression": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("claim_required"))
    );
}

#[tokio::test]
async fn the_worklist_orders_by_priority_then_overdue_then_age() {
    let l = Loop::start(&[]);
    let mut cases = Vec::new();
    for priority in ["routine", "stat", "routine", "urgent"] {
        let mut referral = support::referral("dermatology");
        referral["priority"] = json!(priority);
        let (_, case) = l.server.post("/api/v1/cases", &l.office, referral).await;
        let id = case["id"].as_str().expect("id").to_owned();
        l.server
            .upload(&l.office, &id, "photos/camera-plain.jpg", "image/jpeg")
            .await;
        l.post(&format!("/api/v1/cases/{id}/submit"), &l.office, json!({}))
            .await;
        cases.push(id);
    }
    // Make the second routine case overdue.
    let mut db = l.relay.database().await;
    sqlx::query("UPDATE cases SET due_at = 1 WHERE id = ?")
        .bind(&cases[2])
        .execute(&mut db)
        .await
        .expect("overdue");
    let (_, page) = l.server.get("/api/v1/worklist", &l.dermatologist).await;
    assert_eq!(
        ids(&page),
        vec![
            cases[1].clone(),
            cases[3].clone(),
            cases[2].clone(),
            cases[0].clone()
        ]
    );
    assert_eq!(page["items"][2]["overdue"], true);
    let (_, overdue) = l
        .server
        .get("/api/v1/worklist?overdue=true", &l.dermatologist)
        .await;
    assert_eq!(ids(&overdue), vec![cases[2].clone()]);
    let (_, stat) = l
        .server
        .get("/api/v1/worklist?priority=stat", &l.dermatologist)
        .await;
    assert_eq!(ids(&stat), vec![cases[1].clone()]);
    // Service levels: stat dermatology is due in 4 h, routine in 72 h.
    let (_, stat_case) = l
        .server
        .get(&format!("/api/v1/cases/{}", cases[1]), &l.office)
        .await;
    let hours = |c: &Value| {
        let at =
            |k: &str| chrono::DateTime::parse_from_rfc3339(c[k].as_str().expect(k)).expect("time");
        (at("due_at") - at("submitted_at")).num_hours()
    };
    assert_eq!(hours(&stat_case), 4);
    let (_, routine_case) = l
        .server
        .get(&format!("/api/v1/cases/{}", cases[0]), &l.office)
        .await;
    assert_eq!(hours(&routine_case), 72);
}

#[tokio::test]
async fn specialists_cannot_act_without_a_claim_and_offices_cannot_act_as_specialists() {
    let l = Loop::start(&[]);
    let case = l.submitted_case().await;
    for path in ["report/sign", "request-info", "release"] {
        let (status, body) = l
            .post(
                &format!("/api/v1/cases/{case}/{path}"),
                &l.dermatologist,
                json!({"text": "q"}),
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("claim_required")),
            "{path}: {body}"
        );
    }
    let (status, _) = l
        .post(&format!("/api/v1/cases/{case}/claim"), &l.office, json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = l
        .post(
            &format!("/api/v1/cases/{case}/claim"),
            &l.radiologist,
            json!({}),
        )
        .await;
    assert_eq!(
        status, 404,
        "another specialty's case does not exist for a radiologist"
    );
}

#[tokio::test]
async fn service_levels_come_from_configuration() {
    let l = Loop::start(&["--sla-dermatology", "48h,8h,2h"]);
    let mut referral = support::referral("dermatology");
    referral["priority"] = json!("stat");
    let (_, case) = l.server.post("/api/v1/cases", &l.office, referral).await;
    let id = case["id"].as_str().expect("id").to_owned();
    l.server
        .upload(&l.office, &id, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let (status, submitted) = l
        .post(&format!("/api/v1/cases/{id}/submit"), &l.office, json!({}))
        .await;
    assert_eq!(status, 200);
    let at = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(submitted[k].as_str().expect(k)).expect("time")
    };
    assert_eq!((at("due_at") - at("submitted_at")).num_minutes(), 120);
    let out = l.relay.run(&["config", "show", "--sla-radiology", "1h"]);
    assert!(
        !out.status.success(),
        "a malformed service level is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("sla_radiology"));
}
