//! DICOMweb with a real client (the `dicomweb-client` Python package) and
//! by hand: a multi-file study stored with STOW-RS ends as the same stored
//! bytes, case and audit trail as plain HTTP ingest of the same files, and
//! comes back through QIDO-RS and WADO-RS (bytes, metadata, frames,
//! renditions); a partly or wholly bad request is reported per instance
//! and stores nothing bad; a wrong media type stores nothing; another
//! office sees nothing, a specialist only submitted cases.
//!
//! The client comes from `.ci/peers` (`RELAY_TEST_PYTHON`); without it that
//! test skips loudly, or fails under `RELAY_REQUIRE_SERVICES=1`.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use serde_json::{Value, json};
use sha2::Digest;
use support::{Relay, Server};

const BOUNDARY: &str = "relay-test-boundary";
const MULTIPART_DICOM: &str =
    "multipart/related; type=\"application/dicom\"; boundary=relay-test-boundary";

/// A study of `count` real instances (the uncompressed CT and MR fixtures
/// in turn, so two series), one patient, each with its own SOP Instance
/// UID: (study UID, files).
fn study(dir: &Path, count: usize) -> (String, Vec<PathBuf>) {
    let study = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
    let sources = ["CT_small.dcm", "MR_small.dcm"];
    let files = (0..count)
        .map(|i| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/dicom")
                .join(sources[i % sources.len()]);
            let mut object = dicom_object::open_file(&source).expect("fixture opens");
            let uid = format!("{study}.{}", i + 1);
            for (tag, vr, value) in [
                (tags::SOP_INSTANCE_UID, VR::UI, uid.as_str()),
                (tags::STUDY_INSTANCE_UID, VR::UI, study.as_str()),
                (tags::PATIENT_ID, VR::LO, "DW-1"),
                (tags::PATIENT_NAME, VR::PN, "Test^Dicomweb"),
                (tags::ACCESSION_NUMBER, VR::SH, "ACC-42"),
                (tags::STUDY_DATE, VR::DA, "20240105"),
            ] {
                object.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
            }
            let meta = object.meta_mut();
            meta.media_storage_sop_instance_uid = uid.clone();
            meta.update_information_group_length();
            let path = dir.join(format!("{uid}.dcm"));
            object.write_to_file(&path).expect("write an instance");
            path
        })
        .collect();
    (study, files)
}

/// A `multipart/related` body of `parts` (content type, bytes).
fn multipart(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn stow(server: &Server, token: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
    let request = server
        .http
        .post(server.url(path))
        .header("content-type", MULTIPART_DICOM)
        .body(body);
    server.send(request, token).await
}

fn dicom_parts(files: &[PathBuf]) -> Vec<(&'static str, Vec<u8>)> {
    files
        .iter()
        .map(|f| ("application/dicom", std::fs::read(f).expect("read")))
        .collect()
}

fn sequence<'a>(report: &'a Value, tag: &str) -> Vec<&'a Value> {
    report[tag]["Value"]
        .as_array()
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

async fn cases_of(server: &Server, token: &str) -> Vec<Value> {
    let (status, body) = server.get("/api/v1/cases", token).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn images_of(server: &Server, token: &str, case: &str) -> Vec<Value> {
    let (status, body) = server
        .get(&format!("/api/v1/cases/{case}/images"), token)
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().cloned().unwrap_or_default()
}

fn digests(images: &[Value]) -> BTreeSet<String> {
    images
        .iter()
        .map(|i| i["stored_sha256"].as_str().expect("sha").to_owned())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The parts of a `multipart/related` answer.
fn parts_of(content_type: &str, body: &[u8]) -> Vec<Vec<u8>> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let head_end = find(rest, b"\r\n\r\n").expect("part headers");
        let body_start = head_end + 4;
        let next = find(&rest[body_start..], format!("\r\n{delimiter}").as_bytes())
            .expect("next delimiter");
        parts.push(rest[body_start..body_start + next].to_vec());
        rest = &rest[body_start + next + 2..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The client's side of the test, in Python: `normalize` writes each file
/// as pydicom encodes it (what `store_instances` sends); `store` stores
/// them; `read` searches and retrieves, printing what it found as JSON.
const CLIENT: &str = r#"
import hashlib, io, json, sys
import pydicom
from dicomweb_client.api import DICOMwebClient

mode, url, token = sys.argv[1:4]
args = sys.argv[4:]

def encoded(ds):
    with io.BytesIO() as b:
        pydicom.dcmwrite(b, ds)
        return b.getvalue()

if mode == "normalize":
    for path in args:
        data = encoded(pydicom.dcmread(path))
        with open(path, "wb") as f:
            f.write(data)
    sys.exit(0)

client = DICOMwebClient(url=url + "/dicomweb", headers={"Authorization": "Bearer " + token})
out = {}
if mode == "store":
    report = client.store_instances(datasets=[pydicom.dcmread(p) for p in args])
    out["stored"] = [str(i.ReferencedSOPInstanceUID) for i in report.get("ReferencedSOPSequence", [])]
    out["failed"] = len(report.get("FailedSOPSequence", []))
    out["retrieve_url"] = str(report.get("RetrieveURL", ""))
else:
    study, series, sop, ct_sha = args
    studies = client.search_for_studies(search_filters={"PatientName": "test^dicom*", "StudyDate": "20240101-20240131"})
    out["studies"] = [s["0020000D"]["Value"][0] for s in studies]
    out["study_instances"] = [s["00201208"]["Value"][0] for s in studies]
    out["modalities"] = studies[0]["00080061"]["Value"] if studies else []
    out["no_studies"] = len(client.search_for_studies(search_filters={"AccessionNumber": "nope"}))
    out["series"] = sorted(s["0020000E"]["Value"][0] for s in client.search_for_series(study_instance_uid=study))
    out["instances"] = len(client.search_for_instances(study_instance_uid=study))
    out["series_instances"] = [i["00080018"]["Value"][0] for i in client.search_for_instances(study_instance_uid=study, series_instance_uid=series)]
    instance = client.retrieve_instance(study, series, sop)
    out["retrieved_sha"] = hashlib.sha256(encoded(instance)).hexdigest()
    out["retrieved_sop"] = str(instance.SOPInstanceUID)
    meta = client.retrieve_instance_metadata(study, series, sop)
    out["metadata_patient"] = meta["00100020"]["Value"][0]
    out["metadata_has_pixels"] = "7FE00010" in meta
    frames = client.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    out["frame_sizes"] = [len(f) for f in frames]
    out["pixel_bytes"] = len(instance.PixelData)
    out["frame_matches"] = frames[0] == instance.PixelData
    rendered = client.retrieve_instance_rendered(study, series, sop, media_types=("image/jpeg",))
    from PIL import Image
    image = Image.open(io.BytesIO(rendered))
    image.load()
    out["rendered"] = [image.format, image.size[0], image.size[1]]
print(json.dumps(out))
"#;

fn python(python: &str, script: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text.trim()).expect("json from the client")
    }
}

#[tokio::test]
async fn dicomweb_client_stores_searches_and_retrieves_a_study() {
    let Some(py) = relay_workers::testing::python_peers(
        "dicomweb_client_stores_searches_and_retrieves_a_study",
    ) else {
        return;
    };
    let relay = Relay::new();
    let (office, _, token) = relay.office_with_user("Hillside Imaging");
    let server = relay.start();
    let dir = tempfile::tempdir().expect("dir");
    let (study_uid, files) = study(dir.path(), 4);
    let mut script = tempfile::NamedTempFile::new().expect("script");
    script.write_all(CLIENT.as_bytes()).expect("write");
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let base = server.url("");
    let base = base.trim_end_matches('/');
    let mut args = vec!["normalize", base, &token];
    args.extend(names.iter().map(String::as_str));
    python(&py, script.path(), &args);

    // Plain HTTP ingest of the same files, by another office.
    let (_, _, http_token) = relay.office_with_user("Over HTTP");
    let http_case = server.create_case(&http_token, "radiology").await;
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        server
            .upload_bytes(
                &http_token,
                &http_case,
                name,
                std::fs::read(file).expect("read"),
                "application/dicom",
            )
            .await;
    }
    let http_images = images_of(&server, &http_token, &http_case).await;

    // STOW-RS with the real client.
    args[0] = "store";
    let stored = python(&py, script.path(), &args);
    assert_eq!(stored["failed"], 0, "{stored}");
    assert_eq!(stored["stored"].as_array().map(Vec::len), Some(files.len()));
    assert!(
        stored["retrieve_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/dicomweb/studies/{study_uid}"))),
        "{stored}"
    );
    let cases = cases_of(&server, &token).await;
    assert_eq!(cases.len(), 1, "one draft case for the study: {cases:?}");
    let case = &cases[0];
    assert_eq!(
        (&case["status"], &case["specialty"], &case["office_id"]),
        (&json!("draft"), &json!("radiology"), &json!(office))
    );
    let case_id = case["id"].as_str().expect("id").to_owned();
    let images = images_of(&server, &token, &case_id).await;
    assert_eq!(images.len(), files.len());
    assert_eq!(
        digests(&images),
        digests(&http_images),
        "the same stored bytes"
    );
    for image in &images {
        let derived = server
            .derived(&token, image["id"].as_str().expect("id"))
            .await;
        assert_eq!(derived["derive_state"], "ready", "{derived}");
    }
    // Audited: the case and every image.
    let admin = relay.admin_token();
    let (_, events) = server
        .get(
            &format!("/api/v1/audit?action=image.create&office_id={office}&limit=100"),
            &admin,
        )
        .await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(files.len()));
    let (_, created) = server
        .get(
            &format!("/api/v1/audit?action=case.create&object_id={case_id}"),
            &admin,
        )
        .await;
    assert_eq!(created["items"].as_array().map(Vec::len), Some(1));

    // QIDO-RS and WADO-RS with the client.
    let ct = &files[0];
    let object = dicom_object::open_file(ct).expect("ct");
    let series = object
        .element(tags::SERIES_INSTANCE_UID)
        .expect("series")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_owned();
    let sop = format!("{study_uid}.1");
    let ct_bytes = std::fs::read(ct).expect("read");
    let ct_sha = sha256_hex(&ct_bytes);
    let read = python(
        &py,
        script.path(),
        &["read", base, &token, &study_uid, &series, &sop, &ct_sha],
    );
    assert_eq!(read["studies"], json!([study_uid]), "{read}");
    assert_eq!(read["study_instances"], json!([files.len()]));
    assert_eq!(read["modalities"], json!(["CT", "MR"]));
    assert_eq!(read["no_studies"], 0);
    assert_eq!(read["series"].as_array().map(Vec::len), Some(2));
    assert_eq!(read["instances"], files.len());
    assert_eq!(
        read["series_instances"],
        json!([format!("{study_uid}.1"), format!("{study_uid}.3")])
    );
    assert_eq!(read["retrieved_sop"], sop);
    assert_eq!(
        read["retrieved_sha"], ct_sha,
        "the client reads the stored file"
    );
    assert_eq!(read["metadata_patient"], "DW-1");
    assert_eq!(read["metadata_has_pixels"], false);
    assert_eq!(read["frame_sizes"], json!([128 * 128 * 2]));
    assert_eq!(read["frame_matches"], true);
    assert_eq!(read["rendered"][0], "JPEG");

    // The raw WADO-RS bytes are the file, byte for byte.
    let response = server
        .http
        .get(server.url(&format!(
            "/dicomweb/studies/{study_uid}/series/{series}/instances/{sop}"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("type")
        .to_owned();
    assert!(content_type.starts_with("multipart/related; type=\"application/dicom\""));
    let body = response.bytes().await.expect("body");
    assert_eq!(parts_of(&content_type, &body), vec![ct_bytes]);
    // The thumbnail is a real image.
    let response = server
        .http
        .get(server.url(&format!(
            "/dicomweb/studies/{study_uid}/series/{series}/instances/{sop}/thumbnail"
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let thumbnail = image::load_from_memory(&response.bytes().await.expect("body"))
        .expect("a decodable thumbnail");
    assert!(thumbnail.width() <= 256 && thumbnail.height() <= 256);
    // Every read was audited as the office's.
    let (_, downloads) = server
        .get(
            &format!("/api/v1/audit?action=image.download&office_id={office}&limit=100"),
            &admin,
        )
        .await;
    assert!(downloads["items"].as_array().is_some_and(|e| !e.is_empty()));
    // The patient's name, in the files and in a search, is never logged.
    server.stop_and_then(|log| {
        assert!(
            !log.to_lowercase().contains("test^dicom"),
            "a patient name was logged"
        );
    });
}

#[tokio::test]
async fn bad_parts_are_reported_one_by_one_and_store_nothing() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Hillside Imaging");
    let server = relay.start();
    let dir = tempfile::tempdir().expect("dir");
    let (study_uid, files) = study(dir.path(), 2);
    let mut db = relay.database().await;

    // A wrong media type: 415, nothing stored, no case.
    let request = server
        .http
        .post(server.url("/dicomweb/studies"))
        .header("content-type", "application/dicom")
        .body(std::fs::read(&files[0]).expect("read"));
    let (status, body) = server.send(request, &token).await;
    assert_eq!(
        (status, &body["error"]),
        (415, &json!("unsupported_media_type"))
    );
    assert_eq!(support::count(&mut db, "images").await, 0);
    assert_eq!(support::count(&mut db, "cases").await, 0);

    // One good part, one that is not DICOM: 202, the bad one failed.
    let mut parts = dicom_parts(&files[..1]);
    parts.push(("application/dicom", b"not a DICOM file at all".to_vec()));
    let (status, report) = stow(&server, &token, "/dicomweb/studies", multipart(&parts)).await;
    assert_eq!(status, 202, "{report}");
    let stored = sequence(&report, "00081199");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["00081155"]["Value"][0], format!("{study_uid}.1"));
    // Its RetrieveURL retrieves it.
    let url = stored[0]["00081190"]["Value"][0].as_str().expect("a URL");
    let (status, _) = server.send(server.http.get(url), &token).await;
    assert_eq!(status, 200, "{url}");
    let failed = sequence(&report, "00081198");
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(
        failed[0]["00081197"],
        json!({"vr": "US", "Value": [0xC000]})
    );
    assert_eq!(support::count(&mut db, "images").await, 1);

    // Nothing good: 409, nothing more stored.
    let (status, report) = stow(
        &server,
        &token,
        "/dicomweb/studies",
        multipart(&[("application/dicom", b"garbage".to_vec())]),
    )
    .await;
    assert_eq!(status, 409, "{report}");
    assert!(sequence(&report, "00081199").is_empty());
    assert_eq!(sequence(&report, "00081198").len(), 1);
    // An instance of another study than the URL's is refused.
    let (status, report) = stow(
        &server,
        &token,
        "/dicomweb/studies/1.2.3.4",
        multipart(&dicom_parts(&files[1..])),
    )
    .await;
    assert_eq!(status, 409, "{report}");
    assert_eq!(
        sequence(&report, "00081198")[0]["00081197"]["Value"][0],
        0xC409
    );
    assert_eq!(support::count(&mut db, "images").await, 1);
    assert_eq!(support::count(&mut db, "dicom_instances").await, 1);
    // No refused part left a spool file (once derive, which reads the
    // stored one through a spool file of its own, is done).
    let case = cases_of(&server, &token).await[0]["id"]
        .as_str()
        .expect("case")
        .to_owned();
    for image in images_of(&server, &token, &case).await {
        server
            .derived(&token, image["id"].as_str().expect("id"))
            .await;
    }
    assert!(support::files_under(&relay.data_dir().join("blobs/tmp")).is_empty());
    server.stop();
}

#[tokio::test]
async fn a_part_over_the_size_limit_is_refused_as_out_of_resources() {
    let relay = Relay::new();
    let (_, _, token) = relay.office_with_user("Hillside Imaging");
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--max-upload-bytes",
            "20000",
        ],
        &[],
    );
    let big = support::fixture("dicom/emri_small.dcm");
    let (status, report) = stow(
        &server,
        &token,
        "/dicomweb/studies",
        multipart(&[("application/dicom", big)]),
    )
    .await;
    assert_eq!(status, 409, "{report}");
    assert_eq!(
        sequence(&report, "00081198")[0]["00081197"]["Value"][0],
        0xA700
    );
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "images").await, 0);
    assert_eq!(support::count(&mut db, "cases").await, 0);
    assert!(support::files_under(&relay.data_dir().join("blobs/tmp")).is_empty());
    server.stop();
}

#[tokio::test]
async fn other_offices_see_nothing_and_specialists_only_submitted_cases() {
    let relay = Relay::new();
    let (_, _, owner) = relay.office_with_user("Owner Clinic");
    let (_, _, intruder) = relay.office_with_user("Other Clinic");
    let radiologist = relay.specialist_token("radiology");
    let dermatologist = relay.specialist_token("dermatology");
    let server = relay.start();
    let dir = tempfile::tempdir().expect("dir");
    let (study_uid, files) = study(dir.path(), 2);
    let (status, report) = stow(
        &server,
        &owner,
        &format!("/dicomweb/studies/{study_uid}"),
        multipart(&dicom_parts(&files)),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let case = cases_of(&server, &owner).await[0]["id"]
        .as_str()
        .expect("case")
        .to_owned();
    let study_path = format!("/dicomweb/studies/{study_uid}");
    let missing_path = "/dicomweb/studies/2.25.1234567";
    let (status, found) = server.get("/dicomweb/studies", &owner).await;
    assert_eq!((status, found.as_array().map(Vec::len)), (200, Some(1)));

    // Another office: no rows, and a 404 exactly like a study that does not exist.
    for token in [&intruder, &radiologist] {
        let (status, found) = server.get("/dicomweb/studies", token).await;
        assert_eq!((status, found), (200, json!([])));
        for suffix in ["", "/metadata", "/series"] {
            let (status, body) = server.get(&format!("{study_path}{suffix}"), token).await;
            let (missing_status, missing) =
                server.get(&format!("{missing_path}{suffix}"), token).await;
            if suffix == "/series" {
                assert_eq!((status, body), (200, json!([])));
            } else {
                assert_eq!(status, 404, "{suffix}: {body}");
                assert_eq!((missing_status, missing), (404, body));
            }
        }
    }
    // Storing into another office's case is 404, into a submitted one 409.
    let (status, _) = stow(
        &server,
        &intruder,
        &format!("/dicomweb/studies?case={case}"),
        multipart(&dicom_parts(&files)),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = server
        .post(&format!("/api/v1/cases/{case}/submit"), &owner, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = stow(
        &server,
        &owner,
        &format!("/dicomweb/studies?case={case}"),
        multipart(&dicom_parts(&files)),
    )
    .await;
    assert_eq!((status, &body["error"]), (409, &json!("invalid_state")));

    // Submitted: the radiologist sees it, the dermatologist does not.
    let (_, found) = server
        .get(
            &format!("/dicomweb/studies?StudyInstanceUID={study_uid}"),
            &radiologist,
        )
        .await;
    assert_eq!(found[0]["00201208"]["Value"][0], 2, "{found}");
    let (status, _) = server
        .get(&format!("{study_path}/metadata"), &radiologist)
        .await;
    assert_eq!(status, 200);
    let (_, found) = server.get("/dicomweb/studies", &dermatologist).await;
    assert_eq!(found, json!([]));
    let (status, _) = server.get(&study_path, &dermatologist).await;
    assert_eq!(status, 404);
    // A filter Relay does not support is refused, never ignored.
    let (status, body) = server
        .get("/dicomweb/studies?PatientAge=040Y", &owner)
        .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_query")));
    server.stop();
}
