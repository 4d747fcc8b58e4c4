//! The DICOM door with DCMTK as the peer (`echoscu`, `storescu`): C-ECHO,
//! AE titles, a multi-file study in one association ending in the same
//! stored bytes and catalog state as plain HTTP ingest of the same files,
//! no duplicates on a resend, failure statuses for bad data, and scope.
//! Then robustness: associations at once into one new study, a silent
//! association aborted, a transfer cut mid-data set, and transient
//! rejections (association limit, catalog down). A peer that must
//! misbehave on purpose is dicom-ul's client (`support::dicom_peer`).
//!
//! DCMTK comes from Debian's `dcmtk` (installed by `.ci/dcmtk`). Without it
//! the tests skip loudly, or fail under `RELAY_REQUIRE_SERVICES=1`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use serde_json::Value;
use support::dicom_peer::Peer;
use support::{Relay, Server, files_under};

/// The calling AE title the tests map to an office.
const AE: &str = "TEST_CT";

/// Whether DCMTK is installed; skips (or fails under
/// `RELAY_REQUIRE_SERVICES=1`) when it is not.
fn dcmtk(test: &str) -> bool {
    let found = ["echoscu", "storescu"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found {
        return true;
    }
    if std::env::var("RELAY_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{test}: DCMTK (echoscu, storescu) is missing but RELAY_REQUIRE_SERVICES=1; run the tests with .ci/test"
        );
    }
    eprintln!(
        "\n*** SKIPPED {test}: DCMTK is not installed (Debian package dcmtk; .ci/test installs it)\n"
    );
    false
}

/// A server with the DICOM door on a free port, and an office whose
/// calling AE title is [`AE`]: (server, DICOM port, office id, office token).
fn start(relay: &Relay, extra: &[&str]) -> (Server, String, String, String) {
    let (office, _user, token) = relay.office_with_user("Hillside Imaging");
    relay.ok(&[
        "admin",
        "office",
        "set-ae",
        "--office",
        &office,
        "--ae-title",
        AE,
    ]);
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--dicom-port", "0"];
    args.extend_from_slice(extra);
    let server = relay.start_with(&args, &[]);
    let log = server.log();
    let port = log
        .split("DICOM listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
        .expect("the DICOM port is logged")
        .to_owned();
    (server, port, office, token)
}

/// Runs a DCMTK tool; returns (success, stdout + stderr).
fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().expect("DCMTK runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A configuration file for the door's file-only settings.
fn config_file(relay: &Relay, toml: &str) -> String {
    let path = relay.dir().join("dicom.toml");
    std::fs::write(&path, toml).expect("config file");
    path.display().to_string()
}

/// Waits (bounded) until `check` holds, polling.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 10 s");
}

fn storescu(port: &str, calling: &str, files: &[PathBuf]) -> String {
    let mut args = vec!["-v", "-aet", calling, "-aec", "RELAY", "127.0.0.1", port];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    run("storescu", &args).1
}

/// `count` instances of one study, made from the uncompressed CT and MR
/// fixtures (two series), each with a SOP Instance UID of its own, and
/// without trailing padding, and with the file meta the DICOM door writes for [`AE`] — so the HTTP
/// upload of a file and its C-STORE must store the very same bytes.
pub fn one_study(dir: &Path, count: usize) -> (String, Vec<PathBuf>) {
    let study = format!("2.25.{}", uuid::Uuid::now_v7().as_u128());
    let sources = ["CT_small.dcm", "MR_small.dcm"];
    let files = (0..count)
        .map(|i| {
            let source = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/dicom")
                .join(sources[i % sources.len()]);
            let mut object = dicom_object::open_file(&source).expect("fixture opens");
            let uid = format!("{study}.{}", i + 1);
            for (tag, value) in [
                (tags::SOP_INSTANCE_UID, uid.as_str()),
                (tags::STUDY_INSTANCE_UID, study.as_str()),
            ] {
                object.put(DataElement::new(tag, VR::UI, PrimitiveValue::from(value)));
            }
            // Data Set Trailing Padding has no meaning and DCMTK does not
            // send it; a file without it is what a modality sends whole.
            object.remove_element(tags::DATA_SET_TRAILING_PADDING);
            // DCMTK sends a sequence with explicit lengths where dicom-object
            // writes undefined ones: the same data, other bytes. The CT's one
            // sequence goes, so the byte-for-byte comparison stays meaningful.
            object.remove_element(tags::OTHER_PATIENT_I_DS_SEQUENCE);
            let meta = FileMetaTableBuilder::new()
                .media_storage_sop_class_uid(object.meta().media_storage_sop_class_uid())
                .media_storage_sop_instance_uid(uid.as_str())
                .transfer_syntax(object.meta().transfer_syntax())
                .implementation_class_uid(relay::dimse::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(relay::dimse::IMPLEMENTATION_VERSION_NAME)
                .source_application_entity_title(AE)
                .build()
                .expect("meta");
            let object = object.into_inner().with_exact_meta(meta);
            let path = dir.join(format!("{uid}.dcm"));
            object.write_to_file(&path).expect("write an instance");
            path
        })
        .collect();
    (study, files)
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
    body.as_array()
        .or_else(|| body["items"].as_array())
        .cloned()
        .unwrap_or_default()
}

fn digests(images: &[Value]) -> BTreeSet<String> {
    images
        .iter()
        .map(|i| i["stored_sha256"].as_str().expect("sha").to_owned())
        .collect()
}

#[tokio::test]
async fn c_echo_succeeds_and_unknown_ae_titles_are_rejected() {
    if !dcmtk("c_echo_succeeds_and_unknown_ae_titles_are_rejected") {
        return;
    }
    let relay = Relay::new();
    let (server, port, _office, _token) = start(&relay, &[]);
    let (ok, out) = run(
        "echoscu",
        &["-aet", AE, "-aec", "RELAY", "127.0.0.1", &port],
    );
    assert!(ok, "C-ECHO from a mapped AE title: {out}");
    let (ok, out) = run(
        "echoscu",
        &["-aet", "STRANGER", "-aec", "RELAY", "127.0.0.1", &port],
    );
    assert!(!ok);
    assert!(out.contains("Calling AE Title Not Recognized"), "{out}");
    let (ok, out) = run(
        "echoscu",
        &["-aet", AE, "-aec", "NOT_RELAY", "127.0.0.1", &port],
    );
    assert!(!ok);
    assert!(out.contains("Called AE Title Not Recognized"), "{out}");
    // An unknown caller's instances are never stored.
    let dir = tempfile::tempdir().expect("dir");
    let (_, files) = one_study(dir.path(), 2);
    let out = storescu(&port, "STRANGER", &files);
    assert!(!out.contains("(Success)"), "{out}");
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "images").await, 0);
    assert_eq!(support::count(&mut db, "cases").await, 0);
    server.stop();
}

#[tokio::test]
async fn a_study_sent_with_storescu_is_stored_as_http_ingest_stores_it() {
    if !dcmtk("a_study_sent_with_storescu_is_stored_as_http_ingest_stores_it") {
        return;
    }
    let relay = Relay::new();
    let (server, port, office, token) = start(&relay, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let (study, files) = one_study(dir.path(), 6);

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

    // The same files in one association.
    let out = storescu(&port, AE, &files);
    assert_eq!(
        out.matches("Received Store Response (Success)").count(),
        files.len(),
        "{out}"
    );
    let cases = cases_of(&server, &token).await;
    assert_eq!(cases.len(), 1, "one case for the study: {cases:?}");
    let case = &cases[0];
    assert_eq!(case["status"], "draft");
    assert_eq!(case["specialty"], "radiology");
    assert_eq!(case["office_id"], office.as_str());
    let case_id = case["id"].as_str().expect("id").to_owned();
    let images = images_of(&server, &token, &case_id).await;
    assert_eq!(images.len(), files.len());
    assert_eq!(
        digests(&images),
        digests(&http_images),
        "the same stored bytes"
    );
    for image in &images {
        assert_eq!(image["media_type"], "application/dicom");
        assert_eq!(image["sha256"], image["stored_sha256"]);
        let id = image["id"].as_str().expect("id");
        let derived = server.derived(&token, id).await;
        assert_eq!(derived["derive_state"], "ready", "{derived}");
    }
    let (status, studies) = server
        .get(&format!("/api/v1/cases/{case_id}/studies"), &token)
        .await;
    assert_eq!(status, 200);
    assert!(studies.to_string().contains(&study), "{studies}");

    // Audited: the case and each image, by the AE title's own user.
    let admin = relay.admin_token();
    let (_, events) = server
        .get(
            &format!("/api/v1/audit?action=image.create&office_id={office}&limit=100"),
            &admin,
        )
        .await;
    let events = events["items"]
        .as_array()
        .or_else(|| events.as_array())
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), files.len(), "{events:?}");
    let (_, created) = server
        .get(
            &format!("/api/v1/audit?action=case.create&object_id={case_id}"),
            &admin,
        )
        .await;
    assert!(created.to_string().contains(&case_id), "{created}");

    // Sent again: success, and nothing new.
    let out = storescu(&port, AE, &files);
    assert_eq!(
        out.matches("Received Store Response (Success)").count(),
        files.len(),
        "{out}"
    );
    assert_eq!(cases_of(&server, &token).await.len(), 1);
    assert_eq!(
        images_of(&server, &token, &case_id).await.len(),
        files.len()
    );

    // Another office cannot see it.
    let (status, _) = server
        .get(&format!("/api/v1/cases/{case_id}"), &http_token)
        .await;
    assert_eq!(status, 404);
    server.stop();
}

#[tokio::test]
async fn bad_instances_get_failure_statuses_and_store_nothing() {
    if !dcmtk("bad_instances_get_failure_statuses_and_store_nothing") {
        return;
    }
    let relay = Relay::new();
    let (server, port, _office, token) = start(&relay, &["--max-upload-bytes", "20000"]);
    let dir = tempfile::tempdir().expect("dir");
    // No Study Instance UID: ingest refuses it, so no case is opened.
    let (_, files) = one_study(dir.path(), 2);
    let mut object = dicom_object::open_file(&files[1]).expect("opens");
    object.remove_element(tags::STUDY_INSTANCE_UID);
    let no_study = dir.path().join("no-study.dcm");
    object.write_to_file(&no_study).expect("write");
    let out = storescu(&port, AE, &[no_study]);
    assert!(!out.contains("(Success)"), "{out}");
    assert!(out.contains("Error: CannotUnderstand"), "{out}");
    // Over the size limit: out of resources, not success.
    let big = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom/emri_small.dcm");
    let out = storescu(&port, AE, &[big]);
    assert!(!out.contains("(Success)"), "{out}");
    assert!(out.contains("Refused: OutOfResources"), "{out}");
    assert!(cases_of(&server, &token).await.is_empty());
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "images").await, 0);
    assert_eq!(support::count(&mut db, "cases").await, 0);
    assert!(support::files_under(&relay.data_dir().join("blobs/tmp")).is_empty());
    server.stop();
}

#[tokio::test]
async fn associations_at_once_into_one_new_study_open_one_case() {
    if !dcmtk("associations_at_once_into_one_new_study_open_one_case") {
        return;
    }
    let relay = Relay::new();
    let (server, port, _office, token) = start(&relay, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let (_, files) = one_study(dir.path(), 12);
    // Four storescu at once, each with its own instances of the same new
    // study, so four first instances race to open its case.
    let senders: Vec<_> = files
        .chunks(3)
        .map(|part| {
            let (port, part) = (port.clone(), part.to_vec());
            std::thread::spawn(move || storescu(&port, AE, &part))
        })
        .collect();
    for sender in senders {
        let out = sender.join().expect("storescu ran");
        assert_eq!(
            out.matches("Received Store Response (Success)").count(),
            3,
            "{out}"
        );
    }
    let cases = cases_of(&server, &token).await;
    assert_eq!(cases.len(), 1, "one case for the study: {cases:?}");
    let case_id = cases[0]["id"].as_str().expect("id");
    let images = images_of(&server, &token, case_id).await;
    assert_eq!(images.len(), files.len(), "every instance once");
    assert_eq!(digests(&images).len(), files.len());
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "cases").await, 1);
    assert_eq!(support::count(&mut db, "images").await, 12);
    server.stop();
}

#[tokio::test]
async fn a_silent_association_is_aborted_after_the_idle_timeout() {
    if !dcmtk("a_silent_association_is_aborted_after_the_idle_timeout") {
        return;
    }
    let relay = Relay::new();
    let config = config_file(&relay, "dicom_idle_timeout = \"1s\"\n");
    let (server, port, _office, token) = start(&relay, &["--config", &config]);
    let dir = tempfile::tempdir().expect("dir");
    let (_, files) = one_study(dir.path(), 2);
    // Silent right after associating, and silent in the middle of a data set.
    for mid_data_set in [false, true] {
        let (port, file) = (port.clone(), files[0].clone());
        let (waited, next) = tokio::task::spawn_blocking(move || {
            let mut peer = Peer::associate(&port, AE).expect("associated");
            if mid_data_set {
                peer.send_part_of(&file, 0.5);
            }
            let started = std::time::Instant::now();
            let next = peer.next_pdu();
            (started.elapsed(), next)
        })
        .await
        .expect("peer ran");
        assert!(
            matches!(next, Ok(dicom_ul::Pdu::AbortRQ { .. }) | Err(_)),
            "aborted or closed: {next:?}"
        );
        assert!(
            waited >= std::time::Duration::from_millis(900)
                && waited < std::time::Duration::from_secs(8),
            "after the 1 s idle timeout: {waited:?}"
        );
    }
    let spool = relay.data_dir().join("blobs/tmp");
    eventually("the partial instance's spool file is removed", || {
        files_under(&spool).is_empty()
    })
    .await;
    assert!(server.log().contains("idle"), "the log says why");
    // The door goes on serving.
    let out = storescu(&port, AE, &files);
    assert_eq!(
        out.matches("Received Store Response (Success)").count(),
        2,
        "{out}"
    );
    assert_eq!(cases_of(&server, &token).await.len(), 1);
    server.stop();
}

#[tokio::test]
async fn a_transfer_cut_mid_data_set_stores_nothing_and_the_door_goes_on() {
    if !dcmtk("a_transfer_cut_mid_data_set_stores_nothing_and_the_door_goes_on") {
        return;
    }
    let relay = Relay::new();
    let (server, port, _office, token) = start(&relay, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let (_, files) = one_study(dir.path(), 3);
    // The peer aborts (A-ABORT) mid-data set, then another just drops the
    // connection mid-data set.
    for abort in [true, false] {
        let (port, file) = (port.clone(), files[0].clone());
        tokio::task::spawn_blocking(move || {
            let mut peer = Peer::associate(&port, AE).expect("associated");
            peer.send_part_of(&file, 0.6);
            if abort {
                peer.association.abort().expect("A-ABORT sent");
            } else {
                drop(peer);
            }
        })
        .await
        .expect("peer ran");
    }
    let spool = relay.data_dir().join("blobs/tmp");
    eventually("the partial instances' spool files are removed", || {
        files_under(&spool).is_empty()
    })
    .await;
    let mut db = relay.database().await;
    assert_eq!(support::count(&mut db, "images").await, 0);
    assert_eq!(support::count(&mut db, "cases").await, 0);
    let log = server.log();
    assert!(log.contains("association aborted by the peer"), "{log}");
    // The same instance, whole, and the rest of the study: all stored once.
    let out = storescu(&port, AE, &files);
    assert_eq!(
        out.matches("Received Store Response (Success)").count(),
        files.len(),
        "{out}"
    );
    let cases = cases_of(&server, &token).await;
    assert_eq!(cases.len(), 1);
    let case_id = cases[0]["id"].as_str().expect("id");
    assert_eq!(images_of(&server, &token, case_id).await.len(), files.len());
    server.stop();
}

#[tokio::test]
async fn past_the_association_limit_a_request_is_rejected_as_transient() {
    if !dcmtk("past_the_association_limit_a_request_is_rejected_as_transient") {
        return;
    }
    let relay = Relay::new();
    let config = config_file(&relay, "dicom_max_associations = 1\n");
    let (server, port, _office, _token) = start(&relay, &["--config", &config]);
    let held = {
        let port = port.clone();
        tokio::task::spawn_blocking(move || Peer::associate(&port, AE).expect("associated"))
            .await
            .expect("peer ran")
    };
    let (ok, out) = run(
        "echoscu",
        &["-v", "-aet", AE, "-aec", "RELAY", "127.0.0.1", &port],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Rejected Transient"), "{out}");
    assert!(out.contains("Local Limit Exceeded"), "{out}");
    assert!(
        server.log().contains("too many DICOM associations"),
        "the log says why"
    );
    // Once the held association is released there is room again.
    tokio::task::spawn_blocking(move || held.association.release().expect("released"))
        .await
        .expect("peer ran");
    let mut echoed = false;
    for _ in 0..50 {
        let (ok, _) = run(
            "echoscu",
            &["-aet", AE, "-aec", "RELAY", "127.0.0.1", &port],
        );
        if ok {
            echoed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(echoed, "C-ECHO succeeds once the limit is not reached");
    server.stop();
}

#[tokio::test]
async fn while_the_catalog_is_down_requests_are_rejected_as_transient() {
    let test = "while_the_catalog_is_down_requests_are_rejected_as_transient";
    if !dcmtk(test) {
        return;
    }
    let Some(cluster) = support::cluster::Cluster::start(test) else {
        return;
    };
    let blobs = tempfile::tempdir().expect("blobs");
    let relay = Relay::with_backends(&cluster.url(), &blobs.path().display().to_string());
    let (server, port, _office, _token) = start(&relay, &[]);
    let echo = || {
        run(
            "echoscu",
            &["-v", "-aet", AE, "-aec", "RELAY", "127.0.0.1", &port],
        )
    };
    let (ok, out) = echo();
    assert!(ok, "{out}");
    cluster.stop_immediately();
    let (ok, out) = echo();
    assert!(!ok, "{out}");
    assert!(out.contains("Rejected Transient"), "{out}");
    assert!(out.contains("No Reason"), "{out}");
    assert!(
        !out.contains("Calling AE Title Not Recognized"),
        "not a permanent refusal: {out}"
    );
    cluster.start_again();
    let mut echoed = false;
    for _ in 0..30 {
        if echo().0 {
            echoed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        echoed,
        "associations are accepted again once the catalog is back"
    );
    server.stop();
}
