//! The hostile input corpus: every file in `fixtures/hostile` (made by
//! `fixtures/make_hostile.py` from the real fixtures, listed with its
//! expected answer in `manifest.json`) is sent to the real server as a raw
//! upload, as a multipart upload and, for a sample, through the tus door.
//! Each must be refused with its 4xx and code within a second, leave
//! nothing behind (no image row, no blob, no spool or upload file), and the
//! server's peak RSS must stay bounded. Then the request-level attacks: gzip
//! bombs, a 4 GB `Content-Length` with no body, broken multipart, and
//! slow-loris clients, which are timed out while others are served.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::Digest;
use support::{Relay, Server, files_under, fixture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Each hostile request must be answered within this (a functional bound
/// with a wide margin on a shared machine, not a benchmark).
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// The 100 000-element DICOM files are walked element by element: in the
/// unoptimised test build that takes up to about 2 s (see README).
const HEAVY_ANSWER_WITHIN: Duration = Duration::from_secs(3);
/// The server's peak resident memory after the whole corpus, in KiB.
const PEAK_RSS_BOUND_KIB: u64 = 160 * 1024;

#[derive(Debug, Deserialize)]
struct Manifest {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
struct Entry {
    /// Path under `fixtures/`.
    file: String,
    content_type: String,
    status: u16,
    error: String,
    why: String,
    sha256: Option<String>,
}

fn manifest() -> Vec<Entry> {
    let text = fixture("hostile/manifest.json");
    let manifest: Manifest = serde_json::from_slice(&text).expect("manifest.json parses");
    manifest.entries
}

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile")
}

/// What a refused upload must not leave: blob files, spool files, resumable
/// upload files, image rows.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    blobs: usize,
    spool: usize,
    uploads: usize,
    images: i64,
    blob_rows: i64,
}

async fn leftovers(relay: &Relay) -> Leftovers {
    let mut db = relay.database().await;
    let data = relay.data_dir();
    Leftovers {
        blobs: files_under(&data.join("blobs/sha256")).len(),
        spool: files_under(&data.join("blobs/tmp")).len(),
        uploads: files_under(&data.join("uploads")).len(),
        images: support::count(&mut db, "images").await,
        blob_rows: support::count(&mut db, "blobs").await,
    }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

struct Office {
    relay: Relay,
    server: Server,
    token: String,
}

impl Office {
    /// A server with no worker (nothing but ingest runs) and, when given,
    /// a configuration file's lines.
    fn start(config: &str) -> Self {
        let relay = Relay::new();
        let (_, _, token) = relay.office_with_user("Hostile Clinic");
        std::fs::write(relay.dir().join("relay.toml"), config).expect("config file");
        let server = relay.start_with(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "0",
                "--config",
                "relay.toml",
            ],
            &[],
        );
        Self {
            relay,
            server,
            token,
        }
    }

    fn addr(&self) -> String {
        self.server.base.trim_start_matches("http://").to_owned()
    }

    async fn case(&self) -> String {
        self.server.create_case(&self.token, "radiology").await
    }

    /// No image in the case, as the API reports it.
    async fn no_images(&self, case: &str) -> bool {
        let (status, body) = self
            .server
            .get(&format!("/api/v1/cases/{case}/images"), &self.token)
            .await;
        status == 200 && body.as_array().is_some_and(Vec::is_empty)
    }
}

/// Sends `request`, returns status, JSON body and how long the whole
/// exchange took.
async fn timed(
    server: &Server,
    request: reqwest::RequestBuilder,
    token: &str,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let (status, body) = server.send(request, token).await;
    (status, body, started.elapsed())
}

/// Checks one answer against its entry; returns a description of what was
/// wrong, if anything.
fn check(entry: &Entry, how: &str, status: u16, body: &Value, took: Duration) -> Option<String> {
    let code = body["error"].as_str().unwrap_or_default();
    let mut wrong = Vec::new();
    if (status, code) != (entry.status, entry.error.as_str()) {
        wrong.push(format!(
            "answered {status} {code:?}, expected {} {:?}: {body}",
            entry.status, entry.error
        ));
    }
    let bound = if entry.file.starts_with("hostile/dicom-elements/") {
        HEAVY_ANSWER_WITHIN
    } else {
        ANSWER_WITHIN
    };
    if took > bound {
        wrong.push(format!("took {took:?}"));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{} ({how}; {}): {}",
            entry.file,
            entry.why,
            wrong.join("; ")
        )
    })
}

#[test]
fn the_corpus_holds_what_its_manifest_says() {
    let entries = manifest();
    let files: Vec<_> = files_under(&corpus_dir())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name != "manifest.json" && name != "SHA256SUMS"
        })
        .collect();
    assert!(files.len() >= 200, "only {} hostile files", files.len());
    for entry in &entries {
        assert!(
            (400..500).contains(&entry.status),
            "{} expects {}: every hostile input is a client error",
            entry.file,
            entry.status
        );
        if let Some(sha256) = &entry.sha256 {
            assert_eq!(
                &hex::encode(sha2::Sha256::digest(fixture(&entry.file))),
                sha256,
                "{} differs from the manifest: run fixtures/make_hostile.py",
                entry.file
            );
        }
    }
    // Every image file of the corpus is in the manifest.
    for file in files {
        let relative = file
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"))
            .expect("under fixtures")
            .to_string_lossy()
            .into_owned();
        assert!(
            relative.starts_with("hostile/request/") || entries.iter().any(|e| e.file == relative),
            "{relative} has no manifest entry"
        );
    }
}

#[tokio::test]
async fn every_hostile_file_is_refused_quickly_and_leaves_nothing() {
    let office = Office::start("");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    let entries = manifest();
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut slowest_light = Duration::ZERO;
    for entry in &entries {
        let bytes = fixture(&entry.file);
        let content_type = reqwest::header::HeaderValue::from_bytes(entry.content_type.as_bytes())
            .expect("a header value");
        let request = office
            .server
            .http
            .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
            .header("content-type", content_type)
            .body(bytes.clone());
        let (status, body, took) = timed(&office.server, request, &office.token).await;
        slowest = slowest.max(took);
        if !entry.file.starts_with("hostile/dicom-elements/") {
            slowest_light = slowest_light.max(took);
        }
        failures.extend(check(entry, "raw", status, &body, took));

        // The same file as one part of a multipart form.
        let Ok(part) = reqwest::multipart::Part::bytes(bytes)
            .file_name("upload.bin")
            .mime_str(&entry.content_type)
        else {
            continue;
        };
        let request = office
            .server
            .http
            .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
            .multipart(reqwest::multipart::Form::new().part("file", part));
        let (status, body, took) = timed(&office.server, request, &office.token).await;
        slowest = slowest.max(took);
        if !entry.file.starts_with("hostile/dicom-elements/") {
            slowest_light = slowest_light.max(took);
        }
        failures.extend(check(entry, "multipart", status, &body, took));
    }
    let after = leftovers(&office.relay).await;
    let peak = peak_rss_kib(office.server.pid());
    eprintln!(
        "hostile corpus: {} entries, raw and multipart; slowest answer {slowest:?} ({slowest_light:?} without the 100 000-element files); server peak RSS {} KiB",
        entries.len(),
        peak
    );
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(after, before, "the corpus left something behind");
    assert!(office.no_images(&case).await);
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB over the bound of {PEAK_RSS_BOUND_KIB} KiB"
    );
    // And the server still works.
    office
        .server
        .upload(
            &office.token,
            &case,
            "dicom/CT_small.dcm",
            "application/dicom",
        )
        .await;
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Creates a tus upload of `length` bytes; returns the creation answer.
async fn tus_create(
    office: &Office,
    case: &str,
    entry: &Entry,
    length: usize,
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut request = office
        .server
        .http
        .post(office.server.url("/api/v1/uploads"))
        .bearer_auth(&office.token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!(
                "case {},filename {},filetype {}",
                b64(case),
                b64("upload.bin"),
                b64(&entry.content_type)
            ),
        );
    if let Some(body) = body {
        request = request
            .header("content-type", "application/offset+octet-stream")
            .body(body);
    }
    request.send().await.expect("sent")
}

#[tokio::test]
async fn hostile_files_through_the_tus_door_are_refused_and_leave_nothing() {
    let office = Office::start("");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    // Every fifth corpus file (an empty one cannot be a tus upload), which
    // samples every category.
    let sample: Vec<Entry> = manifest()
        .into_iter()
        .filter(|e| e.file.starts_with("hostile/") && e.status != 400)
        .step_by(5)
        .collect();
    assert!(sample.len() >= 40);
    let mut failures = Vec::new();
    for (i, entry) in sample.iter().enumerate() {
        let bytes = fixture(&entry.file);
        let started = Instant::now();
        if i % 2 == 0 {
            // Creation, then one PATCH with the whole file.
            let created = tus_create(&office, &case, entry, bytes.len(), None).await;
            assert_eq!(created.status(), 201, "{}", entry.file);
            let location = created.headers()["location"]
                .to_str()
                .expect("location")
                .to_owned();
            let request = office
                .server
                .http
                .patch(office.server.url(&location))
                .header("tus-resumable", "1.0.0")
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", "0")
                .body(bytes);
            let (status, body) = office.server.send(request, &office.token).await;
            failures.extend(check(entry, "tus PATCH", status, &body, started.elapsed()));
        } else {
            // Creation with the whole file in the same request.
            let created = tus_create(&office, &case, entry, bytes.len(), Some(bytes)).await;
            let status = created.status().as_u16();
            let text = created.text().await.unwrap_or_default();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            failures.extend(check(
                entry,
                "tus creation-with-upload",
                status,
                &body,
                started.elapsed(),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(leftovers(&office.relay).await, before);
    assert!(office.no_images(&case).await);
}

/// A raw HTTP/1.1 exchange: writes `head` (and `body`), reads the whole
/// answer until the server closes or `wait` runs out; returns the status
/// (0 when the server closed without an answer), the answer text and how
/// long it took.
async fn raw_exchange(
    addr: &str,
    head: &str,
    body: &[u8],
    wait: Duration,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(body).await.expect("body");
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                // A complete answer with a length: stop reading.
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, rest)) = text.split_once("\r\n\r\n")
                    && let Some(len) = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                    && rest.len() >= len
                {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, started.elapsed())
}

fn upload_head(
    office: &Office,
    case: &str,
    content_type: &str,
    length: u64,
    extra: &str,
) -> String {
    format!(
        "POST /api/v1/cases/{case}/images HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}\r\n",
        office.addr(),
        office.token
    )
}

#[tokio::test]
async fn gzip_request_bodies_are_refused_not_inflated() {
    let office = Office::start("");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    // 1 GiB of JSON, about 1 MB gzipped.
    let json_bomb = fixture("hostile/request/gzip-bomb-1gib.json.gz");
    let request = office
        .server
        .http
        .post(office.server.url("/api/v1/cases"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(json_bomb);
    let (status, body, took) = timed(&office.server, request, &office.token).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert_eq!(body["error"], "unsupported_media_type", "{body}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    // A real DICOM followed by 1 GiB of zeros, gzipped, as an upload.
    let dicom_bomb = fixture("hostile/request/gzip-bomb-1gib.dcm.gz");
    for (content_type, encoding) in [
        ("application/dicom", "gzip"),
        ("application/dicom", "x-gzip"),
        ("application/octet-stream", "gzip"),
        ("application/dicom", "deflate, gzip"),
    ] {
        let request = office
            .server
            .http
            .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
            .header("content-type", content_type)
            .header("content-encoding", encoding)
            .body(dicom_bomb.clone());
        let (status, body, took) = timed(&office.server, request, &office.token).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type} {encoding}: {body}"
        );
        assert!(took < ANSWER_WITHIN, "{took:?}");
    }
    // `identity` is no encoding at all.
    let request = office
        .server
        .http
        .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
        .header("content-type", "application/dicom")
        .header("content-encoding", "identity")
        .body(fixture("dicom/CT_small.dcm"));
    let (status, body) = office.server.send(request, &office.token).await;
    assert_eq!(status, 201, "{body}");
    let peak = peak_rss_kib(office.server.pid());
    assert!(
        peak < PEAK_RSS_BOUND_KIB,
        "peak RSS {peak} KiB: a bomb was inflated"
    );
    let after = leftovers(&office.relay).await;
    assert_eq!(after.images, before.images + 1);
}

#[tokio::test]
async fn a_4_gb_content_length_without_a_body_is_refused_at_once() {
    let office = Office::start("body_read_timeout = \"2s\"\n");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    let four_gb = 1u64 << 32;
    // A raw upload: over max_upload_bytes, refused from the header.
    let head = upload_head(&office, &case, "application/dicom", four_gb, "");
    let (status, answer, took) =
        raw_exchange(&office.addr(), &head, b"", Duration::from_secs(10)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    // A JSON route: over its 1 MiB limit.
    let head = format!(
        "POST /api/v1/cases HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {four_gb}\r\n\r\n",
        office.addr(),
        office.token
    );
    let (status, answer, took) =
        raw_exchange(&office.addr(), &head, b"", Duration::from_secs(10)).await;
    // (axum's JSON body limit counts bytes as they come, so this one is
    // ended by the body read timeout, cleanly.)
    assert!((400..500).contains(&status), "{answer}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A tus PATCH that claims more than the upload's length.
    let entry = Entry {
        file: String::new(),
        content_type: "application/dicom".to_owned(),
        status: 0,
        error: String::new(),
        why: String::new(),
        sha256: None,
    };
    let created = tus_create(&office, &case, &entry, 4096, None).await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {four_gb}\r\n\r\n",
        office.addr(),
        office.token
    );
    let (status, answer, took) =
        raw_exchange(&office.addr(), &head, b"", Duration::from_secs(10)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(took < ANSWER_WITHIN, "{took:?}");
    // A multipart form may hold several files, so its length alone says
    // nothing: with no body coming, it is timed out after the body read
    // timeout, cleanly.
    let head = upload_head(
        &office,
        &case,
        "multipart/form-data; boundary=X",
        four_gb,
        "",
    );
    let (status, answer, took) =
        raw_exchange(&office.addr(), &head, b"", Duration::from_secs(10)).await;
    assert!((400..500).contains(&status), "{answer}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Nothing was kept but the tus upload that was created (and is empty).
    let after = leftovers(&office.relay).await;
    assert_eq!(
        (after.blobs, after.spool, after.images),
        (before.blobs, before.spool, before.images)
    );
}

#[tokio::test]
async fn broken_multipart_bodies_are_refused() {
    let office = Office::start("body_read_timeout = \"2s\"\n");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    let ct = fixture("dicom/CT_small.dcm");
    let part = |headers: &str| {
        let mut body = format!("--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.dcm\"\r\nContent-Type: application/dicom\r\n{headers}\r\n").into_bytes();
        body.extend_from_slice(&ct);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    };
    let endless = format!("X-Pad: {}\r\n", "a".repeat(1 << 20));
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("no boundary", "multipart/form-data", part("")),
        ("empty boundary", "multipart/form-data; boundary=", part("")),
        (
            "wrong boundary",
            "multipart/form-data; boundary=Other",
            part(""),
        ),
        (
            "no closing boundary",
            "multipart/form-data; boundary=XyZ",
            part("")[..200].to_vec(),
        ),
        (
            "no parts",
            "multipart/form-data; boundary=XyZ",
            b"--XyZ--\r\n".to_vec(),
        ),
        (
            "only form fields",
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--XyZ--\r\n".to_vec(),
        ),
    ];
    for (what, content_type, body) in cases {
        let head = upload_head(&office, &case, content_type, body.len() as u64, "");
        let (status, answer, took) =
            raw_exchange(&office.addr(), &head, &body, Duration::from_secs(10)).await;
        assert!((400..500).contains(&status), "{what}: {answer}");
        assert!(took < ANSWER_WITHIN, "{what}: {took:?}");
    }
    assert_eq!(leftovers(&office.relay).await, before);
    // Oversized part headers around a good file: the part is read (its
    // headers are bounded by the request body, not held open), answered
    // promptly and never with a server error.
    for (what, headers) in [
        ("a 1 MiB part header", endless),
        ("10 000 part headers", many),
    ] {
        let body = part(&headers);
        let head = upload_head(
            &office,
            &case,
            "multipart/form-data; boundary=XyZ",
            body.len() as u64,
            "",
        );
        let (status, answer, took) =
            raw_exchange(&office.addr(), &head, &body, Duration::from_secs(10)).await;
        assert!((200..500).contains(&status), "{what}: {answer}");
        assert!(took < ANSWER_WITHIN, "{what}: {took:?}");
    }
    assert_eq!(leftovers(&office.relay).await.spool, 0);
}

#[tokio::test]
async fn slow_loris_clients_are_timed_out_while_others_are_served() {
    let office = Office::start("header_read_timeout = \"2s\"\nbody_read_timeout = \"2s\"\n");
    let case = office.case().await;
    let before = leftovers(&office.relay).await;
    let addr = office.addr();

    // Twenty clients sending their headers one byte every 300 ms.
    let head = upload_head(&office, &case, "application/dicom", 39206, "");
    let mut loris = Vec::new();
    for _ in 0..20 {
        let addr = addr.clone();
        let head = head.clone();
        loris.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            for byte in head.as_bytes() {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                // Closed by the server?
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => break, // an answer (408) ends it too
                    Err(_) => {}
                }
                if started.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            started.elapsed()
        }));
    }
    // A client that sends its headers, half the body, then nothing.
    let body = fixture("dicom/CT_small.dcm");
    let stalled = {
        let addr = addr.clone();
        let head = upload_head(&office, &case, "application/dicom", body.len() as u64, "");
        let half = body[..body.len() / 2].to_vec();
        tokio::spawn(
            async move { raw_exchange(&addr, &head, &half, Duration::from_secs(20)).await },
        )
    };
    // A JSON client that stops mid-body.
    let stalled_json = {
        let addr = addr.clone();
        let head = format!(
            "POST /api/v1/cases HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
            office.token
        );
        tokio::spawn(async move {
            raw_exchange(&addr, &head, b"{\"patient\":", Duration::from_secs(20)).await
        })
    };

    // Meanwhile everyone else is served promptly.
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = office.server.get("/healthz", "").await;
        assert_eq!(status, 200);
        assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());
        let request = office
            .server
            .http
            .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
            .header("content-type", "application/dicom")
            .body(fixture("dicom/MR_small.dcm"));
        let (status, body, took) = timed(&office.server, request, &office.token).await;
        assert!(status == 201 || status == 200, "{body}");
        assert!(took < ANSWER_WITHIN, "{took:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for client in loris {
        let took = client.await.expect("loris");
        assert!(
            took < Duration::from_secs(5),
            "a slow-loris client was held for {took:?}"
        );
    }
    let (status, answer, took) = stalled.await.expect("stalled");
    assert!((400..500).contains(&status), "a stalled body: {answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, answer, took) = stalled_json.await.expect("stalled json");
    assert!(
        (400..500).contains(&status),
        "a stalled JSON body: {answer}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Only the good upload (the same bytes ten times) was kept.
    let after = leftovers(&office.relay).await;
    assert_eq!(after.spool, 0);
    assert_eq!(after.images, before.images + 1);
}
