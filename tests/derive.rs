//! The derive stage end to end: an upload's job makes an upright thumbnail
//! and preview, DICOM frames render with a window on request, renditions are
//! verified blobs with a derive version, a file that cannot be rendered
//! shows a clear `unsupported` state, and `relay worker` does the same work
//! as the worker inside `relay serve`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Relay, Server};

async fn get_bytes(server: &Server, token: &str, path: &str) -> (u16, Vec<u8>, String) {
    let response = server
        .http
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        response.bytes().await.expect("body").to_vec(),
        content_type,
    )
}

#[tokio::test]
async fn a_portrait_photo_gets_an_upright_thumbnail_and_preview() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "dermatology").await;
    let receipt = server
        .upload(&token, &case, "photos/camera-portrait.jpg", "image/jpeg")
        .await;
    assert_eq!(receipt["derive_state"], "pending");
    let id = receipt["id"].as_str().expect("id");
    let image = server.derived(&token, id).await;
    assert_eq!(image["derive_state"], "ready", "{image}");
    let attributes = image["attributes"].as_object().expect("photo attributes");
    assert!(
        attributes.contains_key("captured_at") && attributes.contains_key("camera_make"),
        "{attributes:?}"
    );
    assert_eq!(
        (attributes["width"].as_u64(), attributes["height"].as_u64()),
        (Some(210), Some(400)),
        "as displayed"
    );
    assert!(!attributes.keys().any(|k| k.to_lowercase().contains("gps")));

    let (status, bytes, content_type) =
        get_bytes(&server, &token, &format!("/api/v1/images/{id}/thumbnail")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/jpeg"));
    let thumb = image::load_from_memory(&bytes).expect("a JPEG");
    // Stored 400×210 with Orientation 6: displayed upright it is tall.
    assert!(
        thumb.height() > thumb.width(),
        "{}x{}",
        thumb.width(),
        thumb.height()
    );
    assert_eq!(thumb.height(), 256);
    let (status, bytes, _) =
        get_bytes(&server, &token, &format!("/api/v1/images/{id}/preview")).await;
    assert_eq!(status, 200);
    let preview = image::load_from_memory(&bytes).expect("a JPEG");
    assert_eq!(
        (preview.width(), preview.height()),
        (210, 400),
        "never upscaled, upright"
    );
}

#[tokio::test]
async fn renditions_wait_for_derive_and_say_so() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], &[]);
    let case = server.create_case(&token, "dermatology").await;
    let receipt = server
        .upload(&token, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let id = receipt["id"].as_str().expect("id");
    let response = server
        .http
        .get(server.url(&format!("/api/v1/images/{id}/thumbnail")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "derive_pending");

    // A separate `relay worker` process does the work.
    let mut worker = relay
        .command()
        .args(["worker", "--workers", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("relay worker");
    let image = server.derived(&token, id).await;
    assert_eq!(image["derive_state"], "ready");
    let (status, _, _) =
        get_bytes(&server, &token, &format!("/api/v1/images/{id}/thumbnail")).await;
    assert_eq!(status, 200);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let exit = worker.wait().expect("worker exits");
    assert!(exit.success(), "relay worker stops cleanly on SIGTERM");
}

#[tokio::test]
async fn dicom_frames_render_with_a_window_and_are_kept() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "radiology").await;
    let ct = server
        .upload(&token, &case, "dicom/CT_small.dcm", "application/dicom")
        .await;
    let mr = server
        .upload(&token, &case, "dicom/emri_small.dcm", "application/dicom")
        .await;
    let ct_id = ct["id"].as_str().expect("id");
    let mr_id = mr["id"].as_str().expect("id");
    assert_eq!(server.derived(&token, ct_id).await["frames"], 1);
    assert_eq!(server.derived(&token, mr_id).await["frames"], 10);

    let (status, default, _) = get_bytes(
        &server,
        &token,
        &format!("/api/v1/images/{ct_id}/frames/0/rendered"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, bone, _) = get_bytes(
        &server,
        &token,
        &format!("/api/v1/images/{ct_id}/frames/0/rendered?window=300,1500"),
    )
    .await;
    assert_eq!(status, 200);
    assert_ne!(default, bone, "the window changes the rendering");
    let (status, again, _) = get_bytes(
        &server,
        &token,
        &format!("/api/v1/images/{ct_id}/frames/0/rendered?window=300,1500"),
    )
    .await;
    assert_eq!((status, &again), (200, &bone), "kept and served again");
    let (status, last, _) = get_bytes(
        &server,
        &token,
        &format!("/api/v1/images/{mr_id}/frames/9/rendered"),
    )
    .await;
    assert_eq!(status, 200);
    let (_, first, _) = get_bytes(
        &server,
        &token,
        &format!("/api/v1/images/{mr_id}/frames/0/rendered"),
    )
    .await;
    assert_ne!(first, last, "each frame is its own picture");
    let (status, _) = server
        .get(
            &format!("/api/v1/images/{mr_id}/frames/10/rendered"),
            &token,
        )
        .await;
    assert_eq!(status, 404);
    for bad in ["1", "1,0", "a,b", "1,-5"] {
        let (status, body) = server
            .get(
                &format!("/api/v1/images/{ct_id}/frames/0/rendered?window={bad}"),
                &token,
            )
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_query")),
            "{bad}"
        );
    }

    // Every rendition is a blob with a derive version.
    let mut db = relay.database().await;
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, sha256, derive_version FROM derivatives WHERE image_id = ?")
            .bind(ct_id)
            .fetch_all(&mut db)
            .await
            .expect("derivatives");
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["frame", "preview", "thumbnail"].into_iter().collect()
    );
    for (_, sha, version) in &rows {
        assert_eq!(*version, 1);
        let path =
            relay
                .data_dir()
                .join(format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
        assert!(path.exists(), "rendition blob {sha} missing");
    }
}

#[tokio::test]
async fn a_corrupted_rendition_is_never_served() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "radiology").await;
    let id = server
        .upload(&token, &case, "dicom/MR_small.dcm", "application/dicom")
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server.derived(&token, &id).await;
    let mut db = relay.database().await;
    let sha: String = sqlx::query_scalar(
        "SELECT sha256 FROM derivatives WHERE image_id = ? AND kind = 'thumbnail'",
    )
    .bind(&id)
    .fetch_one(&mut db)
    .await
    .expect("thumbnail");
    let path = relay
        .data_dir()
        .join(format!("blobs/sha256/{}/{}/{sha}", &sha[..2], &sha[2..4]));
    let mut bytes = std::fs::read(&path).expect("blob");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xFF;
    std::fs::write(&path, bytes).expect("corrupt");
    let (status, body) = server
        .get(&format!("/api/v1/images/{id}/thumbnail"), &token)
        .await;
    assert_eq!((status, body["error"].as_str()), (500, Some("integrity")));
}

#[tokio::test]
async fn a_file_that_cannot_be_rendered_shows_unsupported_and_is_not_retried() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "radiology").await;
    // A JPEG 2000 object relabelled as JPEG-LS (same-length UID): a valid
    // Part 10 file whose codec this build does not have.
    let mut bytes = support::fixture("dicom/JPEG2000.dcm");
    let from = b"1.2.840.10008.1.2.4.91";
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("transfer syntax UID");
    bytes[at..at + from.len()].copy_from_slice(b"1.2.840.10008.1.2.4.80");
    let request = server
        .http
        .post(server.url(&format!("/api/v1/cases/{case}/images")))
        .header("content-type", "application/dicom")
        .body(bytes);
    let (status, receipt) = server.send(request, &token).await;
    assert_eq!(status, 201, "{receipt}");
    let id = receipt["id"].as_str().expect("id");
    let image = server.derived(&token, id).await;
    assert_eq!(image["derive_state"], "unsupported", "{image}");
    assert!(
        image["derive_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    let (status, body) = server
        .get(&format!("/api/v1/images/{id}/preview"), &token)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("derive_unsupported"))
    );
    // The job is done, not dead and not retrying.
    let jobs = relay.ok(&["jobs", "list", "--kind", "derive"]);
    let job: Value = serde_json::from_str(jobs.lines().next().expect("a job")).expect("json");
    assert_eq!(
        (job["state"].as_str(), job["attempts"].as_i64()),
        (Some("done"), Some(1))
    );
}

#[tokio::test]
async fn re_running_derive_changes_nothing() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "dermatology").await;
    let id = server
        .upload(&token, &case, "photos/camera-gps.jpg", "image/jpeg")
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    server.derived(&token, &id).await;
    let mut db = relay.database().await;
    let before: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, sha256 FROM derivatives WHERE image_id = ? ORDER BY kind")
            .bind(&id)
            .fetch_all(&mut db)
            .await
            .expect("derivatives");
    let blobs_before = support::files_under(&relay.data_dir().join("blobs/sha256")).len();
    // Run the job again, as after a lost lease.
    sqlx::query("UPDATE jobs SET state = 'queued', run_at = 0 WHERE kind = 'derive'")
        .execute(&mut db)
        .await
        .expect("requeue");
    for _ in 0..300 {
        let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE kind = 'derive'")
            .fetch_one(&mut db)
            .await
            .expect("state");
        if state == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, sha256 FROM derivatives WHERE image_id = ? ORDER BY kind")
            .bind(&id)
            .fetch_all(&mut db)
            .await
            .expect("derivatives");
    assert_eq!(before, after);
    assert_eq!(
        support::files_under(&relay.data_dir().join("blobs/sha256")).len(),
        blobs_before
    );
}

#[tokio::test]
async fn dicom_is_grouped_by_study_and_series_across_uploads() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Clinic");
    let server = relay.start();
    let case = server.create_case(&token, "radiology").await;
    let mut ids = Vec::new();
    for file in [
        "dicom/CT_small.dcm",
        "dicom/MR_small.dcm",
        "dicom/emri_small.dcm",
    ] {
        let receipt = server
            .upload(&token, &case, file, "application/dicom")
            .await;
        ids.push(receipt["id"].as_str().expect("id").to_owned());
    }
    server
        .upload(&token, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    let mut expected = std::collections::BTreeMap::new();
    for id in &ids {
        let image = server.derived(&token, id).await;
        let a = &image["attributes"];
        assert_eq!(
            a["sop_instance_uid"], image["metadata"]["sop_instance_uid"],
            "derive read the same object"
        );
        assert!(a["modality"].is_string() && a["rows"].is_number(), "{a}");
        expected
            .entry(a["study_instance_uid"].as_str().expect("study").to_owned())
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(
                a["series_instance_uid"]
                    .as_str()
                    .expect("series")
                    .to_owned(),
            );
    }
    let (status, studies) = server
        .get(&format!("/api/v1/cases/{case}/studies"), &token)
        .await;
    assert_eq!(status, 200);
    let studies = studies.as_array().expect("studies");
    assert_eq!(studies.len(), expected.len(), "one entry per study");
    let mut instances = 0;
    for study in studies {
        let uid = study["study_instance_uid"].as_str().expect("uid");
        let series: std::collections::BTreeSet<String> = study["series"]
            .as_array()
            .expect("series")
            .iter()
            .map(|s| s["series_instance_uid"].as_str().expect("uid").to_owned())
            .collect();
        assert_eq!(Some(&series), expected.get(uid));
        for s in study["series"].as_array().expect("series") {
            instances += s["instances"].as_array().expect("instances").len();
        }
    }
    assert_eq!(
        instances, 3,
        "every DICOM instance once, the photo not at all"
    );
}
