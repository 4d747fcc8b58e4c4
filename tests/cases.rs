//! The case lifecycle over the JSON API, as an office uses it.

mod support;

use serde_json::json;
use support::{PATIENT_NAME, Relay, referral};

#[tokio::test]
async fn an_office_creates_reads_lists_edits_and_cancels_a_case() {
    let relay = Relay::new();
    let (office, user, token) = relay.office_with_user("Main Street Family Practice");
    let server = relay.start();

    // Create.
    let (status, created) = server
        .post("/api/v1/cases", &token, referral("dermatology"))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["office_id"], office.as_str());
    assert_eq!(created["created_by"], user.as_str());
    assert_eq!(created["priority"], "urgent");
    assert_eq!(created["patient"]["name"], PATIENT_NAME);
    assert_eq!(created["clinical"]["body_site"], "left forearm, dorsal");
    assert!(
        created["created_at"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z')
    );

    // Read.
    let (status, read) = server.get(&format!("/api/v1/cases/{id}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(read, created);

    // Edit while draft: only named fields change, null clears.
    let (status, edited) = server
        .patch(
            &format!("/api/v1/cases/{id}"),
            &token,
            json!({"priority": "routine", "patient": {"mrn": "MRN-1"}, "clinical": {"medications": null}}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["priority"], "routine");
    assert_eq!(edited["patient"]["mrn"], "MRN-1");
    assert_eq!(edited["patient"]["name"], PATIENT_NAME);
    assert_eq!(edited["clinical"]["medications"], serde_json::Value::Null);
    assert_eq!(edited["clinical"]["allergies"], "penicillin");

    // List: newest first, with totals.
    let second = server.create_case(&token, "radiology").await;
    let (status, page) = server.get("/api/v1/cases", &token).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["id"], second.as_str());
    assert_eq!(page["items"][1]["id"], id.as_str());

    // Cancel with a reason; a cancelled case can be neither edited nor cancelled again.
    let (status, cancelled) = server
        .post(
            &format!("/api/v1/cases/{id}/cancel"),
            &token,
            json!({"reason": "patient seen in person"}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancel_reason"], "patient seen in person");
    assert!(cancelled["cancelled_at"].is_string());
    let (status, body) = server
        .patch(
            &format!("/api/v1/cases/{id}"),
            &token,
            json!({"priority": "stat"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_state"))
    );
    let (status, body) = server
        .post(
            &format!("/api/v1/cases/{id}/cancel"),
            &token,
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_state"))
    );

    // Filter by status.
    let (_, drafts) = server.get("/api/v1/cases?status=draft", &token).await;
    assert_eq!(drafts["total"], 1);
    assert_eq!(drafts["items"][0]["id"], second.as_str());
    let (_, cancelled) = server.get("/api/v1/cases?status=cancelled", &token).await;
    assert_eq!(cancelled["total"], 1);

    // The status change is in the append-only history.
    let mut db = relay.database().await;
    let history: Vec<(String, String, String)> =
        sqlx::query_as("SELECT from_status, to_status, actor FROM case_history WHERE case_id = ?")
            .bind(&id)
            .fetch_all(&mut db)
            .await
            .expect("history");
    assert_eq!(
        history,
        vec![("draft".into(), "cancelled".into(), user.clone())]
    );
    server.stop();
}

#[tokio::test]
async fn listing_pages_through_all_cases() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Paging Clinic");
    let server = relay.start();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(server.create_case(&token, "dermatology").await);
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, body) = server
            .get(&format!("/api/v1/cases?page={page}&per_page=2"), &token)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["total"], 5);
        for item in body["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(seen, ids);
    for bad in [
        "page=0",
        "per_page=0",
        "per_page=101",
        "status=closed",
        "page=x",
        "colour=red",
    ] {
        let (status, body) = server.get(&format!("/api/v1/cases?{bad}"), &token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_query")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn patient_names_never_reach_the_log() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Quiet Clinic");
    let server = relay.start();
    let id = server.create_case(&token, "dermatology").await;
    server.get(&format!("/api/v1/cases/{id}"), &token).await;
    server.get("/api/v1/cases", &token).await;
    server
        .patch(
            &format!("/api/v1/cases/{id}"),
            &token,
            json!({"question": "Still?"}),
        )
        .await;
    let log = server.log();
    assert!(log.contains(&id), "the log names the case by id:\n{log}");
    assert!(
        !log.contains(PATIENT_NAME),
        "patient name leaked into the log:\n{log}"
    );
    assert!(
        !log.contains("MRN-77120"),
        "MRN leaked into the log:\n{log}"
    );
    assert!(!log.contains(&token), "token leaked into the log");
}
