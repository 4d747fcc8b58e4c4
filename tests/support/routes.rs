//! Every route of the API, with who may call it and the state its case
//! must be in, and how to call each one with a body it accepts. The access
//! tests walk this table for every caller; the audit tests for the events
//! each call leaves. A route served but missing here fails
//! `openapi_documents_exactly_the_access_table` (tests/access.rs).

use reqwest::Method;
use serde_json::{Value, json};

use super::{Relay, Server, answer_body, referral};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (health, readiness, metrics carry no patient data).
    Public,
    /// Any signed-in role; results are scoped to the caller.
    Scoped,
    /// Office staff only.
    Office,
    /// Administrators only.
    Admin,
    /// Specialists only.
    Specialist,
}

/// The state a case is brought to before a route is called on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Draft,
    Submitted,
    Reported,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub setup: Setup,
}

pub const fn route(method: Method, path: &'static str, access: Access) -> Route {
    on(Setup::Draft, method, path, access)
}

pub const fn on(setup: Setup, method: Method, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        setup,
    }
}

pub fn routes() -> Vec<Route> {
    use Access::*;
    vec![
        route(Method::GET, "/healthz", Public),
        route(Method::GET, "/readyz", Public),
        route(Method::GET, "/metrics", Public),
        route(Method::GET, "/api/v1/me", Scoped),
        route(Method::POST, "/api/v1/cases", Office),
        route(Method::GET, "/api/v1/cases", Scoped),
        route(Method::GET, "/api/v1/cases/{id}", Scoped),
        route(Method::PATCH, "/api/v1/cases/{id}", Office),
        route(Method::POST, "/api/v1/cases/{id}/cancel", Office),
        route(Method::POST, "/api/v1/cases/{id}/submit", Office),
        route(Method::POST, "/api/v1/cases/{id}/images", Office),
        route(Method::POST, "/api/v1/uploads", Office),
        route(Method::PATCH, "/api/v1/uploads/{id}", Office),
        route(Method::DELETE, "/api/v1/uploads/{id}", Office),
        route(Method::GET, "/api/v1/cases/{id}/images", Scoped),
        route(Method::GET, "/api/v1/cases/{id}/studies", Scoped),
        route(Method::GET, "/api/v1/images/{id}", Scoped),
        route(Method::GET, "/api/v1/images/{id}/original", Scoped),
        route(Method::GET, "/api/v1/images/{id}/thumbnail", Scoped),
        route(Method::GET, "/api/v1/images/{id}/preview", Scoped),
        route(
            Method::GET,
            "/api/v1/images/{id}/frames/{n}/rendered",
            Scoped,
        ),
        route(Method::GET, "/api/v1/worklist", Specialist),
        route(Method::POST, "/dicomweb/studies", Office),
        route(Method::GET, "/dicomweb/studies", Scoped),
        route(Method::POST, "/dicomweb/studies/{study}", Office),
        route(Method::GET, "/dicomweb/studies/{study}", Scoped),
        route(Method::GET, "/dicomweb/studies/{study}/metadata", Scoped),
        route(Method::GET, "/dicomweb/studies/{study}/series", Scoped),
        route(Method::GET, "/dicomweb/studies/{study}/instances", Scoped),
        route(Method::GET, "/dicomweb/series", Scoped),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/metadata",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered",
            Scoped,
        ),
        route(
            Method::GET,
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            Scoped,
        ),
        on(
            Setup::Submitted,
            Method::POST,
            "/api/v1/cases/{id}/claim",
            Specialist,
        ),
        on(
            Setup::Submitted,
            Method::POST,
            "/api/v1/cases/{id}/claim/renew",
            Specialist,
        ),
        on(
            Setup::Submitted,
            Method::POST,
            "/api/v1/cases/{id}/release",
            Specialist,
        ),
        on(
            Setup::Submitted,
            Method::PUT,
            "/api/v1/cases/{id}/report",
            Specialist,
        ),
        on(
            Setup::Submitted,
            Method::POST,
            "/api/v1/cases/{id}/report/sign",
            Specialist,
        ),
        on(
            Setup::Reported,
            Method::POST,
            "/api/v1/cases/{id}/report/addenda",
            Specialist,
        ),
        on(
            Setup::Reported,
            Method::GET,
            "/api/v1/cases/{id}/report",
            Scoped,
        ),
        on(
            Setup::Reported,
            Method::GET,
            "/api/v1/cases/{id}/report.html",
            Scoped,
        ),
        on(
            Setup::Submitted,
            Method::POST,
            "/api/v1/cases/{id}/request-info",
            Specialist,
        ),
        route(Method::POST, "/api/v1/cases/{id}/answer", Office),
        on(
            Setup::Reported,
            Method::POST,
            "/api/v1/cases/{id}/acknowledge",
            Office,
        ),
        on(
            Setup::Submitted,
            Method::GET,
            "/api/v1/cases/{id}/messages",
            Scoped,
        ),
        on(
            Setup::Submitted,
            Method::GET,
            "/api/v1/cases/{id}/history",
            Scoped,
        ),
        route(Method::GET, "/api/v1/notifications", Office),
        route(Method::GET, "/api/v1/audit", Admin),
        route(Method::GET, "/api/v1/admin/jobs", Admin),
        route(Method::GET, "/api/v1/admin/jobs/{id}", Admin),
        route(Method::POST, "/api/v1/admin/jobs/{id}/retry", Admin),
        route(Method::POST, "/api/v1/admin/jobs/{id}/cancel", Admin),
        route(Method::POST, "/api/v1/admin/jobs/retry-dead", Admin),
        route(Method::GET, "/api/v1/admin/reprocess", Admin),
        route(Method::POST, "/api/v1/admin/reprocess", Admin),
        route(Method::GET, "/api/v1/admin/reprocess/{id}", Admin),
    ]
}

/// A body each route accepts, so a refusal is about access, not input.
pub fn body_for(route: &Route) -> Option<Value> {
    match (route.method.as_str(), route.path) {
        ("POST", "/api/v1/cases") => Some(referral("dermatology")),
        ("POST", "/api/v1/admin/reprocess") => Some(json!({"kind": "verify", "dry_run": true})),
        ("PATCH", _) => Some(json!({"priority": "stat"})),
        ("POST", p) if p.ends_with("/cancel") => Some(json!({"reason": "no longer needed"})),
        ("PUT", _) => Some(json!({"impression": "benign"})),
        ("POST", p)
            if p.ends_with("/addenda")
                || p.ends_with("/request-info")
                || p.ends_with("/answer") =>
        {
            Some(json!({"text": "see the second image"}))
        }
        _ => None,
    }
}

/// The case (or, for `/api/v1/images/…`, the image) a route is called on.
pub struct Target {
    pub case: String,
    pub image: String,
    pub job: String,
    /// A reprocess run, for `/api/v1/admin/reprocess/{id}`.
    pub run: String,
    /// A resumable upload into the case, for `/api/v1/uploads/{id}`.
    pub upload: String,
    /// The image's DICOM UIDs, for `/dicomweb/…/{study}/…`: study, series,
    /// instance.
    pub uids: [String; 3],
}

/// A tus request for `path` (`/api/v1/uploads…`) about `case`.
pub fn tus(
    request: reqwest::RequestBuilder,
    method: &Method,
    case: &str,
) -> reqwest::RequestBuilder {
    use base64::Engine;
    let request = request.header("tus-resumable", "1.0.0");
    match *method {
        Method::POST => request.header("upload-length", "10").header(
            "upload-metadata",
            format!(
                "case {}",
                base64::engine::general_purpose::STANDARD.encode(case)
            ),
        ),
        Method::PATCH => request
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", "0")
            .body(b"abc".to_vec()),
        _ => request,
    }
}

pub async fn call(server: &Server, route: &Route, target: &Target, token: &str) -> (u16, Value) {
    let (status, body, _) = call_traced(server, route, target, token).await;
    (status, body)
}

/// The URL of `route` with its placeholders filled in from `target`.
pub fn target_url(server: &Server, route: &Route, target: &Target) -> String {
    let id = if route.path.starts_with("/api/v1/images/") {
        &target.image
    } else if route.path.starts_with("/api/v1/admin/jobs/") {
        &target.job
    } else if route.path.starts_with("/api/v1/admin/reprocess/") {
        &target.run
    } else if route.path.starts_with("/api/v1/uploads/") {
        &target.upload
    } else {
        &target.case
    };
    server.url(
        &route
            .path
            .replace("{id}", id)
            .replace("{n}", "0")
            .replace("{study}", &target.uids[0])
            .replace("{series}", &target.uids[1])
            .replace("{instance}", &target.uids[2])
            .replace("{frames}", "1"),
    )
}

/// Calls `route` on `target` as `call` does, and also returns the request id
/// Relay answered with (its audit events carry it).
pub async fn call_traced(
    server: &Server,
    route: &Route,
    target: &Target,
    token: &str,
) -> (u16, Value, String) {
    let url = target_url(server, route, target);
    let mut request = server.http.request(route.method.clone(), url);
    if route.path.starts_with("/api/v1/uploads") {
        request = tus(request, &route.method, &target.case);
    } else if route.path.ends_with("/images") && route.method == Method::POST {
        request = request
            .header("content-type", "image/jpeg")
            .body(super::fixture("photos/camera-plain.jpg"));
    } else if route.path == "/dicomweb/studies" && route.method == Method::POST {
        // STOW-RS of one new study.
        let boundary = "relay-route-boundary";
        let mut body =
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
        body.extend_from_slice(&unique_ct());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        request = request
            .header(
                "content-type",
                format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
            )
            .body(body);
    } else if let Some(body) = body_for(route) {
        request = request.json(&body);
    }
    if !token.is_empty() {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every answer carries x-request-id")
        .to_owned();
    (status, answer_body(status, response).await, request_id)
}

/// The CT fixture as a study of its own (new study, series and instance
/// UIDs): each case's DICOM is found only through that case.
pub fn unique_ct() -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom/CT_small.dcm");
    let mut object = dicom_object::open_file(path).expect("fixture");
    let root = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
    for (tag, suffix) in [
        (tags::STUDY_INSTANCE_UID, "1"),
        (tags::SERIES_INSTANCE_UID, "2"),
        (tags::SOP_INSTANCE_UID, "3"),
    ] {
        object.put(DataElement::new(
            tag,
            VR::UI,
            PrimitiveValue::from(format!("{root}.{suffix}")),
        ));
    }
    let meta = object.meta_mut();
    meta.media_storage_sop_instance_uid = format!("{root}.3");
    meta.update_information_group_length();
    let mut bytes = Vec::new();
    object.write_all(&mut bytes).expect("write");
    bytes
}

/// Ids of objects that do not exist.
pub fn nowhere() -> Target {
    Target {
        case: "01a20000-0000-7000-8000-000000000000".to_owned(),
        image: "01a20000-0000-7000-8000-000000000001".to_owned(),
        job: "0".to_owned(),
        run: "run_0".to_owned(),
        upload: "u00000000000000000000000000000000".to_owned(),
        uids: [
            "2.25.1".to_owned(),
            "2.25.2".to_owned(),
            "2.25.3".to_owned(),
        ],
    }
}

/// A draft case with one image (and so one derive job).
pub async fn case_with_image(
    relay: &Relay,
    server: &Server,
    token: &str,
    specialty: &str,
) -> Target {
    let case = server.create_case(token, specialty).await;
    let image = server
        .upload_bytes(
            token,
            &case,
            "CT_small.dcm",
            unique_ct(),
            "application/dicom",
        )
        .await;
    let mut db = relay.database().await;
    let job: i64 = sqlx::query_scalar("SELECT MAX(id) FROM jobs")
        .fetch_one(&mut db)
        .await
        .expect("job");
    let run = relay.ok(&["reprocess", "verify", "--dry-run"]);
    let created = tus(
        server.http.post(server.url("/api/v1/uploads")),
        &Method::POST,
        &case,
    )
    .bearer_auth(token)
    .send()
    .await
    .expect("request sent");
    assert_eq!(created.status(), 201, "a resumable upload is created");
    let upload = created
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.rsplit('/').next())
        .expect("location")
        .to_owned();
    let uid = |key: &str| image["metadata"][key].as_str().expect("a UID").to_owned();
    Target {
        case,
        image: image["id"].as_str().expect("image id").to_owned(),
        job: job.to_string(),
        run,
        upload,
        uids: [
            uid("study_instance_uid"),
            uid("series_instance_uid"),
            uid("sop_instance_uid"),
        ],
    }
}

/// Brings a fresh case with an image to `setup`, as its office and a
/// dermatologist would.
pub async fn prepared(
    relay: &Relay,
    server: &Server,
    office: &str,
    specialist: &str,
    setup: Setup,
) -> Target {
    let target = case_with_image(relay, server, office, "dermatology").await;
    let case = &target.case;
    if setup != Setup::Draft {
        let (status, body) = server
            .post(&format!("/api/v1/cases/{case}/submit"), office, json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    if setup == Setup::Reported {
        for (method, path, body) in [
            (Method::POST, "claim", json!({})),
            (
                Method::PUT,
                "report",
                json!({"impression": "benign naevus"}),
            ),
            (Method::POST, "report/sign", json!({})),
        ] {
            let request = server
                .http
                .request(method, server.url(&format!("/api/v1/cases/{case}/{path}")))
                .json(&body);
            let (status, body) = server.send(request, specialist).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    target
}

/// Whether the route reads or writes one case, image or DICOM object (and
/// so answers 404 outside the caller's scope); a resumable upload names its
/// case in its metadata. DICOMweb searches answer an empty list instead, and
/// STOW into a study names no stored object.
pub fn names_an_object(route: &Route) -> bool {
    let path = route.path;
    path.contains("{id}")
        || (path == "/api/v1/uploads" && route.method == Method::POST)
        || (path.contains("{study}")
            && route.method == Method::GET
            && !path.ends_with("/series")
            && !path.ends_with("/instances"))
}

/// Whether a status means the caller got past access control.
pub fn allowed(status: u16) -> bool {
    !matches!(status, 401 | 403 | 404)
}
