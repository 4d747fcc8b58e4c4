//! PHI canaries. Every test of the suite sends the same canary patient
//! (name, record number, birth date, history) and canary filenames, starts
//! `relay` at the most verbose log level, and the harness fails any test
//! whose server or worker logged a canary or a whole bearer token, or
//! answered an error that names one (tests/support/canary.rs). This file
//! checks that the detector can fire, and runs one whole consult through
//! every door that takes patient data — including refusals, which are the
//! likeliest place for a value to be echoed — looking at the log by hand.

mod support;

use serde_json::{Value, json};
use support::canary;
use support::{Relay, fixture, referral};

#[test]
fn the_detector_finds_every_canary_and_whole_tokens_but_not_ids() {
    for value in canary::ALL {
        let line = format!("INFO request failed: {value} …");
        assert_eq!(canary::find(&line).map(|(c, _)| c), Some(value));
    }
    let id = "0123456789abcdef0123456789abcdef";
    let token = format!("relay_{id}_{}", "ab".repeat(32));
    assert!(canary::find(&format!("authorization: Bearer {token}")).is_some());
    assert!(canary::find(&format!("signed in token.id=relay_{id}")).is_none());
    assert!(canary::find("blob e3b0c44298fc1c149afbf4c8996fb92427ae41e4").is_none());
    let caught = std::panic::catch_unwind(|| {
        canary::assert_clean_error(422, &format!("{{\"message\":\"{}\"}}", canary::MRN));
    });
    assert!(
        caught.is_err(),
        "an error body naming the MRN fails the test"
    );
    canary::assert_clean_error(200, canary::PATIENT_NAME);
}

#[tokio::test]
async fn a_whole_consult_with_refusals_writes_no_patient_data() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Canary Clinic");
    let specialist = relay.specialist_token("dermatology");
    let admin = relay.admin_token();
    let server = relay.start();

    // Patient data in: a referral, an edit, photos and a DICOM file named
    // after the patient, a multipart upload whose second file is refused.
    let case = server.create_case(&office, "dermatology").await;
    let (status, edited) = server
        .patch(
            &format!("/api/v1/cases/{case}"),
            &office,
            json!({"history": format!("{}, and now itching.", canary::HISTORY)}),
        )
        .await;
    assert_eq!(status, 200, "{edited}");
    server
        .upload(&office, &case, "photos/camera-gps.jpg", "image/jpeg")
        .await;
    server
        .upload(&office, &case, "dicom/CT_small.dcm", "application/dicom")
        .await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixture("photos/plain.png"))
                .file_name(format!("{} plain.png", canary::FILENAME))
                .mime_str("image/png")
                .expect("mime"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixture("bad/truncated.jpg"))
                .file_name(format!(
                    "{} {}.jpg",
                    canary::PATIENT_NAME,
                    canary::BIRTH_DATE
                ))
                .mime_str("image/jpeg")
                .expect("mime"),
        );
    let request = server
        .http
        .post(server.url(&format!("/api/v1/cases/{case}/images")))
        .multipart(form);
    let (status, refused) = server.send(request, &office).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("file 2 of the upload")),
        "the refused file is named by its place: {refused}"
    );
    // A referral refused for one field still carries the others.
    let mut bad = referral("dermatology");
    bad["patient"]["sex"] = Value::from("unknown-value");
    let (status, _) = server.post("/api/v1/cases", &office, bad).await;
    assert_eq!(status, 422);

    // The consult loop, and patient data out: case, images, report.
    for (method, path, token) in [
        (reqwest::Method::POST, "submit", &office),
        (reqwest::Method::POST, "claim", &specialist),
        (reqwest::Method::PUT, "report", &specialist),
        (reqwest::Method::POST, "report/sign", &specialist),
    ] {
        let request = server
            .http
            .request(method, server.url(&format!("/api/v1/cases/{case}/{path}")))
            .json(&json!({"impression": "Benign naevus."}));
        let (status, reply) = server.send(request, token).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    let (status, read) = server.get(&format!("/api/v1/cases/{case}"), &office).await;
    assert_eq!(status, 200);
    assert_eq!(
        read["patient"]["name"],
        canary::PATIENT_NAME,
        "the canary was really sent"
    );
    let (status, _) = server.get("/api/v1/audit?limit=50", &admin).await;
    assert_eq!(status, 200);

    let log = server.log();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the server ran at its most verbose level"
    );
    assert!(log.contains(&case), "the log names the case by id");
    canary::assert_clean_log("relay serve", &log);
}
