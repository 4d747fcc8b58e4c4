//! What an operator watches: metrics by route and status, request ids that
//! tie a response to its log lines, health and readiness.

mod support;

use support::Relay;

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let id = server.create_case(&token, "dermatology").await;
    server.get(&format!("/api/v1/cases/{id}"), &token).await;
    server.get(&format!("/api/v1/cases/{id}"), &token).await;
    server.get("/api/v1/cases", "").await;

    let response = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("header")
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    for line in [
        r#"relay_http_requests_total{method="POST",route="/api/v1/cases",status="201"} 1"#,
        r#"relay_http_requests_total{method="GET",route="/api/v1/cases/{id}",status="200"} 2"#,
        r#"relay_http_requests_total{method="GET",route="/api/v1/cases",status="401"} 1"#,
        r#"relay_http_request_duration_seconds_count{method="GET",route="/api/v1/cases/{id}"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // Routes are labelled by template, never by the id in the path.
    assert!(!text.contains(&id), "a case id became a metric label");
}

#[tokio::test]
async fn every_response_has_a_request_id_that_appears_in_the_log() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let response = server
        .http
        .get(server.url("/api/v1/cases"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    let id = response.headers()["x-request-id"]
        .to_str()
        .expect("header")
        .to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let other = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_ne!(other.headers()["x-request-id"], id.as_str());
    server.stop_and_then(|log| {
        let line = log
            .lines()
            .find(|l| l.contains(&id))
            .unwrap_or_else(|| panic!("request id {id} not in the log:\n{log}"));
        assert!(line.contains("/api/v1/cases"), "{line}");
    });
}

#[tokio::test]
async fn a_client_supplied_request_id_is_kept() {
    let relay = Relay::new();
    let server = relay.start();
    let response = server
        .http
        .get(server.url("/healthz"))
        .header("x-request-id", "clinic-gateway-4711")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "clinic-gateway-4711");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let relay = Relay::new();
    let server = relay.start();
    let (status, body) = server.get("/healthz", "").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = server.get("/readyz", "").await;
    assert_eq!(status, 200);
    assert_eq!(body["database"], "ok");
    assert_eq!(body["blobs"], "ok");
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_asks() {
    let relay = Relay::new();
    let server = relay.start();
    let response = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().ok()),
        Some(Some("gzip"))
    );
}
