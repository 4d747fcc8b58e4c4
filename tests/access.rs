//! Who may call what. The table below is the access contract of every
//! route: a route that is served but missing from the table (or documented
//! in OpenAPI but missing) fails `openapi_documents_exactly_the_access_table`.
//! The other tests walk the table: no token is 401, the wrong role is 403,
//! and another office's case is 404, exactly like a case that does not exist.

mod support;

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Relay, Server, referral};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
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
enum Setup {
    Draft,
    Submitted,
    Reported,
}

struct Route {
    method: Method,
    path: &'static str,
    access: Access,
    setup: Setup,
}

const fn route(method: Method, path: &'static str, access: Access) -> Route {
    on(Setup::Draft, method, path, access)
}

const fn on(setup: Setup, method: Method, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        setup,
    }
}

fn routes() -> Vec<Route> {
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
fn body_for(route: &Route) -> Option<Value> {
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
struct Target {
    case: String,
    image: String,
    job: String,
    /// A reprocess run, for `/api/v1/admin/reprocess/{id}`.
    run: String,
    /// A resumable upload into the case, for `/api/v1/uploads/{id}`.
    upload: String,
    /// The image's DICOM UIDs, for `/dicomweb/…/{study}/…`: study, series,
    /// instance.
    uids: [String; 3],
}

/// A tus request for `path` (`/api/v1/uploads…`) about `case`.
fn tus(request: reqwest::RequestBuilder, method: &Method, case: &str) -> reqwest::RequestBuilder {
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

async fn call(server: &Server, route: &Route, target: &Target, token: &str) -> (u16, Value) {
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
    let url = server.url(
        &route
            .path
            .replace("{id}", id)
            .replace("{n}", "0")
            .replace("{study}", &target.uids[0])
            .replace("{series}", &target.uids[1])
            .replace("{instance}", &target.uids[2])
            .replace("{frames}", "1"),
    );
    let mut request = server.http.request(route.method.clone(), url);
    if route.path.starts_with("/api/v1/uploads") {
        request = tus(request, &route.method, &target.case);
    } else if route.path.ends_with("/images") && route.method == Method::POST {
        request = request
            .header("content-type", "image/jpeg")
            .body(support::fixture("photos/camera-plain.jpg"));
    } else if let Some(body) = body_for(route) {
        request = request.json(&body);
    }
    server.send(request, token).await
}

/// The CT fixture as a study of its own (new study, series and instance
/// UIDs): each case's DICOM is found only through that case.
fn unique_ct() -> Vec<u8> {
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

/// A draft case with one image (and so one derive job).
async fn case_with_image(relay: &Relay, server: &Server, token: &str) -> Target {
    let case = server.create_case(token, "dermatology").await;
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
async fn prepared(
    relay: &Relay,
    server: &Server,
    office: &str,
    specialist: &str,
    setup: Setup,
) -> Target {
    let target = case_with_image(relay, server, office).await;
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
/// so answers 404 outside the caller's scope); DICOMweb searches answer
/// an empty list instead, and STOW into a study names no stored object.
fn names_an_object(route: &Route) -> bool {
    let path = route.path;
    path.contains("{id}")
        || (path.contains("{study}")
            && route.method == Method::GET
            && !path.ends_with("/series")
            && !path.ends_with("/instances"))
}

/// Whether a status means the caller got past access control.
fn allowed(status: u16) -> bool {
    !matches!(status, 401 | 403 | 404)
}

#[tokio::test]
async fn openapi_documents_exactly_the_access_table() {
    let relay = Relay::new();
    let server = relay.start();
    let (status, doc) = server.get("/api/v1/openapi.json", "").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let table: BTreeSet<(String, String)> = routes()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(documented, table, "OpenAPI and the access table disagree");
    // Every protected operation declares the bearer scheme.
    for r in routes().iter().filter(|r| r.access != Access::Public) {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        assert!(
            op["security"].is_array(),
            "{} {} lacks security",
            r.method,
            r.path
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_route_answers_as_its_access_says() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Owner Clinic");
    let specialist = relay.specialist_token("dermatology");
    let admin = relay.admin_token();
    let server = relay.start();

    for r in routes() {
        // A fresh case per route, so one call cannot disturb the next.
        let target = prepared(&relay, &server, &office, &specialist, r.setup).await;
        let (status, body) = call(&server, &r, &target, "").await;
        match r.access {
            Access::Public => assert_eq!(status, 200, "{} {}: {body}", r.method, r.path),
            _ => {
                assert_eq!(
                    status, 401,
                    "{} {} without a token: {body}",
                    r.method, r.path
                );
                assert_eq!(body["error"], "unauthorized");
            }
        }
        let (with_office, _) = call(&server, &r, &target, &office).await;
        let (with_specialist, _) = call(&server, &r, &target, &specialist).await;
        let (with_admin, _) = call(&server, &r, &target, &admin).await;
        let expected = match r.access {
            Access::Public | Access::Scoped => (true, true, true),
            Access::Office => (true, false, false),
            Access::Admin => (false, false, true),
            Access::Specialist => (false, true, false),
        };
        // A specialist reading a draft (or its images) gets 404: drafts are
        // not theirs yet.
        let expected =
            if r.access == Access::Scoped && names_an_object(&r) && r.setup == Setup::Draft {
                (expected.0, false, expected.2)
            } else {
                expected
            };
        let got = (
            allowed(with_office),
            allowed(with_specialist),
            allowed(with_admin),
        );
        assert_eq!(
            got, expected,
            "{} {} (office {with_office}, specialist {with_specialist}, admin {with_admin})",
            r.method, r.path
        );
    }
}

#[tokio::test]
async fn another_office_gets_404_for_every_case_route_and_changes_nothing() {
    let relay = Relay::new();
    let (_, owner_user, owner) = relay.office_with_user("Owner Clinic");
    let (_, intruder_user, intruder) = relay.office_with_user("Other Clinic");
    let server = relay.start();
    let target = case_with_image(&relay, &server, &owner).await;
    let case = target.case.clone();
    // Its renditions are made before the snapshot, so only a refused
    // request could add a blob after it.
    server.derived(&owner, &target.image).await;
    let (_, before) = server.get(&format!("/api/v1/cases/{case}"), &owner).await;
    let blobs_before = support::files_under(&relay.data_dir().join("blobs/sha256"));

    let case_routes: Vec<Route> = routes()
        .into_iter()
        .filter(|r| names_an_object(r) && matches!(r.access, Access::Scoped | Access::Office))
        .collect();
    assert!(case_routes.len() >= 8);
    let nowhere = Target {
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
    };
    for r in &case_routes {
        let (status, body) = call(&server, r, &target, &intruder).await;
        assert_eq!(
            status, 404,
            "{} {} by another office: {body}",
            r.method, r.path
        );
        assert_eq!(body["error"], "not_found");
        // Indistinguishable from a case or image that does not exist.
        let (status, missing) = call(&server, r, &nowhere, &intruder).await;
        assert_eq!((status, &missing), (404, &body), "{} {}", r.method, r.path);
    }
    assert_eq!(
        support::files_under(&relay.data_dir().join("blobs/sha256")),
        blobs_before,
        "a refused upload stored a blob"
    );
    let (_, listing) = server.get("/api/v1/cases", &intruder).await;
    assert_eq!(listing["total"], 0);
    assert_eq!(listing["items"], json!([]));

    let (_, after) = server.get(&format!("/api/v1/cases/{case}"), &owner).await;
    assert_eq!(before, after, "a refused request changed the case");
    let mut db = relay.database().await;
    let intruder_events: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE actor = ? AND object_id IN (?, ?)",
    )
    .bind(&intruder_user)
    .bind(&case)
    .bind(&target.image)
    .fetch_one(&mut db)
    .await
    .expect("count");
    assert_eq!(
        intruder_events, 0,
        "a refused request was recorded as access to the case"
    );
    let owner_events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE actor = ?")
        .bind(&owner_user)
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert!(owner_events >= 3);
}

#[tokio::test]
async fn specialists_see_only_their_specialty_and_never_drafts() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Referring Clinic");
    let dermatologist = relay.specialist_token("dermatology");
    let radiologist = relay.specialist_token("radiology");
    let server = relay.start();
    let derm = server.create_case(&office, "dermatology").await;
    let draft = server.create_case(&office, "dermatology").await;
    let rad = server.create_case(&office, "radiology").await;
    // Submission arrives with ingest; here the state is set directly.
    let mut db = relay.database().await;
    for id in [&derm, &rad] {
        sqlx::query("UPDATE cases SET status = 'submitted' WHERE id = ?")
            .bind(id)
            .execute(&mut db)
            .await
            .expect("submit");
    }

    let (status, body) = server
        .get(&format!("/api/v1/cases/{derm}"), &dermatologist)
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("submitted")));
    for (token, id) in [
        (&dermatologist, &rad),
        (&dermatologist, &draft),
        (&radiologist, &derm),
    ] {
        let (status, _) = server.get(&format!("/api/v1/cases/{id}"), token).await;
        assert_eq!(status, 404);
    }
    let (_, list) = server.get("/api/v1/cases", &dermatologist).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, vec![derm.as_str()]);
    let (_, list) = server.get("/api/v1/cases", &radiologist).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], rad.as_str());
}

#[tokio::test]
async fn admins_see_every_office_and_their_reads_are_audited() {
    let relay = Relay::new();
    let (_, _, a) = relay.office_with_user("Clinic A");
    let (_, _, b) = relay.office_with_user("Clinic B");
    let admin = relay.admin_token();
    let server = relay.start();
    let case_a = server.create_case(&a, "dermatology").await;
    server.create_case(&b, "radiology").await;

    let (_, list) = server.get("/api/v1/cases", &admin).await;
    assert_eq!(list["total"], 2);
    let (status, _) = server.get(&format!("/api/v1/cases/{case_a}"), &admin).await;
    assert_eq!(status, 200);
    let (_, me) = server.get("/api/v1/me", &admin).await;
    let admin_id = me["user_id"].as_str().expect("id");
    let (_, events) = server
        .get(
            &format!("/api/v1/audit?actor={admin_id}&object_id={case_a}"),
            &admin,
        )
        .await;
    let actions: BTreeSet<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, BTreeSet::from(["case.list", "case.read"]));
    assert!(
        events["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["actor_role"] == "admin")
    );
}

#[tokio::test]
async fn me_reports_who_the_token_signs_in_as() {
    let relay = Relay::new();
    let (office, user, token) = relay.office_with_user("Clinic");
    let radiologist = relay.specialist_token("radiology");
    let server = relay.start();
    let (status, me) = server.get("/api/v1/me", &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"user_id": user, "role": "office", "office_id": office, "specialty": null})
    );
    let (_, me) = server.get("/api/v1/me", &radiologist).await;
    assert_eq!(
        (me["role"].as_str(), me["specialty"].as_str()),
        (Some("specialist"), Some("radiology"))
    );
}
