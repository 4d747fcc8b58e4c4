//! Operators see and steer the job queue: `relay jobs` on the command line,
//! `/api/v1/admin/jobs` over HTTP, and queue depth in the metrics.

mod support;

use serde_json::{Value, json};
use support::Relay;

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test]
async fn an_upload_queues_a_derive_job_that_operators_can_steer() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let admin = relay.admin_token();
    // No in-process worker: the job stays where the test can see it.
    let server = relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], &[]);
    let case = server.create_case(&token, "dermatology").await;
    let image = server
        .upload(&token, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;

    let queued = lines(&relay.ok(&["jobs", "list", "--state", "queued"]));
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["kind"], "derive");
    assert_eq!(queued[0]["payload"], json!({ "image_id": image["id"] }));
    let id = queued[0]["id"].as_i64().expect("id").to_string();

    let shown: Value = serde_json::from_str(&relay.ok(&["jobs", "show", &id])).expect("json");
    assert_eq!(
        (shown["attempts"].as_i64(), shown["state"].as_str()),
        (Some(0), Some("queued"))
    );

    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"relay_jobs{kind="derive",state="queued"} 1"#),
        "{metrics}"
    );

    assert_eq!(relay.ok(&["jobs", "cancel", &id]), id);
    let out = relay.run(&["jobs", "cancel", &id]);
    assert!(
        !out.status.success(),
        "a cancelled job cannot be cancelled again"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
    assert_eq!(relay.ok(&["jobs", "retry", &id]), id);

    // The same over HTTP, for administrators only.
    let (status, jobs) = server.get("/api/v1/admin/jobs?state=queued", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(
        jobs[0]["id"].as_i64().map(|i| i.to_string()),
        Some(id.clone())
    );
    let (status, job) = server
        .post(
            &format!("/api/v1/admin/jobs/{id}/cancel"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((status, job["state"].as_str()), (200, Some("cancelled")));
    let (status, job) = server
        .post(&format!("/api/v1/admin/jobs/{id}/retry"), &admin, json!({}))
        .await;
    assert_eq!((status, job["state"].as_str()), (200, Some("queued")));
    let (status, body) = server
        .post(&format!("/api/v1/admin/jobs/{id}/retry"), &admin, json!({}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_state"))
    );
    let (status, _) = server.get("/api/v1/admin/jobs", &token).await;
    assert_eq!(status, 403);
    let (status, _) = server.get("/api/v1/admin/jobs/999999", &admin).await;
    assert_eq!(status, 404);
    let out = relay.run(&["jobs", "show", "999999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("relay jobs list"));
    assert_eq!(relay.ok(&["jobs", "retry", "--all-dead"]), "0");
}
