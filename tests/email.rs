//! E-mail notices reach the office through an SMTP relay — here a real
//! local SMTP sink started by the test — carrying the case id and a link,
//! never patient data.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::Relay;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

/// A minimal SMTP server that accepts every message and keeps it.
async fn smtp_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("smtp://{}", listener.local_addr().expect("addr"));
    let messages = Arc::new(Mutex::new(Vec::new()));
    let sink = messages.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            sink.lock().await.push(std::mem::take(body));
                            data = None;
                            let _ = write.write_all(b"250 queued\r\n").await;
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"250 ok\r\n",
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (url, messages)
}

#[tokio::test]
async fn a_signed_report_sends_an_e_mail_notice_without_patient_data() {
    let (smtp, messages) = smtp_sink().await;
    let relay = Relay::new();
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
    let server = relay.start_with(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--smtp-url",
            &smtp,
            "--mail-from",
            "relay@relay.example",
            "--public-url",
            "https://relay.clinic.example",
        ],
        &[],
    );
    let case = server.create_case(&office, "dermatology").await;
    server
        .upload(&office, &case, "photos/camera-plain.jpg", "image/jpeg")
        .await;
    for (method, path, token) in [
        (reqwest::Method::POST, "submit", &office),
        (reqwest::Method::POST, "claim", &specialist),
        (reqwest::Method::PUT, "report", &specialist),
        (reqwest::Method::POST, "report/sign", &specialist),
    ] {
        let request = server
            .http
            .request(method, server.url(&format!("/api/v1/cases/{case}/{path}")))
            .json(&json!({"impression": "Benign."}));
        let (status, body) = server.send(request, token).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let mut message = String::new();
    for _ in 0..200 {
        if let Some(m) = messages.lock().await.first() {
            message = m.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!message.is_empty(), "no e-mail within 10 s");
    // Undo quoted-printable soft line breaks.
    let message = message.replace("=\n", "");
    assert!(
        message.contains("To: frontdesk@clinic.example"),
        "{message}"
    );
    assert!(message.contains("A consult report is ready"), "{message}");
    assert!(message.contains(&case), "{message}");
    assert!(
        message.contains(&format!(
            "https://relay.clinic.example/api/v1/cases/{case}/report.html"
        )),
        "{message}"
    );
    for secret in [support::PATIENT_NAME, "MRN-77120", "1961-07-14", "Benign."] {
        assert!(!message.contains(secret), "{secret} leaked into an e-mail");
    }
}

#[test]
fn notice_addresses_are_checked() {
    let relay = Relay::new();
    let office = relay.create_office("Clinic");
    let out = relay.run(&[
        "admin",
        "office",
        "email",
        "--office",
        &office,
        "--to",
        "not an address",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an e-mail address"));
    relay.ok(&[
        "admin",
        "office",
        "email",
        "--office",
        &office,
        "--to",
        "a@clinic.example",
    ]);
    relay.ok(&["admin", "office", "email", "--office", &office, "--remove"]);
}
