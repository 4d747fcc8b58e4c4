//! The audit trail: every read or write of patient data leaves an event
//! (who, what, when, from where, which request), and the sha256 chain that
//! seals the events lets `relay admin audit verify` find the first event
//! that was changed, removed or inserted. A table gives every route the
//! events one successful call leaves (`every_route_and_outcome_leaves_exactly_its_events`);
//! a route added without a row fails it.

mod support;

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sqlx::SqliteConnection;
use support::routes::{
    Access, Route, Setup, Target, body_for, call_traced, names_an_object, prepared, routes,
    target_url,
};
use support::{Relay, Server, referral};

/// Runs `relay admin audit verify`; returns (exit success, stdout JSON, stderr).
fn verify(relay: &Relay) -> (bool, Value, String) {
    let out = relay.run(&["admin", "audit", "verify"]);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let report =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("not JSON: {stdout}"));
    (
        out.status.success(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Some audited traffic; the server is stopped (which seals everything).
async fn traffic(relay: &Relay) -> String {
    let (_, _, token) = relay.office_with_user("Audited Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "dermatology").await;
    for _ in 0..3 {
        server.get(&format!("/api/v1/cases/{case}"), &token).await;
    }
    server.stop();
    case
}

/// Plays an attacker with write access to the database file.
async fn disarm_triggers(db: &mut SqliteConnection) {
    for trigger in ["audit_events_seal_only", "audit_events_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {trigger}")))
            .execute(&mut *db)
            .await
            .expect("drop trigger");
    }
}

#[tokio::test]
async fn every_case_route_leaves_an_event_naming_actor_address_and_request() {
    let relay = Relay::new();
    let (office, user, token) = relay.office_with_user("Clinic");
    let admin = relay.admin_token();
    let server = relay.start();

    let response = server
        .http
        .post(server.url("/api/v1/cases"))
        .bearer_auth(&token)
        .json(&referral("dermatology"))
        .send()
        .await
        .expect("sent");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("header")
        .to_owned();
    let case: Value = response.json().await.expect("json");
    let id = case["id"].as_str().expect("id");
    server.get(&format!("/api/v1/cases/{id}"), &token).await;
    server.get("/api/v1/cases", &token).await;
    server
        .patch(
            &format!("/api/v1/cases/{id}"),
            &token,
            json!({"priority": "stat"}),
        )
        .await;
    server
        .post(
            &format!("/api/v1/cases/{id}/cancel"),
            &token,
            json!({"reason": "resolved"}),
        )
        .await;

    let (status, page) = server
        .get(&format!("/api/v1/audit?object_id={id}"), &admin)
        .await;
    assert_eq!(status, 200);
    let events = page["items"].as_array().expect("items");
    let actions: BTreeSet<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "case.create",
            "case.read",
            "case.list",
            "case.update",
            "case.cancel"
        ])
    );
    for event in events {
        assert_eq!(event["actor"], user.as_str());
        assert_eq!(event["actor_role"], "office");
        assert_eq!(event["office_id"], office.as_str());
        assert_eq!(event["remote_addr"], "127.0.0.1");
        assert!(event["request_id"].is_string());
    }
    let create = events
        .iter()
        .find(|e| e["action"] == "case.create")
        .expect("create event");
    assert_eq!(create["request_id"], request_id.as_str());

    // Searching the trail is itself recorded, and filters combine.
    let (_, reads) = server.get("/api/v1/audit?action=audit.read", &admin).await;
    assert!(!reads["items"].as_array().expect("items").is_empty());
    let (_, family) = server
        .get(
            &format!("/api/v1/audit?action=case.&object_id={id}&limit=2"),
            &admin,
        )
        .await;
    assert_eq!(family["items"].as_array().expect("items").len(), 2);
    let before = family["next_before_id"].as_i64().expect("more pages");
    let (_, older) = server
        .get(
            &format!("/api/v1/audit?action=case.&object_id={id}&before_id={before}"),
            &admin,
        )
        .await;
    assert_eq!(older["items"].as_array().expect("items").len(), 3);
    assert!(
        older["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["id"].as_i64() < Some(before))
    );
    let (status, body) = server.get("/api/v1/audit", &token).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn the_chain_verifies_and_an_edited_event_is_named() {
    let relay = Relay::new();
    let case = traffic(&relay).await;
    let (ok, report, stderr) = verify(&relay);
    assert!(ok, "{stderr}");
    assert_eq!(report["broken"], Value::Null);
    assert_eq!(report["unsealed"], 0);
    let sealed = report["verified"].as_i64().expect("count");
    let mut db = relay.database().await;
    assert_eq!(sealed, support::count(&mut db, "audit_events").await);

    // Re-point one read of the case at another object.
    disarm_triggers(&mut db).await;
    let target: i64 = sqlx::query_scalar(
        "SELECT id FROM audit_events WHERE object_id = ? AND action = 'case.read' ORDER BY id LIMIT 1",
    )
    .bind(&case)
    .fetch_one(&mut db)
    .await
    .expect("event");
    sqlx::query("UPDATE audit_events SET object_id = 'someone-else' WHERE id = ?")
        .bind(target)
        .execute(&mut db)
        .await
        .expect("tamper");
    let (ok, report, stderr) = verify(&relay);
    assert!(!ok, "verify accepted an edited event");
    assert_eq!(report["broken"]["event_id"], target);
    assert!(
        stderr.contains(&format!("audit event {target}")),
        "{stderr}"
    );
    assert!(stderr.contains("changed"), "{stderr}");
}

#[tokio::test]
async fn a_removed_event_is_found() {
    let relay = Relay::new();
    traffic(&relay).await;
    let mut db = relay.database().await;
    disarm_triggers(&mut db).await;
    let (victim, next): (i64, i64) =
        sqlx::query_as("SELECT id, (SELECT id FROM audit_events WHERE seq = e.seq + 1) FROM audit_events e WHERE seq = 3")
            .fetch_one(&mut db)
            .await
            .expect("events");
    sqlx::query("DELETE FROM audit_events WHERE id = ?")
        .bind(victim)
        .execute(&mut db)
        .await
        .expect("delete");
    let (ok, report, stderr) = verify(&relay);
    assert!(!ok);
    assert_eq!(report["broken"]["event_id"], next, "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[tokio::test]
async fn an_inserted_event_is_found() {
    let relay = Relay::new();
    traffic(&relay).await;
    let mut db = relay.database().await;
    disarm_triggers(&mut db).await;
    // Make room at seq 3 and slip in a forged event with a made-up seal.
    sqlx::query("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 3")
        .execute(&mut db)
        .await
        .expect("shift");
    sqlx::query("UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1003")
        .execute(&mut db)
        .await
        .expect("shift back");
    let prev: String = sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = 2")
        .fetch_one(&mut db)
        .await
        .expect("prev");
    let forged: i64 = sqlx::query_scalar(
        "INSERT INTO audit_events (occurred_at, actor, actor_role, action, object_id, remote_addr, seq, prev_hash, hash) \
         VALUES (0, 'operator', 'operator', 'case.read', 'x', 'local', 3, ?, ?) RETURNING id",
    )
    .bind(&prev)
    .bind("f".repeat(64))
    .fetch_one(&mut db)
    .await
    .expect("insert");
    let (ok, report, stderr) = verify(&relay);
    assert!(!ok, "verify accepted an inserted event");
    assert_eq!(report["broken"]["event_id"], forged, "{stderr}");
}

#[tokio::test]
async fn a_cut_tail_is_found_against_the_chain_head() {
    let relay = Relay::new();
    traffic(&relay).await;
    let mut db = relay.database().await;
    disarm_triggers(&mut db).await;
    sqlx::query("DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)")
        .execute(&mut db)
        .await
        .expect("delete");
    let (ok, report, stderr) = verify(&relay);
    assert!(!ok);
    assert!(stderr.contains("removed"), "{stderr}");
    assert!(
        report["broken"]["message"]
            .as_str()
            .expect("message")
            .contains("head")
    );
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_events() {
    let relay = Relay::new();
    traffic(&relay).await;
    let mut db = relay.database().await;
    let update = sqlx::query("UPDATE audit_events SET actor = 'nobody' WHERE id = 1")
        .execute(&mut db)
        .await
        .expect_err("update refused");
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = sqlx::query("DELETE FROM audit_events WHERE id = 1")
        .execute(&mut db)
        .await
        .expect_err("delete refused");
    assert!(delete.to_string().contains("append-only"), "{delete}");
    let history = sqlx::query("DELETE FROM case_history")
        .execute(&mut db)
        .await;
    assert!(history.is_err() || history.expect("ran").rows_affected() == 0);
}

#[tokio::test]
async fn concurrent_requests_seal_into_one_intact_chain() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Busy Clinic");
    let server = relay.start();
    let mut cases = Vec::new();
    for _ in 0..4 {
        cases.push(server.create_case(&token, "dermatology").await);
    }
    // Readers and writers at once, while the sealer runs every second.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let url = server.url(&format!("/api/v1/cases/{}", cases[i % cases.len()]));
        let client = server.http.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let request = if i % 5 == 0 {
                client.patch(url).json(&json!({"priority": "stat"}))
            } else {
                client.get(url)
            };
            request
                .bearer_auth(token)
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    server.stop();
    let (ok, report, stderr) = verify(&relay);
    assert!(ok, "{stderr}");
    let mut db = relay.database().await;
    assert_eq!(
        report["verified"].as_i64(),
        Some(support::count(&mut db, "audit_events").await)
    );
    // 4 creates + 40 requests + the 3 operator events (office, user, token).
    assert_eq!(report["verified"], 47);
}

/// Makes every new audit event fail to be written, as a full or broken
/// audit table would.
async fn break_the_trail(db: &mut SqliteConnection) {
    sqlx::query(
        "CREATE TRIGGER audit_events_broken BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit trail unavailable'); END",
    )
    .execute(&mut *db)
    .await
    .expect("create trigger");
}

#[tokio::test]
async fn without_an_audit_event_no_patient_data_is_served_or_changed() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Unaudited Clinic");
    let specialist = relay.specialist_token("dermatology");
    let server = relay.start();
    let case = server.signed_case(&office, &specialist).await;
    let (_, images) = server
        .get(&format!("/api/v1/cases/{case}/images"), &office)
        .await;
    let image = images["items"][0]["id"]
        .as_str()
        .or_else(|| images[0]["id"].as_str())
        .unwrap_or_else(|| panic!("an image id in {images}"))
        .to_owned();
    // A case waiting on the worklist, so the worklist has patient data.
    let waiting = server.create_case(&office, "dermatology").await;
    server
        .upload(&office, &waiting, "photos/plain.png", "image/png")
        .await;
    let (status, _) = server
        .post(
            &format!("/api/v1/cases/{waiting}/submit"),
            &office,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let draft = server.create_case(&office, "dermatology").await;
    let (_, before) = server.get(&format!("/api/v1/cases/{draft}"), &office).await;
    let mut db = relay.database().await;
    break_the_trail(&mut db).await;

    let reads = [
        (format!("/api/v1/cases/{case}"), &office),
        ("/api/v1/cases".to_owned(), &office),
        (format!("/api/v1/cases/{case}/images"), &office),
        (format!("/api/v1/cases/{case}/report"), &office),
        (format!("/api/v1/images/{image}"), &office),
        (format!("/api/v1/images/{image}/original"), &office),
        ("/api/v1/worklist".to_owned(), &specialist),
    ];
    for (path, token) in &reads {
        let response = server
            .http
            .get(server.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        assert!(
            status >= 500,
            "GET {path} answered {status} without its audit event"
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(support::PATIENT_NAME) && !text.contains(&image) && body.len() < 1024,
            "GET {path} returned data: {text}"
        );
    }
    let (status, _) = server
        .patch(
            &format!("/api/v1/cases/{draft}"),
            &office,
            json!({"priority": "stat"}),
        )
        .await;
    assert!(
        status >= 500,
        "an edit without its audit event answered {status}"
    );
    let upload = server
        .http
        .post(server.url(&format!("/api/v1/cases/{draft}/images")))
        .bearer_auth(&office)
        .header("content-type", "image/png")
        .body(support::fixture("photos/plain.png"))
        .send()
        .await
        .expect("sent");
    assert!(upload.status().is_server_error(), "{}", upload.status());

    sqlx::query("DROP TRIGGER audit_events_broken")
        .execute(&mut db)
        .await
        .expect("drop trigger");
    let (status, after) = server.get(&format!("/api/v1/cases/{draft}"), &office).await;
    assert_eq!(
        status, 200,
        "reads work again once the trail can be written"
    );
    assert_eq!(
        after["priority"], before["priority"],
        "the unaudited edit did not happen"
    );
    let (_, images) = server
        .get(&format!("/api/v1/cases/{draft}/images"), &office)
        .await;
    assert!(
        !images.to_string().contains("image/png"),
        "the unaudited upload stored nothing: {images}"
    );
}

/// A recorded event: actor, role, action, object, office, address.
type Event = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

/// The object an expected audit event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    Case,
    Image,
    Upload,
    /// What the call created (a case, an image, an upload).
    Created,
    /// Nothing: the event is about the trail itself.
    Nothing,
}

/// What one successful call of a route leaves in the trail.
#[derive(Debug, Clone, Copy)]
enum Trail {
    /// Exactly these events, in this order.
    Events(&'static [(&'static str, Names)]),
    /// One event of this action per entry of the answer (a list or a
    /// search), each naming another object; the target's among them when
    /// the caller may see it.
    PerEntry(&'static str, Names),
    /// The answer carries no patient data (the caller's own identity,
    /// notification ids, job and run bookkeeping): no event.
    Quiet,
}

/// The audit contract of every route. A route without a row fails the test.
fn trail(route: &Route) -> Trail {
    use Names::*;
    use Trail::*;
    let path = route.path;
    match (route.method.as_str(), path) {
        (_, "/healthz" | "/readyz" | "/metrics" | "/api/v1/me" | "/api/v1/notifications") => Quiet,
        (_, p) if p.starts_with("/api/v1/admin/") => Quiet,
        ("GET", "/api/v1/audit") => Events(&[("audit.read", Nothing)]),
        ("POST", "/api/v1/cases") => Events(&[("case.create", Created)]),
        ("GET", "/api/v1/cases") | ("GET", "/api/v1/worklist") => PerEntry("case.list", Case),
        ("GET", "/api/v1/cases/{id}")
        | ("GET", "/api/v1/cases/{id}/messages")
        | ("GET", "/api/v1/cases/{id}/history") => Events(&[("case.read", Case)]),
        ("PATCH", "/api/v1/cases/{id}") => Events(&[("case.update", Case)]),
        ("POST", "/api/v1/cases/{id}/cancel") => Events(&[("case.cancel", Case)]),
        ("POST", "/api/v1/cases/{id}/submit") => Events(&[("case.submit", Case)]),
        ("POST", "/api/v1/cases/{id}/images") => Events(&[("image.create", Created)]),
        ("POST", "/api/v1/uploads") => Events(&[("upload.start", Created)]),
        ("PATCH", "/api/v1/uploads/{id}") => Events(&[("upload.append", Upload)]),
        ("DELETE", "/api/v1/uploads/{id}") => Events(&[("upload.cancel", Upload)]),
        ("GET", "/api/v1/cases/{id}/images") | ("GET", "/api/v1/cases/{id}/studies") => {
            PerEntry("image.list", Image)
        }
        ("GET", "/api/v1/images/{id}") => Events(&[("image.read", Image)]),
        ("GET", p) if p.starts_with("/api/v1/images/{id}/") => Events(&[("image.download", Image)]),
        // The first instance of a study opens a draft case for it.
        ("POST", "/dicomweb/studies") => {
            Events(&[("case.create", Created), ("image.create", Created)])
        }
        // Refused without a multipart body here; its success is the same
        // ingest as STOW without a study.
        ("POST", "/dicomweb/studies/{study}") => Events(&[]),
        ("GET", p) if p.starts_with("/dicomweb/") && p.ends_with("/metadata") => {
            Events(&[("image.read", Image)])
        }
        ("GET", p)
            if p.starts_with("/dicomweb/")
                && (p.ends_with("/series")
                    || p.ends_with("/instances")
                    || p == "/dicomweb/studies") =>
        {
            PerEntry("image.list", Image)
        }
        ("GET", p) if p.starts_with("/dicomweb/studies/{study}") => {
            Events(&[("image.download", Image)])
        }
        ("POST", "/api/v1/cases/{id}/claim") | ("POST", "/api/v1/cases/{id}/claim/renew") => {
            Events(&[("case.claim", Case)])
        }
        ("POST", "/api/v1/cases/{id}/release") => Events(&[("case.release", Case)]),
        ("PUT", "/api/v1/cases/{id}/report") => Events(&[("report.draft", Case)]),
        ("POST", "/api/v1/cases/{id}/report/sign") => Events(&[("report.sign", Case)]),
        ("POST", "/api/v1/cases/{id}/report/addenda") => Events(&[("report.addendum", Case)]),
        ("GET", "/api/v1/cases/{id}/report") => Events(&[("report.read", Case)]),
        ("GET", "/api/v1/cases/{id}/report.html") => {
            Events(&[("report.read", Case), ("case.read", Case)])
        }
        ("POST", "/api/v1/cases/{id}/request-info") => Events(&[("case.request_info", Case)]),
        ("POST", "/api/v1/cases/{id}/answer") => Events(&[("case.answer_info", Case)]),
        ("POST", "/api/v1/cases/{id}/acknowledge") => Events(&[("case.acknowledge", Case)]),
        _ => panic!("{} {path} has no row in the audit table", route.method),
    }
}

/// The steps that bring a prepared case to where `route` succeeds, as its
/// dermatologist (`specialist`) and office (`office`) would take them.
async fn ready_for(
    route: &Route,
    server: &Server,
    target: &Target,
    office: &str,
    specialist: &str,
) {
    let case = &target.case;
    let claimed = [
        "/api/v1/cases/{id}/release",
        "/api/v1/cases/{id}/report",
        "/api/v1/cases/{id}/report/sign",
        "/api/v1/cases/{id}/request-info",
    ];
    let mut steps: Vec<(&str, &str, Value)> = Vec::new();
    if claimed.contains(&route.path) && route.method != reqwest::Method::GET {
        steps.push((specialist, "claim", json!({})));
    }
    if route.path.ends_with("/report/sign") {
        steps.push((specialist, "report", json!({"impression": "benign naevus"})));
    }
    if route.path.ends_with("/answer") {
        steps.push((office, "submit", json!({})));
        steps.push((specialist, "claim", json!({})));
        steps.push((
            specialist,
            "request-info",
            json!({"text": "a closer photo"}),
        ));
    }
    for (token, step, body) in steps {
        let method = if step == "report" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let request = server
            .http
            .request(method, server.url(&format!("/api/v1/cases/{case}/{step}")))
            .json(&body);
        let (status, body) = server.send(request, token).await;
        assert_eq!(status, 200, "{step} before {}: {body}", route.path);
    }
}

/// The entries of a list or search answer.
fn entries(body: &Value) -> usize {
    body["items"]
        .as_array()
        .or_else(|| body.as_array())
        .map_or(0, Vec::len)
}

/// Every patient-data route × outcome leaves exactly its events: a success
/// its row of the table, naming actor, role, office, action and object; a
/// refusal for bad input none. (Refusals for want of access leave none
/// either: tests/access.rs checks that for every caller.)
#[tokio::test]
async fn every_route_and_outcome_leaves_exactly_its_events() {
    let relay = Relay::new();
    let (office_id, owner_user, owner) = relay.office_with_user("Audited Clinic");
    let dermatologist = relay.specialist_token("dermatology");
    let admin = relay.admin_token();
    let server = relay.start();
    let mut users = std::collections::HashMap::new();
    for token in [&owner, &dermatologist, &admin] {
        let (_, me) = server.get("/api/v1/me", token).await;
        let id = me["user_id"].as_str().expect("user id").to_owned();
        users.insert(
            token.clone(),
            (id, me["role"].as_str().expect("role").to_owned()),
        );
    }
    assert_eq!(users[&owner].0, owner_user);
    let mut db = relay.database().await;
    let mut rows = 0;

    for r in routes() {
        let callers: Vec<&String> = match r.access {
            Access::Public => vec![&owner],
            Access::Scoped => vec![&owner, &dermatologist, &admin],
            Access::Office => vec![&owner],
            Access::Specialist => vec![&dermatologist],
            Access::Admin => vec![&admin],
        };
        let expected = trail(&r);
        for token in callers {
            let target = prepared(&relay, &server, &owner, &dermatologist, r.setup).await;
            ready_for(&r, &server, &target, &owner, &dermatologist).await;
            let what = format!("{} {} by {}", r.method, r.path, users[token].1);
            let (status, body, request_id) = call_traced(&server, &r, &target, token).await;
            let sees_target = token != &dermatologist || r.setup != Setup::Draft;
            let events: Vec<Event> = sqlx::query_as(
                "SELECT actor, actor_role, action, object_id, office_id, remote_addr \
                     FROM audit_events WHERE request_id = ? ORDER BY id",
            )
            .bind(&request_id)
            .fetch_all(&mut db)
            .await
            .expect("events");
            let (user, role) = &users[token];
            for (actor, actor_role, action, _, office, addr) in &events {
                assert_eq!((actor, actor_role), (user, role), "{what}: {action}");
                assert_eq!(addr, "127.0.0.1", "{what}: {action}");
                let office_expected = (action != "audit.read").then(|| office_id.clone());
                assert_eq!(office, &office_expected, "{what}: {action}");
            }
            let object = |names: Names| -> Option<String> {
                match names {
                    Names::Case => Some(target.case.clone()),
                    Names::Image => Some(target.image.clone()),
                    Names::Upload => Some(target.upload.clone()),
                    Names::Created | Names::Nothing => None,
                }
            };
            if !sees_target && names_an_object(&r) {
                // A draft is not the specialist's: not found, nothing recorded.
                assert_eq!(status, 404, "{what}: {body}");
                assert!(events.is_empty(), "{what}: {events:?}");
                rows += 1;
                continue;
            }
            match expected {
                Trail::Quiet => assert!(events.is_empty(), "{what}: {events:?}"),
                Trail::Events(&[]) => {
                    assert!(status >= 400, "{what}: {status} {body}");
                    assert!(events.is_empty(), "{what}: {events:?}");
                }
                Trail::Events(expected) => {
                    assert!((200..300).contains(&status), "{what}: {status} {body}");
                    let got: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
                    let want: Vec<&str> = expected.iter().map(|(a, _)| *a).collect();
                    assert_eq!(got, want, "{what}");
                    for ((action, names), event) in expected.iter().zip(&events) {
                        match names {
                            Names::Nothing => assert_eq!(event.3, None, "{what}: {action}"),
                            Names::Created => {
                                let id = event.3.as_deref().expect("an object");
                                assert!(
                                    ![&target.case, &target.image, &target.upload]
                                        .contains(&&id.to_owned()),
                                    "{what}: {action} names an old object"
                                );
                            }
                            _ => assert_eq!(event.3, object(*names), "{what}: {action}"),
                        }
                    }
                }
                Trail::PerEntry(action, names) => {
                    assert!((200..300).contains(&status), "{what}: {status} {body}");
                    assert_eq!(events.len(), entries(&body), "{what}: one event per entry");
                    assert!(events.iter().all(|e| e.2 == action), "{what}: {events:?}");
                    let objects: BTreeSet<Option<String>> =
                        events.iter().map(|e| e.3.clone()).collect();
                    assert_eq!(objects.len(), events.len(), "{what}: repeated objects");
                    // The worklist lists submitted cases only; searches
                    // list studies, series or instances (one image each here).
                    let listed = !(r.path == "/api/v1/worklist" && r.setup == Setup::Draft);
                    assert_eq!(
                        objects.contains(&object(names)),
                        sees_target && listed,
                        "{what}: the target's event"
                    );
                }
            }
            // The same call with a body that is not JSON, where it takes
            // one: refused, and nothing recorded.
            if body_for(&r).is_some() {
                let bad = target_url(&server, &r, &target);
                let request = server
                    .http
                    .request(r.method.clone(), bad)
                    .header("content-type", "application/json")
                    .body("{not json")
                    .bearer_auth(token);
                let response = request.send().await.expect("sent");
                let status = response.status().as_u16();
                let request_id = response.headers()["x-request-id"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                assert!(
                    (400..500).contains(&status),
                    "{what} with bad JSON: {status}"
                );
                let count: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE request_id = ?")
                        .bind(&request_id)
                        .fetch_one(&mut db)
                        .await
                        .expect("count");
                assert_eq!(count, 0, "{what} with bad JSON left events");
            }
            rows += 1;
        }
    }
    assert!(rows > routes().len());
}
