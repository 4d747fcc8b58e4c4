//! The web pages: sessions, CSRF and scope over plain HTTP, and the whole
//! consult loop in a real headless Chromium against the real `relay serve`.

mod support;

use std::path::Path;

use reqwest::redirect::Policy;
use serde_json::{Value, json};
use support::browser::{Browser, Driver};
use support::{PATIENT_NAME, Relay, Server};

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// A form body, as a browser sends it.
fn form<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_ref()), encode(v.as_ref())))
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs in with `token` through the form; returns the `Set-Cookie` line.
async fn sign_in(server: &Server, token: &str) -> String {
    let response = client()
        .post(server.url("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", token)]))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 303, "sign-in answers a redirect");
    response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// The `name=value` part of a `Set-Cookie` line.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_owned()
}

/// GET `path` with the session cookie; returns the status, the redirect
/// target (if any) and the body.
async fn page(server: &Server, cookie: &str, path: &str) -> (u16, String, String) {
    let response = client()
        .get(server.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, location, response.text().await.expect("body"))
}

/// The CSRF token a page carries for its scripts.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta")
        + 27;
    html[at..at + 64].to_owned()
}

/// POST with the session cookie (and the CSRF header when given).
async fn cookie_post(
    server: &Server,
    cookie: &str,
    path: &str,
    csrf: Option<&str>,
) -> (u16, Value) {
    let mut request = client()
        .post(server.url(path))
        .header("cookie", cookie)
        .json(&json!({}));
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_pages_are_not_cached() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let server = relay.start();
    let set_cookie = sign_in(&server, &office).await;
    assert!(set_cookie.starts_with("relay_session="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    // The secret is not the token and the database keeps only its digest.
    let secret = cookie_pair(&set_cookie)["relay_session=".len()..].to_owned();
    assert_eq!(secret.len(), 64);
    assert!(!office.contains(&secret));
    let mut db = relay.database().await;
    let keys: Vec<String> = sqlx::query_scalar("SELECT key_sha256 FROM web_sessions")
        .fetch_all(&mut db)
        .await
        .expect("sessions");
    assert_eq!(keys.len(), 1);
    assert_ne!(keys[0], secret);

    let (status, _, html) = page(&server, &cookie_pair(&set_cookie), "/office").await;
    assert_eq!(status, 200, "{html}");
    let response = client()
        .get(server.url("/office"))
        .header("cookie", cookie_pair(&set_cookie))
        .send()
        .await
        .expect("page");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("cache-control"), "no-store");
    let csp = header("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Signed-out browsers are sent to the sign-in page.
    let (status, location, _) = page(&server, "", "/office").await;
    assert_eq!((status, location.as_str()), (303, "/sign-in"));
    // A wrong token is refused on the form, without a cookie.
    let response = client()
        .post(server.url("/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", "relay_nope")]))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 401);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn over_tls_the_cookie_is_secure_and_host_bound() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "https://relay.clinic.example",
        ],
        &[],
    );
    let set_cookie = sign_in(&server, &office).await;
    assert!(
        set_cookie.starts_with("__Host-relay_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
}

#[tokio::test]
async fn a_cookie_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let server = relay.start();
    let case = server.create_case(&office, "dermatology").await;
    server
        .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let cookie = cookie_pair(&sign_in(&server, &office).await);
    let (_, _, html) = page(&server, &cookie, &format!("/office/cases/{case}")).await;
    let csrf = csrf_of(&html);
    let submit = format!("/api/v1/cases/{case}/submit");
    for wrong in [None, Some("0".repeat(64).as_str()), Some("")] {
        let (status, body) = cookie_post(&server, &cookie, &submit, wrong).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("csrf_failed")),
            "{body}"
        );
    }
    let (_, now) = server.get(&format!("/api/v1/cases/{case}"), &office).await;
    assert_eq!(now["status"], "draft", "a refused post changed the case");
    // Reads need no token; the right token lets the post through.
    let response = client()
        .get(server.url(&format!("/api/v1/cases/{case}")))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let (status, body) = cookie_post(&server, &cookie, &submit, Some(&csrf)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("submitted")),
        "{body}"
    );
    // A CSRF-less form post (sign-out) is refused too, and the session lives.
    let response = client()
        .post(server.url("/sign-out"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", "forged")]))
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), 403);
    assert_eq!(page(&server, &cookie, "/office").await.0, 200);
    // Another site's page cannot sign a browser in (login CSRF).
    let response = client()
        .post(server.url("/sign-in"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", office.as_str())]))
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 403);
    assert!(response.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn sign_out_and_token_revocation_end_the_session() {
    let relay = Relay::new();
    let (_, user, office) = relay.office_with_user("Main Street");
    let server = relay.start();
    // Sign-out deletes the session: the old cookie no longer works anywhere.
    let cookie = cookie_pair(&sign_in(&server, &office).await);
    let (_, _, html) = page(&server, &cookie, "/office").await;
    let response = client()
        .post(server.url("/sign-out"))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("csrf", csrf_of(&html))]))
        .send()
        .await
        .expect("sign out");
    assert_eq!(response.status(), 303);
    let cleared = response.headers()["set-cookie"].to_str().expect("ascii");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(page(&server, &cookie, "/office").await.1, "/sign-in");
    let response = client()
        .get(server.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(response.status(), 401);
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "web_sessions").await, 0);

    // Revoking the token ends a session made from it, at once.
    let cookie = cookie_pair(&sign_in(&server, &office).await);
    assert_eq!(page(&server, &cookie, "/office").await.0, 200);
    let tokens = relay.ok(&["admin", "token", "list", "--user", &user]);
    let token_id = tokens
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .next()
        .expect("a token");
    relay.ok(&["admin", "token", "revoke", &token_id]);
    assert_eq!(page(&server, &cookie, "/office").await.1, "/sign-in");
    let response = client()
        .get(server.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(response.status(), 401);
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_events WHERE action LIKE 'session.%' ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .expect("audit");
    assert_eq!(events, ["session.create", "session.end", "session.create"]);
}

#[tokio::test]
async fn case_pages_outside_the_callers_scope_are_404_like_missing_ones() {
    let relay = Relay::new();
    let (_, _, owner) = relay.office_with_user("Owner Clinic");
    let (_, _, other) = relay.office_with_user("Other Clinic");
    let dermatologist = relay.specialist_token("dermatology");
    let radiologist = relay.specialist_token("radiology");
    let admin = relay.admin_token();
    let server = relay.start();
    let case = server.create_case(&owner, "dermatology").await;
    server
        .upload(&owner, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    server
        .post(&format!("/api/v1/cases/{case}/submit"), &owner, json!({}))
        .await;
    let missing = "01a20000-0000-7000-8000-000000000000";

    let owner = cookie_pair(&sign_in(&server, &owner).await);
    let other = cookie_pair(&sign_in(&server, &other).await);
    let derm = cookie_pair(&sign_in(&server, &dermatologist).await);
    let radio = cookie_pair(&sign_in(&server, &radiologist).await);
    let admin = cookie_pair(&sign_in(&server, &admin).await);
    let office_page = format!("/office/cases/{case}");
    let specialist_page = format!("/specialist/cases/{case}");

    let mut db = relay.database().await;
    let reads_before = case_reads(&mut db, &case).await;
    let (status, _, html) = page(&server, &owner, &office_page).await;
    assert_eq!(status, 200);
    assert!(html.contains(PATIENT_NAME));
    let (status, _, html) = page(&server, &derm, &specialist_page).await;
    assert_eq!(status, 200);
    assert!(html.contains("Claim this case"));
    let reads_shown = case_reads(&mut db, &case).await;
    assert!(reads_shown > reads_before, "the pages shown were audited");

    for (who, cookie, path) in [
        ("another office", &other, office_page.clone()),
        (
            "another office, missing case",
            &other,
            format!("/office/cases/{missing}"),
        ),
        ("another specialty", &radio, specialist_page.clone()),
        (
            "another specialty, missing case",
            &radio,
            format!("/specialist/cases/{missing}"),
        ),
        (
            "a malformed id",
            &owner,
            "/office/cases/not-a-case".to_owned(),
        ),
    ] {
        let (status, _, html) = page(&server, cookie, &path).await;
        assert_eq!(status, 404, "{who}: {path}");
        assert!(!html.contains(PATIENT_NAME), "{who} saw the patient");
    }
    // Pages of another role are refused without reading anything.
    for (cookie, path) in [
        (&derm, office_page.as_str()),
        (&owner, specialist_page.as_str()),
        (&owner, "/admin/audit"),
        (&derm, "/admin/jobs"),
        (&admin, "/office"),
    ] {
        assert_eq!(page(&server, cookie, path).await.0, 403, "{path}");
    }
    // The refused pages read nothing.
    assert_eq!(case_reads(&mut db, &case).await, reads_shown);
}

async fn case_reads(db: &mut sqlx::SqliteConnection, case: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_events WHERE action = 'case.read' AND object_id = $1",
    )
    .bind(case)
    .fetch_one(db)
    .await
    .expect("audit")
}

#[tokio::test]
async fn every_page_answers_its_role() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let specialist = relay.specialist_token("dermatology");
    let admin = relay.admin_token();
    let server = relay.start();
    let case = server.create_case(&office, "dermatology").await;
    let office = cookie_pair(&sign_in(&server, &office).await);
    let specialist = cookie_pair(&sign_in(&server, &specialist).await);
    let admin = cookie_pair(&sign_in(&server, &admin).await);
    let pages = [
        ("/office", 200, 403, 403),
        ("/office/cases/new", 200, 403, 403),
        (&format!("/office/cases/{case}") as &str, 200, 403, 403),
        ("/specialist", 403, 200, 403),
        ("/admin", 403, 403, 200),
        ("/admin/offices", 403, 403, 200),
        ("/admin/users", 403, 403, 200),
        ("/admin/tokens", 403, 403, 200),
        ("/admin/jobs", 403, 403, 200),
        ("/admin/jobs?state=dead", 403, 403, 200),
        ("/admin/reprocess", 403, 403, 200),
        ("/admin/audit", 403, 403, 200),
    ];
    for (path, o, s, a) in pages {
        let got = (
            page(&server, &office, path).await.0,
            page(&server, &specialist, path).await.0,
            page(&server, &admin, path).await.0,
        );
        assert_eq!(got, (o, s, a), "{path}");
        assert_eq!(page(&server, "", path).await.1, "/sign-in", "{path}");
    }
    for asset in ["app.css", "app.js", "upload.js", "viewer.js", "report.js"] {
        let response = client()
            .get(server.url(&format!("/assets/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
    }
    // The audit search takes its filters in the body, with the CSRF token.
    let (_, _, html) = page(&server, &admin, "/admin/audit").await;
    let search = |csrf: String| {
        client()
            .post(server.url("/admin/audit"))
            .header("cookie", &admin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[("csrf", csrf), ("action", "session.".to_owned())]))
            .send()
    };
    assert_eq!(
        search("nope".to_owned()).await.expect("search").status(),
        403
    );
    let found = search(csrf_of(&html)).await.expect("search");
    assert_eq!(found.status(), 200);
    let found = found.text().await.expect("html");
    assert_eq!(
        found.matches("<td>session.create</td>").count(),
        3,
        "{found}"
    );
}

// ---- the whole loop in a browser -------------------------------------------

fn fixture_path(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(path)
        .display()
        .to_string()
}

async fn sign_in_browser(b: &mut Browser, server: &Server, token: &str, home: &str) {
    b.goto(&server.url("/")).await;
    b.wait_for_path("/sign-in").await;
    b.type_into("#token", token).await;
    b.click_away("button[type=submit]").await;
    b.wait_for_path(home).await;
}

async fn sign_out_browser(b: &mut Browser) {
    b.click_away(".sign-out button").await;
    b.wait_for_path("/sign-in").await;
}

/// The text of the element `css` as the script sees it.
async fn text_of(b: &Browser, css: &str) -> String {
    b.script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
        json!([css]),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_loop_in_a_browser() {
    let Some(driver) = Driver::start("web::the_whole_loop_in_a_browser") else {
        return;
    };
    let started = std::time::Instant::now();
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street Family Practice");
    let radiologist = relay.specialist_token("radiology");
    let admin = relay.admin_token();
    let server = relay.start();
    let mut b = driver.session(1366, 900).await;

    // -- the office refers a case -------------------------------------------
    sign_in_browser(&mut b, &server, &office, "/office").await;
    let cookie = b.cookie("relay_session").await;
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    let visible = b.script("return document.cookie;", json!([])).await;
    assert!(
        !visible
            .as_str()
            .unwrap_or_default()
            .contains("relay_session")
    );

    b.click_away("a.button.primary[href='/office/cases/new']")
        .await;
    b.wait_for_path("/office/cases/new").await;
    b.type_into("[name='patient.name']", PATIENT_NAME).await;
    b.type_into("[name='patient.mrn']", "MRN-77120").await;
    // Chromium's date field takes the digits in the locale's order (en-US).
    b.type_into("[name='patient.birth_date']", "07141961").await;
    b.select("[name='patient.sex']", "male").await;
    b.select("[name='specialty']", "radiology").await;
    b.select("[name='priority']", "urgent").await;
    b.type_into("[name='question']", "Headache for 3 weeks. Mass?")
        .await;
    b.type_into("[name='history']", "Migraine since youth; new pattern.")
        .await;
    b.type_into("[name='clinical.modality']", "MR").await;
    b.type_into("[name='clinical.body_part']", "head").await;
    b.screenshot("office-new-case").await;
    b.click_away("#new-case button[type=submit]").await;
    b.wait_for(
        "the case page",
        "location.pathname.startsWith('/office/cases/0')",
    )
    .await;
    let case = b
        .url()
        .await
        .rsplit('/')
        .next()
        .expect("case id")
        .to_owned();
    b.wait_for_path(&format!("/office/cases/{case}")).await;
    let (_, api_case) = server.get(&format!("/api/v1/cases/{case}"), &office).await;
    assert_eq!(api_case["patient"]["name"], PATIENT_NAME);
    assert_eq!(api_case["patient"]["birth_date"], "1961-07-14");
    assert_eq!(api_case["specialty"], "radiology");
    assert_eq!(api_case["clinical"]["modality"], "MR");

    // Three files at once through the page's file input: a photo with a
    // location, a multi-frame DICOM, and a HEIC the office must re-export.
    let files = [
        fixture_path("photos/camera-gps.jpg"),
        fixture_path("dicom/emri_small.dcm"),
        fixture_path("bad/heic-photo.heic"),
    ];
    b.type_into("#files", &files.join("\n")).await;
    b.wait_for(
        "three upload results",
        "document.querySelectorAll('.upload-row.done, .upload-row.failed').length === 3",
    )
    .await;
    assert_eq!(b.count(".upload-row.done").await, 2);
    assert_eq!(
        b.count(".upload-row .gps").await,
        1,
        "location removed is shown"
    );
    let rows = text_of(&b, "#upload-list").await;
    let gps_sha = "ac3af360038ea72d8d303cb85ddce3188b29c1e2edc0688d6aeef96adec371e6";
    let dicom_sha = "151233ec63f64ebb63b979df51aa827cd612a53422c073f6ef341770c7bc9a56";
    assert!(rows.contains(gps_sha) && rows.contains(dicom_sha), "{rows}");
    let failed = text_of(&b, ".upload-row.failed").await;
    assert!(
        failed.contains("heic-photo.heic") && failed.contains("export"),
        "{failed}"
    );
    let progress = b
        .script(
            "return [...document.querySelectorAll('.upload-row.done progress')].map(p => p.value);",
            json!([]),
        )
        .await;
    assert_eq!(progress, json!([100, 100]));
    // The page uploads resumably (tus): each file was an upload, and the
    // refused one was discarded.
    let audit = |action: &str| {
        relay
            .ok(&["admin", "audit", "--action", action])
            .lines()
            .count()
    };
    assert_eq!((audit("upload.start"), audit("upload.cancel")), (3, 1));
    b.screenshot("office-upload").await;
    let (_, images) = server
        .get(&format!("/api/v1/cases/{case}/images"), &office)
        .await;
    assert_eq!(images.as_array().map(Vec::len), Some(2), "{images}");

    b.goto(&server.url(&format!("/office/cases/{case}"))).await;
    b.click_away("#submit-case").await;
    b.wait_for(
        "submitted",
        "document.body.innerText.includes('Waiting for a specialist')",
    )
    .await;
    let (_, api_case) = server.get(&format!("/api/v1/cases/{case}"), &office).await;
    assert_eq!(api_case["status"], "submitted");
    for image in images.as_array().into_iter().flatten() {
        server
            .derived(&office, image["id"].as_str().expect("id"))
            .await;
    }
    b.goto(&server.url("/office")).await;
    b.wait_for_path("/office").await;
    b.screenshot("office-cases").await;
    sign_out_browser(&mut b).await;

    // -- the radiologist reads it -------------------------------------------
    sign_in_browser(&mut b, &server, &radiologist, "/specialist").await;
    b.wait_for(
        "the case in the worklist",
        &format!("document.querySelector(\"a[href='/specialist/cases/{case}']\")"),
    )
    .await;
    // The worklist refreshes itself: a case submitted while it is open
    // appears without a reload.
    b.goto(&server.url("/specialist?refresh=1")).await;
    b.wait_for_path("/specialist").await;
    b.script("document.body.dataset.marker = 'same page';", json!([]))
        .await;
    let later = server.create_case(&office, "radiology").await;
    server
        .upload(&office, &later, "dicom/CT_small.dcm", "application/dicom")
        .await;
    server
        .post(&format!("/api/v1/cases/{later}/submit"), &office, json!({}))
        .await;
    b.wait_for(
        "the new case without a reload",
        &format!("document.body.dataset.marker === 'same page' && document.querySelector(\"a[href='/specialist/cases/{later}']\")"),
    )
    .await;
    b.screenshot("specialist-worklist").await;
    b.click_away(&format!("a[href='/specialist/cases/{case}']"))
        .await;
    b.wait_for_path(&format!("/specialist/cases/{case}")).await;
    b.click_away("#claim").await;
    b.wait_for("the report form", "document.getElementById('report-form')")
        .await;
    let (_, api_case) = server
        .get(&format!("/api/v1/cases/{case}"), &radiologist)
        .await;
    assert_eq!(api_case["status"], "in_review");

    // The DICOM stack: 10 frames, scrolled by keys and by the wheel.
    b.click(".thumb-button[data-kind='series']").await;
    b.wait_for("frame 1", "document.getElementById('stage').dataset.slice === '1' && document.getElementById('stage').dataset.loaded").await;
    assert_eq!(text_of(&b, "#position").await, "Image 1 / 10");
    b.click("#stage").await;
    b.keys("\u{E015}\u{E015}").await; // ↓ ↓
    b.wait_for(
        "frame 3",
        "document.getElementById('position').textContent === 'Image 3 / 10'",
    )
    .await;
    b.wheel("#stage", 120).await;
    b.wait_for(
        "frame 4 by the wheel",
        "document.getElementById('position').textContent === 'Image 4 / 10'",
    )
    .await;
    b.wheel("#stage", -120).await;
    b.wait_for(
        "back to frame 3",
        "document.getElementById('position').textContent === 'Image 3 / 10'",
    )
    .await;
    b.keys("\u{E010}").await; // End
    b.wait_for("the last frame", "document.getElementById('stage-img').getAttribute('src').includes('/frames/9/rendered') && document.getElementById('stage').dataset.loaded.includes('/frames/9/')").await;

    // A window preset, then a drag that widens it.
    b.select("#wl-preset", "40,80").await;
    b.wait_for("the preset window", "document.getElementById('stage').dataset.loaded.endsWith('/frames/9/rendered?window=40,80')").await;
    assert_eq!(text_of(&b, "#wl-readout").await, "W 80 · L 40");
    b.drag("#stage", 100, -50).await;
    b.wait_for("a dragged window", "document.getElementById('stage').dataset.window !== '40,80' && document.getElementById('stage').dataset.loaded.includes('window=') && !document.getElementById('stage').dataset.loaded.endsWith('window=40,80')").await;
    let window = b
        .script(
            "return document.getElementById('stage').dataset.window;",
            json!([]),
        )
        .await;
    let (center, width) = window
        .as_str()
        .and_then(|w| w.split_once(','))
        .map(|(c, w)| (c.parse::<i64>().expect("c"), w.parse::<i64>().expect("w")))
        .expect("a window");
    assert!(
        width > 80 && center < 40,
        "dragging right and up widens and lowers: {window}"
    );
    // What the page shows is a real server rendering of that window.
    let loaded = b
        .script(
            "return document.getElementById('stage').dataset.loaded;",
            json!([]),
        )
        .await;
    let response = server
        .http
        .get(server.url(loaded.as_str().expect("src")))
        .bearer_auth(&radiologist)
        .send()
        .await
        .expect("frame");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    b.screenshot("specialist-viewer-dicom").await;

    // The photo at full resolution, zoomed by key and by wheel.
    b.click(".thumb-button[data-kind='photo']").await;
    b.wait_for(
        "the photo",
        "document.getElementById('stage').dataset.loaded.endsWith('/original')",
    )
    .await;
    let scale = |v: Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .expect("scale")
    };
    let fitted = scale(
        b.script(
            "return document.getElementById('stage').dataset.scale;",
            json!([]),
        )
        .await,
    );
    b.click("#stage").await;
    b.keys("++").await;
    let zoomed = scale(
        b.script(
            "return document.getElementById('stage').dataset.scale;",
            json!([]),
        )
        .await,
    );
    assert!(zoomed > fitted * 1.5, "{fitted} → {zoomed}");
    let natural = b
        .script(
            "return document.getElementById('stage-img').naturalWidth;",
            json!([]),
        )
        .await;
    assert_eq!(natural, 480, "the original, not a preview");
    b.screenshot("specialist-viewer-photo").await;

    // The report, autosaved to the server's draft as it is typed.
    b.type_into("#findings", "Normal ventricles. No mass.")
        .await;
    b.type_into("#impression", "No intracranial mass.").await;
    b.select("#in_person_visit", "routine").await;
    b.wait_for(
        "the autosave",
        "/^\\d{4}-/.test(document.getElementById('report-form').dataset.saved || '')",
    )
    .await;
    let request = server
        .http
        .get(server.url(&format!("/api/v1/cases/{case}/report")))
        .bearer_auth(&radiologist);
    let (status, draft) = server.send(request, "").await;
    assert_eq!(status, 200, "{draft}");
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["impression"], "No intracranial mass.");
    assert_eq!(draft["in_person_visit"], "routine");
    b.click("#sign-open").await;
    b.wait_for(
        "the confirmation",
        "document.getElementById('sign-dialog').open",
    )
    .await;
    b.screenshot("specialist-sign-confirm").await;
    b.click_away("#sign-confirm").await;
    b.wait_for(
        "the signed report",
        "document.getElementById('report') && !document.getElementById('report-form')",
    )
    .await;
    let (_, report) = server
        .get(&format!("/api/v1/cases/{case}/report"), &office)
        .await;
    assert_eq!(report["status"], "signed", "{report}");
    assert_eq!(report["findings"], "Normal ventricles. No mass.");
    sign_out_browser(&mut b).await;

    // -- the office reads and acknowledges ----------------------------------
    sign_in_browser(&mut b, &server, &office, "/office").await;
    b.wait_for(
        "the notice",
        "document.body.innerText.includes('A report is ready')",
    )
    .await;
    b.click_away(&format!("a[href='/office/cases/{case}']"))
        .await;
    b.wait_for_path(&format!("/office/cases/{case}")).await;
    let shown = text_of(&b, "#report").await;
    assert!(shown.contains("No intracranial mass."), "{shown}");
    b.screenshot("office-report").await;
    b.click_away("#acknowledge").await;
    b.wait_for(
        "acknowledged",
        "document.body.innerText.includes('Acknowledged ')",
    )
    .await;
    let (_, api_case) = server.get(&format!("/api/v1/cases/{case}"), &office).await;
    assert_eq!(api_case["status"], "acknowledged");

    // -- nothing left in the browser, nothing in a URL ----------------------
    let storage = b
        .script(
            "return [localStorage.length, sessionStorage.length];",
            json!([]),
        )
        .await;
    assert_eq!(storage, json!([0, 0]));
    sign_out_browser(&mut b).await;

    // -- the administrator's pages ------------------------------------------
    sign_in_browser(&mut b, &server, &admin, "/admin").await;
    for (path, name) in [
        ("/admin/jobs", "admin-jobs"),
        ("/admin/offices", "admin-offices"),
        ("/admin/audit", "admin-audit"),
    ] {
        b.goto(&server.url(path)).await;
        b.wait_for_path(path).await;
        b.screenshot(name).await;
    }
    b.type_into("#object_id", &case).await;
    b.click_away("#audit-search button[type=submit]").await;
    b.wait_for(
        "the case's events",
        "document.querySelectorAll('#audit tbody tr').length > 5",
    )
    .await;
    let events = text_of(&b, "#audit").await;
    assert!(
        events.contains("report.sign") && events.contains("case.acknowledge"),
        "{events}"
    );
    b.record().await;

    let phi = [
        PATIENT_NAME,
        "Zebulon",
        "Quixote",
        "MRN-77120",
        "Headache",
        "Migraine",
        "1961-07-14",
    ];
    assert!(b.visited.len() > 20, "{:?}", b.visited);
    for url in &b.visited {
        let decoded = url.replace("%20", " ").replace('+', " ");
        for word in phi {
            assert!(!decoded.contains(word), "{word} in a URL: {url}");
        }
    }
    b.close().await;

    // -- a tablet in portrait: the same pages fit without sideways scrolling
    let mut tablet = driver.session(820, 1180).await;
    sign_in_browser(&mut tablet, &server, &radiologist, "/specialist").await;
    for (path, name) in [
        ("/specialist".to_owned(), "tablet-worklist"),
        (
            format!("/specialist/cases/{case}"),
            "tablet-specialist-case",
        ),
    ] {
        tablet.goto(&server.url(&path)).await;
        tablet.wait_for_path(&path).await;
        let overflow = tablet
            .script(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                json!([]),
            )
            .await;
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{path} scrolls sideways by {overflow}px"
        );
        tablet.screenshot(name).await;
    }
    tablet.close().await;
    eprintln!("browser loop took {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn the_pages_offer_what_the_case_state_allows() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let dermatologist = relay.specialist_token("dermatology");
    let server = relay.start();
    let case = server.create_case(&office, "dermatology").await;
    server
        .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let office_cookie = cookie_pair(&sign_in(&server, &office).await);
    let derm_cookie = cookie_pair(&sign_in(&server, &dermatologist).await);
    let office_page = format!("/office/cases/{case}");
    let specialist_page = format!("/specialist/cases/{case}");

    let (_, _, html) = page(&server, &office_cookie, &office_page).await;
    assert!(html.contains("id=\"upload\"") && html.contains("id=\"submit-case\""));
    server
        .post(&format!("/api/v1/cases/{case}/submit"), &office, json!({}))
        .await;
    let (_, _, html) = page(&server, &office_cookie, &office_page).await;
    assert!(!html.contains("id=\"upload\"") && !html.contains("id=\"submit-case\""));

    // Claimed: the report form, release and the question to the office.
    let (_, _, html) = page(&server, &derm_cookie, &specialist_page).await;
    let csrf = csrf_of(&html);
    let (status, _) = cookie_post(
        &server,
        &derm_cookie,
        &format!("/api/v1/cases/{case}/claim"),
        Some(&csrf),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, html) = page(&server, &derm_cookie, &specialist_page).await;
    for id in ["report-form", "sign-dialog", "request-info", "release"] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    // Asked for more: the office may add images and answer.
    let response = client()
        .post(server.url(&format!("/api/v1/cases/{case}/request-info")))
        .header("cookie", &derm_cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"text": "A close-up with a ruler, please."}))
        .send()
        .await
        .expect("request info");
    assert_eq!(response.status(), 200);
    let (_, _, html) = page(&server, &office_cookie, &office_page).await;
    assert!(html.contains("id=\"answer\"") && html.contains("id=\"upload\""));
    assert!(html.contains("A close-up with a ruler, please."));
    let (_, _, html) = page(&server, &derm_cookie, &specialist_page).await;
    assert!(!html.contains("id=\"report-form\""));
    assert!(html.contains("Waiting for the office to answer."));
}

#[tokio::test]
async fn an_idle_session_ends_and_background_requests_do_not_keep_it_alive() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Main Street");
    let server = relay.start();
    let cookie = cookie_pair(&sign_in(&server, &office).await);
    let mut db = relay.database().await;
    // Two minutes without a request the person made.
    sqlx::query("UPDATE web_sessions SET last_seen_at = last_seen_at - 120000")
        .execute(&mut db)
        .await
        .expect("age the session");
    let before = last_seen(&mut db).await;
    let response = client()
        .get(server.url("/specialist"))
        .header("cookie", &cookie)
        .header("x-relay-background", "1")
        .send()
        .await
        .expect("background");
    assert_eq!(response.status(), 403, "an office user, still signed in");
    assert_eq!(last_seen(&mut db).await, before);
    assert_eq!(page(&server, &cookie, "/office").await.0, 200);
    assert!(last_seen(&mut db).await > before);
    // Thirty-one minutes idle: the session is over.
    sqlx::query("UPDATE web_sessions SET last_seen_at = last_seen_at - 1860000")
        .execute(&mut db)
        .await
        .expect("age the session");
    assert_eq!(page(&server, &cookie, "/office").await.1, "/sign-in");
}

async fn last_seen(db: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT last_seen_at FROM web_sessions")
        .fetch_one(db)
        .await
        .expect("session")
}
