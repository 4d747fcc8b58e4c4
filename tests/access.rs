//! Who may call what. The table below is the access contract of every
//! route: a route that is served but missing from the table (or documented
//! in OpenAPI but missing) fails `openapi_documents_exactly_the_access_table`.
//! The other tests walk the table for every caller (anonymous, expired and
//! revoked tokens, the owner's office, another office, a specialist of the
//! case's specialty and of another, an admin): no valid token is 401, the
//! wrong role is 403, another office's or specialty's case is 404 exactly
//! like a case that does not exist, and no answer names an object outside
//! the caller's scope.

mod support;

use std::collections::BTreeSet;

use serde_json::json;
use support::Relay;
use support::routes::{
    Access, Route, Setup, Target, allowed, call, call_traced, case_with_image, names_an_object,
    nowhere, prepared, routes,
};

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
    // A path parameter is one the path names (query parameters were once
    // all documented as path parameters, so no client could send them).
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().expect("name");
                assert_eq!(
                    p["in"] == "path",
                    path.contains(&format!("{{{name}}}")),
                    "{method} {path}: parameter {name} is documented in {}",
                    p["in"]
                );
            }
        }
    }
}

/// Who calls a route in the matrix. The route's object (the target) always
/// belongs to the owner's office and is a dermatology case; the decoy is a
/// submitted radiology case of the other office.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    /// A token of the owner's own user, past its expiry.
    Expired,
    /// A token of the owner's own user, revoked.
    Revoked,
    Owner,
    OtherOffice,
    /// A dermatologist: the target's specialty.
    Specialist,
    /// A radiologist: the decoy's specialty, not the target's.
    OtherSpecialty,
    Admin,
}

/// Callers refused before anything is looked up come first, so the calls
/// that may change the target (the owner's, the specialist's) come last.
const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Expired,
    Caller::Revoked,
    Caller::OtherOffice,
    Caller::OtherSpecialty,
    Caller::Owner,
    Caller::Specialist,
    Caller::Admin,
];

/// What a call must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 401 `unauthorized`: no valid token.
    Unauthorized,
    /// 403 `forbidden`: the wrong role, whoever owns the object.
    Forbidden,
    /// 404 with exactly the body of an object that does not exist.
    Hidden,
    /// Past access control (any answer but 401, 403, 404 or a 5xx).
    Allowed,
}

fn expect(route: &Route, caller: Caller) -> Expect {
    use Caller::*;
    if route.access == Access::Public {
        return Expect::Allowed;
    }
    let role_fits = match (route.access, caller) {
        (_, Anonymous | Expired | Revoked) => return Expect::Unauthorized,
        (Access::Scoped, _) => true,
        (Access::Office, Owner | OtherOffice) => true,
        (Access::Specialist, Specialist | OtherSpecialty) => true,
        (Access::Admin, Admin) => true,
        _ => false,
    };
    if !role_fits {
        return Expect::Forbidden;
    }
    if names_an_object(route) && !sees_target(caller, route.setup) {
        Expect::Hidden
    } else {
        Expect::Allowed
    }
}

/// Whether `caller` may see the target, a dermatology case of the owner's
/// office brought to `setup`.
fn sees_target(caller: Caller, setup: Setup) -> bool {
    match caller {
        Caller::Owner | Caller::Admin => true,
        // Drafts are not the specialist's until submitted.
        Caller::Specialist => setup != Setup::Draft,
        _ => false,
    }
}

/// The ids by which an object of `target` could show up in an answer.
fn identifiers(target: &Target) -> Vec<&str> {
    let mut ids = vec![
        target.case.as_str(),
        target.image.as_str(),
        target.upload.as_str(),
    ];
    ids.extend(target.uids.iter().map(String::as_str));
    ids
}

/// A token of `user` that is past its one-second lifetime.
async fn expired_token(relay: &Relay, user: &str) -> String {
    let token = relay.ok(&[
        "admin",
        "token",
        "create",
        "--user",
        user,
        "--expires-in",
        "1s",
    ]);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    token
}

/// A token of `user` that was revoked.
fn revoked_token(relay: &Relay, user: &str) -> String {
    let token = relay.token_for(user);
    relay.ok(&["admin", "token", "revoke", &token]);
    token
}

/// Every route × every caller × the object's owner: the access contract in
/// one table. Foreign and missing objects are indistinguishable, and no
/// answer to anyone carries an object outside their scope (so lists hold
/// zero foreign rows).
#[tokio::test]
async fn every_route_answers_every_caller_as_its_access_says() {
    let relay = Relay::new();
    let (_, owner_user, owner) = relay.office_with_user("Owner Clinic");
    let (_, _, other_office) = relay.office_with_user("Other Clinic");
    let dermatologist = relay.specialist_token("dermatology");
    let radiologist = relay.specialist_token("radiology");
    let admin = relay.admin_token();
    let revoked = revoked_token(&relay, &owner_user);
    let expired = expired_token(&relay, &owner_user).await;
    // The matrix presents bad tokens far more often than the sign-in
    // throttle allows one address (tests/auth_throttle.rs covers that).
    let config = relay.dir().join("relay.toml");
    std::fs::write(&config, "auth_failure_burst = 100000\n").expect("config written");
    let config = config.to_str().expect("utf-8 path");
    let server = relay.start_with(
        &["serve", "--listen", "127.0.0.1:0", "--config", config],
        &[],
    );
    let token = |caller: Caller| -> &str {
        match caller {
            Caller::Anonymous => "",
            Caller::Expired => &expired,
            Caller::Revoked => &revoked,
            Caller::Owner => &owner,
            Caller::OtherOffice => &other_office,
            Caller::Specialist => &dermatologist,
            Caller::OtherSpecialty => &radiologist,
            Caller::Admin => &admin,
        }
    };

    // The other office's submitted radiology case: the radiologist's and
    // the other office's to see, nobody else's but the admin's.
    let decoy = case_with_image(&relay, &server, &other_office, "radiology").await;
    let (status, body) = server
        .post(
            &format!("/api/v1/cases/{}/submit", decoy.case),
            &other_office,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sees_decoy = |caller: Caller| {
        matches!(
            caller,
            Caller::OtherOffice | Caller::OtherSpecialty | Caller::Admin
        )
    };
    let nowhere = nowhere();

    let mut checked = 0;
    let mut refused = Vec::new();
    for r in routes() {
        // A fresh case per route, so one call cannot disturb the next.
        let target = prepared(&relay, &server, &owner, &dermatologist, r.setup).await;
        for caller in CALLERS {
            let what = format!("{} {} by {caller:?}", r.method, r.path);
            let expected = expect(&r, caller);
            let (status, body, request_id) = call_traced(&server, &r, &target, token(caller)).await;
            assert!(status < 500, "{what}: {status} {body}");
            if expected != Expect::Allowed {
                refused.push((what.clone(), request_id));
            }
            match expected {
                Expect::Unauthorized => {
                    assert_eq!(
                        (status, body["error"].as_str()),
                        (401, Some("unauthorized")),
                        "{what}: {body}"
                    );
                }
                Expect::Forbidden => {
                    assert_eq!(
                        (status, body["error"].as_str()),
                        (403, Some("forbidden")),
                        "{what}: {body}"
                    );
                }
                Expect::Hidden => {
                    assert_eq!(
                        (status, body["error"].as_str()),
                        (404, Some("not_found")),
                        "{what}: {body}"
                    );
                    let missing = call(&server, &r, &nowhere, token(caller)).await;
                    assert_eq!(
                        missing,
                        (status, body.clone()),
                        "{what}: unlike a missing one"
                    );
                }
                Expect::Allowed => {
                    assert!(allowed(status), "{what}: {status} {body}");
                }
            }
            // Zero foreign rows: an answer names no object the caller may
            // not see, in a list or anywhere else.
            let text = body.to_string();
            let mut hidden: Vec<&str> = Vec::new();
            if !sees_target(caller, r.setup) {
                hidden.extend(identifiers(&target));
            }
            if !sees_decoy(caller) {
                hidden.extend(identifiers(&decoy));
            }
            for id in hidden {
                assert!(!text.contains(id), "{what}: the answer names {id}: {text}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes().len() * CALLERS.len());
    // A refused call is no access to patient data: it leaves no event.
    let mut db = relay.database().await;
    for (what, request_id) in &refused {
        let events: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE request_id = ?")
                .bind(request_id)
                .fetch_one(&mut db)
                .await
                .expect("count");
        assert_eq!(events, 0, "{what} was refused but left an audit event");
    }
    assert!(refused.len() > routes().len() * 3);
}

#[tokio::test]
async fn another_office_gets_404_for_every_case_route_and_changes_nothing() {
    let relay = Relay::new();
    let (_, owner_user, owner) = relay.office_with_user("Owner Clinic");
    let (_, intruder_user, intruder) = relay.office_with_user("Other Clinic");
    let server = relay.start();
    let target = case_with_image(&relay, &server, &owner, "dermatology").await;
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
    let nowhere = nowhere();
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
