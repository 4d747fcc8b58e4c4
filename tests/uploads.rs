//! Resumable uploads (tus 1.0.0) at `/api/v1/uploads`: a 200 MB DICOM
//! whose connection is cut halfway, the server then SIGKILLed, resumes
//! from the offset the restarted server reports and ends as a
//! byte-identical, verified image; a real tus client (`tuspy`) uploads into
//! a case with the same receipt as a plain upload; bad input is refused and
//! leaves nothing.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sha2::Digest;
use support::{Relay, Server};
use tokio::io::AsyncWriteExt;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A tus request to `path` with `token`.
fn tus(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    server
        .http
        .request(method, server.url(path))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
}

/// A PATCH of `body` at `offset`.
fn patch(
    server: &Server,
    token: &str,
    upload: &str,
    offset: u64,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    tus(server, reqwest::Method::PATCH, upload, token)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset.to_string())
        .body(body)
}

/// Creates an upload; returns its path (`/api/v1/uploads/…`).
async fn create(server: &Server, token: &str, case: &str, length: u64, name: &str) -> String {
    let response = server
        .http
        .post(server.url("/api/v1/uploads"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!(
                "case {},filename {},filetype {}",
                b64(case),
                b64(name),
                b64("application/dicom")
            ),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned()
}

async fn offset(server: &Server, token: &str, upload: &str) -> u64 {
    let response = tus(server, reqwest::Method::HEAD, upload, token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.headers()["upload-offset"]
        .to_str()
        .expect("offset")
        .parse()
        .expect("number")
}

/// Sends a PATCH at `offset` whose body is cut after `sent` of the declared
/// `bytes.len()` bytes: the connection closes mid-body, as a dropped link.
async fn cut_patch(
    server: &Server,
    token: &str,
    upload: &str,
    offset: u64,
    bytes: &[u8],
    sent: usize,
) {
    let addr = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: {offset}\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    for chunk in bytes[..sent].chunks(1 << 20) {
        socket.write_all(chunk).await.expect("body");
    }
    socket.flush().await.expect("flush");
    // Let the server take in what arrived before the line drops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(socket);
}

/// The sha256 of `bytes`, computed on a blocking thread.
async fn digest_off_runtime(bytes: &[u8]) -> Vec<u8> {
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || sha2::Sha256::digest(&bytes).to_vec())
        .await
        .expect("hashing thread")
}

#[tokio::test]
async fn a_cut_200_mb_upload_resumes_after_a_server_kill_to_an_identical_image() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Rural Clinic");
    let work = tempfile::tempdir().expect("tempdir");
    let path = work.path().join("ct-study.dcm");
    support::large_dicom(&path, 200);
    let bytes = std::fs::read(&path).expect("read");
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    assert!(bytes.len() > 200 << 20);

    let server = relay.start();
    let case = server.create_case(&office, "radiology").await;
    let upload = create(&server, &office, &case, bytes.len() as u64, "ct-study.dcm").await;
    assert_eq!(offset(&server, &office, &upload).await, 0);
    cut_patch(&server, &office, &upload, 0, &bytes, bytes.len() / 2).await;
    let kept = offset(&server, &office, &upload).await;
    assert!(kept > 0 && kept <= (bytes.len() / 2) as u64, "{kept}");
    server.kill_hard();

    // The restarted server knows the upload and how far it got.
    let server = relay.start();
    let resumed_at = offset(&server, &office, &upload).await;
    assert_eq!(resumed_at, kept, "what was acknowledged survived the kill");
    // A PATCH at the wrong offset is refused and changes nothing.
    let wrong = patch(&server, &office, &upload, 0, bytes[..10].to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), 409);
    // Its body may be unread, so the answer says the connection ends: the
    // client must not send the next PATCH on it.
    assert_eq!(wrong.headers()["connection"], "close");
    // The rest, with its sha256, in one PATCH.
    let rest = &bytes[resumed_at as usize..];
    // Hashing 100 MB takes seconds in a debug build: off the runtime's one
    // thread, so the client's idle connections still notice when the
    // server closes them (it does after `header_read_timeout` idle).
    let checksum = base64::engine::general_purpose::STANDARD.encode(digest_off_runtime(rest).await);
    let done = patch(&server, &office, &upload, resumed_at, rest.to_vec())
        .header("upload-checksum", format!("sha256 {checksum}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(done.status(), 204, "{:?}", done.headers());
    assert_eq!(
        done.headers()["upload-offset"],
        bytes.len().to_string().as_str()
    );
    let image = done.headers()["location"]
        .to_str()
        .expect("location")
        .rsplit('/')
        .next()
        .expect("id")
        .to_owned();
    let (status, original) = server.original(&office, &image).await;
    assert_eq!(status, 200);
    assert_eq!(
        hex::encode(digest_off_runtime(&original).await),
        sha,
        "byte-identical"
    );
    let (_, listed) = server
        .get(&format!("/api/v1/cases/{case}/images"), &office)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Asking again after the answer was lost: the upload names its image.
    let again = tus(&server, reqwest::Method::HEAD, &upload, &office)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        again.headers()["relay-image"],
        format!("/api/v1/images/{image}").as_str()
    );
    server.stop();
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Rural Clinic");
    let (_, _, other) = relay.office_with_user("Other Clinic");
    let server = relay.start();
    let case = server.create_case(&office, "radiology").await;

    // Discovery.
    let options = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/uploads"))
        .send()
        .await
        .expect("sent");
    assert_eq!(options.status(), 204);
    assert_eq!(options.headers()["tus-version"], "1.0.0");
    assert!(
        options.headers()["tus-extension"]
            .to_str()
            .expect("ascii")
            .contains("checksum")
    );
    // No tus version: 412.
    let (status, body) = server
        .send(server.http.post(server.url("/api/v1/uploads")), &office)
        .await;
    assert_eq!((status, body["error"].as_str()), (412, Some("tus_version")));
    // Another office's case: 404, as a missing one.
    let foreign = server
        .http
        .post(server.url("/api/v1/uploads"))
        .bearer_auth(&other)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .header("upload-metadata", format!("case {}", b64(&case)))
        .send()
        .await
        .expect("sent");
    assert_eq!(foreign.status(), 404);

    // Not a DICOM after all: the last byte's ingest refuses it, the upload
    // is gone, nothing is stored.
    let junk = b"this is not an image at all, only text".to_vec();
    let upload = create(&server, &office, &case, junk.len() as u64, "junk.dcm").await;
    // Someone else's office cannot see or feed it.
    let status = tus(&server, reqwest::Method::HEAD, &upload, &other)
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 404);
    // A wrong checksum discards the chunk.
    let bad_sum = patch(&server, &office, &upload, 0, junk.clone())
        .header(
            "upload-checksum",
            format!(
                "sha256 {}",
                base64::engine::general_purpose::STANDARD.encode([0u8; 32])
            ),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_sum.status(), 460);
    assert_eq!(offset(&server, &office, &upload).await, 0);
    let refused = patch(&server, &office, &upload, 0, junk)
        .send()
        .await
        .expect("sent");
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let status = tus(&server, reqwest::Method::HEAD, &upload, &office)
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 404, "a refused upload is discarded");
    assert!(support::files_under(&relay.data_dir().join("blobs/sha256")).is_empty());
    assert!(support::files_under(&relay.data_dir().join("uploads")).is_empty());

    // Terminated: gone, and audited as cancelled.
    let upload = create(&server, &office, &case, 100, "later.dcm").await;
    let status = tus(&server, reqwest::Method::DELETE, &upload, &office)
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 204);
    server.stop();
    let cancelled = relay.ok(&["admin", "audit", "--action", "upload.cancel"]);
    assert_eq!(cancelled.lines().count(), 2, "{cancelled}");
    let started = relay.ok(&["admin", "audit", "--action", "upload.start"]);
    assert_eq!(started.lines().count(), 2, "{started}");
}

/// `tuspy`, a real tus client, uploads a real DICOM file in 64 KiB chunks:
/// the receipt is the plain upload's.
#[tokio::test]
async fn a_real_tus_client_uploads_into_a_case() {
    let Some(python) =
        relay_workers::testing::python_peers("a_real_tus_client_uploads_into_a_case")
    else {
        return;
    };
    let relay = Relay::new();
    let (_, _, office) = relay.office_with_user("Rural Clinic");
    let server = relay.start();
    let case = server.create_case(&office, "radiology").await;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom/MR_small.dcm");
    let script = r#"
import sys
from tusclient import client
url, token, case, path = sys.argv[1:5]
tus = client.TusClient(url, headers={"Authorization": "Bearer " + token})
uploader = tus.uploader(path, chunk_size=64 * 1024,
    metadata={"case": case, "filename": "MR_small.dcm", "filetype": "application/dicom"})
uploader.upload()
print(uploader.url)
"#;
    let mut file = tempfile::NamedTempFile::new().expect("script");
    file.write_all(script.as_bytes()).expect("write");
    let out = std::process::Command::new(&python)
        .arg(file.path())
        .arg(server.url("/api/v1/uploads"))
        .arg(&office)
        .arg(&case)
        .arg(&fixture)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).expect("utf-8");
    assert!(url.trim().contains("/api/v1/uploads/u"), "{url}");

    let (_, listed) = server
        .get(&format!("/api/v1/cases/{case}/images"), &office)
        .await;
    let images = listed.as_array().expect("images").clone();
    assert_eq!(images.len(), 1, "{listed}");
    let bytes = std::fs::read(&fixture).expect("fixture");
    let expected: Value = Value::String(hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(
        images[0]["stored_sha256"], expected,
        "DICOM is stored as received"
    );
    assert_eq!(images[0]["filename"], "MR_small.dcm");
    // The same bytes over plain HTTP into a second case: the same receipt.
    let other = server.create_case(&office, "radiology").await;
    let plain = server
        .upload(&office, &other, "dicom/MR_small.dcm", "application/dicom")
        .await;
    assert_eq!(plain["stored_sha256"], images[0]["stored_sha256"]);
    assert_eq!(plain["media_type"], images[0]["media_type"]);
    assert_eq!(plain["size"], images[0]["size"]);
    server.stop();
}
