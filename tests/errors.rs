//! Bad input is refused with a clear 4xx JSON error and leaves no trace.
//!
//! Every refusal answers `{"error": code, "message": text, "field"?: path}`
//! with a stable code and, when one input field is to blame, its dotted path.
//! A refused request writes nothing: the `cases` and `audit_events` tables
//! have exactly as many rows afterwards as before, and an existing case reads
//! back exactly as it did.

mod support;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};
use support::{Relay, Server, referral};

/// An office user's installation with its server running.
struct Office {
    relay: Relay,
    server: Server,
    token: String,
}

impl Office {
    fn start() -> Self {
        let relay = Relay::new();
        let (_, _, token) = relay.office_with_user("Refusal Clinic");
        let server = relay.start();
        Self {
            relay,
            server,
            token,
        }
    }

    /// Rows in `cases` and `audit_events`, read straight from the database.
    async fn rows(&self) -> (i64, i64) {
        let mut db = self.relay.database().await;
        let cases = support::count(&mut db, "cases").await;
        let audit = support::count(&mut db, "audit_events").await;
        (cases, audit)
    }

    /// POSTs `body` as-is with the given Content-Type (none when `None`).
    async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self.server.http.post(self.server.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        Reply::of(request.bearer_auth(&self.token)).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let request = self.server.http.post(self.server.url(path)).json(body);
        Reply::of(request.bearer_auth(&self.token)).await
    }

    async fn patch_json(&self, path: &str, body: &Value) -> Reply {
        let request = self.server.http.patch(self.server.url(path)).json(body);
        Reply::of(request.bearer_auth(&self.token)).await
    }

    /// Sends `body` to `POST /api/v1/cases` and checks it is refused with
    /// `status`, `code` and `field`, writing nothing.
    async fn refuses_referral(
        &self,
        body: &Value,
        status: u16,
        code: &str,
        field: Option<&str>,
    ) -> Reply {
        let before = self.rows().await;
        let reply = self.post_json("/api/v1/cases", body).await;
        reply.is_error(status, code, field, &body.to_string());
        assert_eq!(self.rows().await, before, "a refused referral wrote rows");
        reply
    }
}

/// A response: status, headers and the JSON body.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    async fn of(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
        Self {
            status,
            headers,
            body,
        }
    }

    /// Checks the error shape: status, JSON content type, the stable code, a
    /// non-empty message, and `field` exactly as expected (absent when `None`).
    fn is_error(&self, status: u16, code: &str, field: Option<&str>, what: &str) {
        let body = &self.body;
        assert_eq!(self.status, status, "{what}: {body}");
        let content_type = self
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: content type {content_type:?}"
        );
        assert_eq!(body["error"], code, "{what}: {body}");
        let message = body["message"].as_str().expect("message is a string");
        assert!(!message.trim().is_empty(), "{what}: empty message");
        assert_eq!(
            body.get("field")
                .map(|f| f.as_str().expect("field is a string")),
            field,
            "{what}: {body}"
        );
        let keys: Vec<&str> = body
            .as_object()
            .expect("error body is an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.iter()
                .all(|k| ["error", "message", "field"].contains(k)),
            "{what}: unexpected keys in {body}"
        );
    }

    fn message(&self) -> &str {
        self.body["message"].as_str().expect("message")
    }
}

/// The referral with `path` (dotted) set to `value`.
fn referral_with(path: &str, value: Value) -> Value {
    let mut body = referral("dermatology");
    let mut target = &mut body;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            target[part] = value;
            break;
        }
        target = &mut target[part];
    }
    body
}

/// The referral without the field at `path` (dotted).
fn referral_without(path: &str) -> Value {
    let mut body = referral("dermatology");
    let (parent, key) = match path.rsplit_once('.') {
        Some((parent, key)) => (
            parent
                .split('.')
                .fold(&mut body, |target, part| &mut target[part]),
            key,
        ),
        None => (&mut body, path),
    };
    parent
        .as_object_mut()
        .expect("parent object")
        .remove(key)
        .expect("field present");
    body
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let office = Office::start();
    let valid = referral("dermatology").to_string();
    let cases = [
        ("truncated", "{\"patient\": ".to_owned()),
        ("not JSON at all", "not json".to_owned()),
        ("trailing garbage", format!("{valid} trailing")),
        ("a second document", format!("{valid} {valid}")),
        ("empty body", String::new()),
        ("whitespace only", "  \n".to_owned()),
    ];
    for (what, body) in cases {
        let before = office.rows().await;
        let reply = office
            .post_raw("/api/v1/cases", Some("application/json"), body)
            .await;
        reply.is_error(400, "invalid_json", None, what);
        assert!(
            !reply.message().contains("line 1 column"),
            "{what}: the message should not carry serde positions: {}",
            reply.message()
        );
        assert_eq!(office.rows().await, before, "{what}: rows were written");
    }
    // The same document without the garbage is accepted, so the refusals
    // above were about the garbage.
    let reply = office
        .post_raw("/api/v1/cases", Some("application/json"), valid)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn well_formed_json_that_is_not_an_object_is_422() {
    let office = Office::start();
    for body in [json!("case"), json!(null), json!(7), json!(true)] {
        let reply = office
            .refuses_referral(&body, 422, "invalid_field", None)
            .await;
        assert!(
            reply.message().contains("expected"),
            "{body}: {}",
            reply.message()
        );
    }
}

/// The API documents JSON objects; an array is refused as a whole, even one
/// whose elements line up with the fields in declaration order. Every body is
/// tried and every departure reported at once.
#[tokio::test]
async fn an_array_is_never_a_referral_an_edit_or_a_cancellation() {
    let office = Office::start();
    let id = office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let case = format!("/api/v1/cases/{id}");
    let cancel = format!("{case}/cancel");
    let (_, before) = office.server.get(&case, &office.token).await;

    let patient = referral("dermatology")["patient"].clone();
    let attempts = [
        ("POST", "/api/v1/cases", json!([])),
        ("POST", "/api/v1/cases", json!([referral("dermatology")])),
        (
            "POST",
            "/api/v1/cases",
            json!([patient, "dermatology", "Melanoma?"]),
        ),
        (
            "POST",
            "/api/v1/cases",
            json!([patient, "radiology", "Fracture?", "", "stat", {}]),
        ),
        ("PATCH", case.as_str(), json!([])),
        ("PATCH", case.as_str(), json!([null, null, "stat"])),
        (
            "PATCH",
            case.as_str(),
            json!([null, null, "stat", null, null, null]),
        ),
        ("POST", cancel.as_str(), json!([])),
        ("POST", cancel.as_str(), json!(["patient seen in person"])),
    ];
    let mut problems = Vec::new();
    for (method, path, body) in &attempts {
        let rows = office.rows().await;
        let reply = match *method {
            "PATCH" => office.patch_json(path, body).await,
            _ => office.post_json(path, body).await,
        };
        let refused_whole = reply.status == 422
            && reply.body["error"] == "invalid_field"
            && reply.body.get("field").is_none();
        let wrote = office.rows().await != rows;
        if !refused_whole || wrote {
            problems.push(format!(
                "{method} {path} {body} -> {} {} (rows written: {wrote})",
                reply.status, reply.body
            ));
        }
    }
    let (_, after) = office.server.get(&case, &office.token).await;
    if after != before {
        problems.push(format!("the case changed: {before} -> {after}"));
    }
    assert!(
        problems.is_empty(),
        "array bodies were not refused as a whole:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn unknown_fields_are_refused_by_name() {
    let office = Office::start();

    let mut body = referral("dermatology");
    body["colour"] = json!("red");
    let reply = office
        .refuses_referral(&body, 422, "invalid_field", Some("colour"))
        .await;
    assert!(
        reply.message().contains("unknown field `colour`"),
        "{}",
        reply.message()
    );

    let body = referral_with("patient.nickname", json!("Zeb"));
    let reply = office
        .refuses_referral(&body, 422, "invalid_field", Some("patient.nickname"))
        .await;
    assert!(
        reply.message().contains("unknown field `nickname`"),
        "{}",
        reply.message()
    );

    let body = referral_with("clinical.blood_type", json!("A+"));
    let reply = office
        .refuses_referral(&body, 422, "invalid_field", Some("clinical.blood_type"))
        .await;
    assert!(
        reply.message().contains("unknown field `blood_type`"),
        "{}",
        reply.message()
    );
}

#[tokio::test]
async fn missing_required_fields_are_named() {
    let office = Office::start();
    for (path, field, name) in [
        ("question", None, "question"),
        ("patient", None, "patient"),
        ("specialty", None, "specialty"),
        ("patient.birth_date", Some("patient"), "birth_date"),
        ("patient.mrn", Some("patient"), "mrn"),
    ] {
        let body = referral_without(path);
        let reply = office
            .refuses_referral(&body, 422, "invalid_field", field)
            .await;
        assert!(
            reply.message().contains(&format!("missing field `{name}`")),
            "{path}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn wrong_types_and_invalid_values_name_their_field() {
    let office = Office::start();
    let cases = [
        ("question", json!(42), "invalid type"),
        ("question", json!(["Melanoma?"]), "invalid type"),
        ("question", json!(null), "invalid type"),
        ("question", json!("   "), "must not be empty"),
        ("specialty", json!("cardiology"), "unknown variant"),
        ("specialty", json!("Dermatology"), "unknown variant"),
        ("priority", json!("asap"), "unknown variant"),
        ("patient", json!("Zebulon"), "invalid type"),
        ("patient.sex", json!("f"), "unknown variant"),
        ("patient.birth_date", json!("2999-01-01"), "future"),
        ("patient.birth_date", json!("not a date"), "date like"),
        ("patient.birth_date", json!("1980-02-30"), "date like"),
        ("patient.birth_date", json!("14/07/1961"), "date like"),
        ("patient.birth_date", json!("1850-01-01"), "1900"),
        ("patient.birth_date", json!(19610714), "invalid type"),
        ("patient.mrn", json!(""), "must not be empty"),
        ("history", json!("h".repeat(20_001)), "at most 20000"),
        ("clinical.body_site", json!("s".repeat(201)), "at most 200"),
    ];
    for (field, value, says) in cases {
        let body = referral_with(field, value.clone());
        let reply = office
            .refuses_referral(&body, 422, "invalid_field", Some(field))
            .await;
        assert!(
            reply.message().contains(says),
            "{field} = {value}: expected the message to say {says:?}: {}",
            reply.message()
        );
    }
}

#[tokio::test]
async fn patient_names_must_be_one_line_of_1_to_200_characters() {
    let office = Office::start();
    let cases = [
        (json!(""), "must not be empty"),
        (json!("   "), "must not be empty"),
        (json!("x".repeat(201)), "at most 200"),
        (json!("é".repeat(201)), "at most 200"),
        (json!("Jane\nRoe"), "control characters"),
        (json!("Jane\tRoe"), "control characters"),
        (json!("Jane\u{0}Roe"), "control characters"),
        (json!("Jane\u{1b}[31mRoe"), "control characters"),
        (json!("Jane\u{7f}Roe"), "control characters"),
    ];
    for (value, says) in cases {
        let body = referral_with("patient.name", value.clone());
        let reply = office
            .refuses_referral(&body, 422, "invalid_field", Some("patient.name"))
            .await;
        assert!(
            reply.message().contains(says),
            "{value}: expected {says:?}: {}",
            reply.message()
        );
    }
    // The bound is inclusive and counted in characters, not bytes.
    let (cases_before, _) = office.rows().await;
    let body = referral_with("patient.name", json!("é".repeat(200)));
    let reply = office.post_json("/api/v1/cases", &body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(office.rows().await.0, cases_before + 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let office = Office::start();
    let valid = referral("dermatology").to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
    ] {
        let before = office.rows().await;
        let reply = office
            .post_raw("/api/v1/cases", content_type, valid.clone())
            .await;
        reply.is_error(
            415,
            "unsupported_media_type",
            None,
            &format!("{content_type:?}"),
        );
        assert!(
            reply.message().contains("application/json"),
            "the message says what to send: {}",
            reply.message()
        );
        assert_eq!(
            office.rows().await,
            before,
            "{content_type:?}: rows written"
        );
    }
    // The same bytes with the right type are accepted, parameters and case
    // notwithstanding.
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        let reply = office
            .post_raw("/api/v1/cases", Some(content_type), valid.clone())
            .await;
        assert_eq!(reply.status, 201, "{content_type}: {}", reply.body);
    }
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413() {
    let office = Office::start();
    let limit = 1024 * 1024;

    // Over the limit: refused before it is parsed.
    let body = referral_with("history", json!("h".repeat(limit))).to_string();
    assert!(body.len() > limit);
    let before = office.rows().await;
    let reply = office
        .post_raw("/api/v1/cases", Some("application/json"), body)
        .await;
    reply.is_error(413, "payload_too_large", None, "over the limit");
    assert!(
        reply.message().contains(&limit.to_string()),
        "the message states the limit: {}",
        reply.message()
    );
    assert_eq!(office.rows().await, before);

    // Just under the limit: parsed, and refused for the field instead.
    let body = referral_with("history", json!("h".repeat(limit - 2048))).to_string();
    assert!(body.len() < limit);
    let reply = office
        .post_raw("/api/v1/cases", Some("application/json"), body)
        .await;
    reply.is_error(422, "invalid_field", Some("history"), "under the limit");
    assert_eq!(office.rows().await, before);
}

#[tokio::test]
async fn a_refused_edit_leaves_the_case_as_it_was() {
    let office = Office::start();
    let id = office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let path = format!("/api/v1/cases/{id}");
    let (status, before) = office.server.get(&path, &office.token).await;
    assert_eq!(status, 200, "{before}");

    let cases = [
        (json!({"priority": "asap"}), Some("priority")),
        (json!({"question": ""}), Some("question")),
        (
            json!({"patient": {"birth_date": "2999-01-01"}}),
            Some("patient.birth_date"),
        ),
        (
            json!({"patient": {"name": "Jane\u{0}Roe"}}),
            Some("patient.name"),
        ),
        (json!({"specialty": "cardiology"}), Some("specialty")),
        (
            json!({"clinical": {"body_site": "s".repeat(201)}}),
            Some("clinical.body_site"),
        ),
        // A valid change next to an invalid one is not applied either.
        (
            json!({"priority": "stat", "question": "Changed?", "patient": {"sex": "x"}}),
            Some("patient.sex"),
        ),
        (
            json!({"priority": "stat", "status": "submitted"}),
            Some("status"),
        ),
        (
            json!({"priority": "stat", "patient": {"age": 63}}),
            Some("patient.age"),
        ),
    ];
    let rows = office.rows().await;
    for (patch, field) in cases {
        let reply = office.patch_json(&path, &patch).await;
        reply.is_error(422, "invalid_field", field, &patch.to_string());
    }
    for body in ["{\"priority\": \"stat\"", "{\"priority\": \"stat\"} x", ""] {
        let request = office
            .server
            .http
            .patch(office.server.url(&path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .bearer_auth(&office.token);
        Reply::of(request)
            .await
            .is_error(400, "invalid_json", None, body);
    }
    assert_eq!(office.rows().await, rows, "a refused edit wrote rows");

    let (status, after) = office.server.get(&path, &office.token).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "a refused edit changed the case");
}

#[tokio::test]
async fn cancelling_needs_a_reason() {
    let office = Office::start();
    let id = office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let path = format!("/api/v1/cases/{id}/cancel");
    let rows = office.rows().await;
    let cases = [
        (json!({}), None, "missing field `reason`"),
        (json!({"reason": ""}), Some("reason"), "must not be empty"),
        (
            json!({"reason": "  \n "}),
            Some("reason"),
            "must not be empty",
        ),
        (json!({"reason": null}), Some("reason"), "invalid type"),
        (json!({"reason": 1}), Some("reason"), "invalid type"),
        (
            json!({"reason": "r".repeat(2001)}),
            Some("reason"),
            "at most 2000",
        ),
        (
            json!({"reason": "seen", "note": "x"}),
            Some("note"),
            "unknown field `note`",
        ),
    ];
    for (body, field, says) in cases {
        let reply = office.post_json(&path, &body).await;
        reply.is_error(422, "invalid_field", field, &body.to_string());
        assert!(
            reply.message().contains(says),
            "{body}: expected {says:?}: {}",
            reply.message()
        );
    }
    let reply = office.post_raw(&path, None, "{\"reason\": \"seen\"}").await;
    reply.is_error(415, "unsupported_media_type", None, "no content type");
    assert_eq!(office.rows().await, rows, "a refused cancel wrote rows");

    let (status, case) = office
        .server
        .get(&format!("/api/v1/cases/{id}"), &office.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(case["status"], "draft");
    assert_eq!(case["cancel_reason"], Value::Null);
    assert_eq!(case["cancelled_at"], Value::Null);
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let office = Office::start();
    for path in [
        "/api/v1/nope",
        "/api/v2/cases",
        "/api/v1/cases/x/y/z",
        // `/` and `/admin` are web pages; beside them, nothing.
        "/nope",
        "/admin/nope",
    ] {
        for token in [office.token.as_str(), ""] {
            let mut request = office.server.http.get(office.server.url(path));
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
            let reply = Reply::of(request).await;
            reply.is_error(404, "not_found", None, path);
            assert!(
                reply.message().contains(path),
                "{path}: the message names the path: {}",
                reply.message()
            );
        }
    }
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_405_json() {
    let office = Office::start();
    let id = office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let case = format!("/api/v1/cases/{id}");
    let cancel = format!("/api/v1/cases/{id}/cancel");
    let rows = office.rows().await;
    let http = &office.server.http;
    let cases = [
        (
            "DELETE /api/v1/cases",
            http.delete(office.server.url("/api/v1/cases")),
        ),
        (
            "PUT /api/v1/cases",
            http.put(office.server.url("/api/v1/cases")),
        ),
        ("DELETE case", http.delete(office.server.url(&case))),
        (
            "POST case",
            http.post(office.server.url(&case)).json(&json!({})),
        ),
        (
            "PUT case",
            http.put(office.server.url(&case)).json(&json!({})),
        ),
        ("GET cancel", http.get(office.server.url(&cancel))),
        (
            "POST /api/v1/me",
            http.post(office.server.url("/api/v1/me")),
        ),
    ];
    for (what, request) in cases {
        let reply = Reply::of(request.bearer_auth(&office.token)).await;
        reply.is_error(405, "method_not_allowed", None, what);
    }
    assert_eq!(office.rows().await, rows, "a refused method wrote rows");
    let (status, read) = office.server.get(&case, &office.token).await;
    assert_eq!((status, read["status"].as_str()), (200, Some("draft")));
}

#[tokio::test]
async fn a_malformed_case_id_is_404_like_an_unknown_one() {
    let office = Office::start();
    office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let unknown = "0190f5d2-8a4b-7c3d-9e0f-112233445566";
    let (status, missing) = office
        .server
        .get(&format!("/api/v1/cases/{unknown}"), &office.token)
        .await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "not_found");

    let rows = office.rows().await;
    for id in [
        "not-a-uuid",
        "123",
        "0190f5d2-8a4b-7c3d-9e0f-11223344556",
        "%00",
    ] {
        let reply = Reply::of(
            office
                .server
                .http
                .get(office.server.url(&format!("/api/v1/cases/{id}")))
                .bearer_auth(&office.token),
        )
        .await;
        reply.is_error(404, "not_found", None, id);
        assert_eq!(reply.body, missing, "{id}: differs from an unknown id");

        let reply = office
            .patch_json(&format!("/api/v1/cases/{id}"), &json!({"priority": "stat"}))
            .await;
        reply.is_error(404, "not_found", None, id);
        let reply = office
            .post_json(
                &format!("/api/v1/cases/{id}/cancel"),
                &json!({"reason": "seen"}),
            )
            .await;
        reply.is_error(404, "not_found", None, id);
    }
    assert_eq!(office.rows().await, rows, "a malformed id wrote rows");
}

#[tokio::test]
async fn authentication_comes_before_the_body() {
    let office = Office::start();
    let id = office
        .server
        .create_case(&office.token, "dermatology")
        .await;
    let rows = office.rows().await;
    let http = &office.server.http;
    let cases = [
        (
            "bad JSON",
            http.post(office.server.url("/api/v1/cases"))
                .header(CONTENT_TYPE, "application/json")
                .body("{not json"),
        ),
        (
            "text/plain",
            http.post(office.server.url("/api/v1/cases"))
                .header(CONTENT_TYPE, "text/plain")
                .body("hello"),
        ),
        (
            "invalid field",
            http.post(office.server.url("/api/v1/cases"))
                .json(&referral_with("specialty", json!("cardiology"))),
        ),
        (
            "bad patch",
            http.patch(office.server.url(&format!("/api/v1/cases/{id}")))
                .header(CONTENT_TYPE, "application/json")
                .body("[[["),
        ),
        (
            "cancel without reason",
            http.post(office.server.url(&format!("/api/v1/cases/{id}/cancel")))
                .json(&json!({})),
        ),
    ];
    for (what, request) in cases {
        let reply = Reply::of(request).await;
        reply.is_error(401, "unauthorized", None, what);
        assert_eq!(
            reply
                .headers
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{what}"
        );
    }
    assert_eq!(
        office.rows().await,
        rows,
        "an unauthenticated request wrote rows"
    );
}
