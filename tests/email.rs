//! E-mail notices reach the office through an SMTP relay — here a real
//! local SMTP sink started by the test, plain or over TLS with a private CA
//! — carrying the case id and a link, never patient data.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::Relay;
use support::receivers::SmtpSink;

/// A relay whose office wants e-mail at frontdesk@clinic.example, serving
/// with `smtp` as its mail relay (plus any `extra` flags).
fn mail_clinic(relay: &Relay, smtp: &str, extra: &[&str]) -> (String, String, support::Server) {
    let (office_id, _, office) = relay.office_with_user("Mail Clinic");
    let specialist = relay.specialist_token("dermatology");
    relay.ok(&[
        "admin",
        "office",
        "email",
        "--office",
        &office_id,
        "--to",
        "frontdesk@clinic.example",
    ]);
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--smtp-url",
        smtp,
        "--mail-from",
        "relay@relay.example",
        "--public-url",
        "https://relay.clinic.example",
    ];
    args.extend_from_slice(extra);
    let server = relay.start_with(&args, &[]);
    (office, specialist, server)
}

fn assert_notice_for(message: &str, case: &str) {
    assert!(
        message.contains("To: frontdesk@clinic.example"),
        "{message}"
    );
    assert!(message.contains("A consult report is ready"), "{message}");
    assert!(message.contains(case), "{message}");
    assert!(
        message.contains(&format!(
            "https://relay.clinic.example/api/v1/cases/{case}/report.html"
        )),
        "{message}"
    );
    for secret in [
        support::PATIENT_NAME,
        "MRN-77120",
        "1961-07-14",
        "Benign naevus.",
    ] {
        assert!(!message.contains(secret), "{secret} leaked into an e-mail");
    }
}

#[tokio::test]
async fn a_signed_report_sends_an_e_mail_notice_without_patient_data() {
    let (sink, smtp) = SmtpSink::start().await;
    let relay = Relay::new();
    let (office, specialist, server) = mail_clinic(&relay, &smtp, &[]);
    let case = server.signed_case(&office, &specialist).await;
    assert_notice_for(&sink.first_message().await, &case);
}

/// A relay across a network is reached over TLS, and its certificate is
/// checked: trusted through the site's CA file, refused without it.
#[tokio::test]
async fn notices_travel_over_tls_and_the_relay_certificate_is_verified() {
    let (sink, smtps, ca_pem) = SmtpSink::start_tls().await;
    let relay = Relay::new();
    let ca_file = relay.dir().join("site-ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write CA");

    // Without the site's CA the relay's certificate is not trusted: the job
    // fails (and will retry), and nothing is sent.
    let (office, specialist, server) = mail_clinic(&relay, &smtps, &[]);
    server.signed_case(&office, &specialist).await;
    let mut job = Value::Null;
    for _ in 0..200 {
        let jobs = relay.ok(&["jobs", "list", "--kind", "email"]);
        job = serde_json::from_str(jobs.lines().next().expect("an email job")).expect("json");
        if job["last_error"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("certificate") || error.contains("UnknownIssuer"),
        "an untrusted relay is refused: {job}"
    );
    assert!(
        sink.all().await.is_empty(),
        "nothing sent to an untrusted relay"
    );
    server.stop();

    // With it, the notice goes through over TLS.
    let ca = ca_file.display().to_string();
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--smtp-url",
            &smtps,
            "--smtp-ca-file",
            &ca,
            "--mail-from",
            "relay@relay.example",
            "--public-url",
            "https://relay.clinic.example",
        ],
        &[],
    );
    let case = server.signed_case(&office, &specialist).await;
    let mut found = None;
    for _ in 0..200 {
        found = sink.all().await.into_iter().find(|m| m.contains(&case));
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_notice_for(&found.expect("the notice arrived over TLS"), &case);
}
