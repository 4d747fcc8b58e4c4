//! Ingest over HTTP with real photographs and real DICOM files: receipts,
//! content addressing, location removal, verified reads — and every kind of
//! bad input refused with a 4xx JSON error and nothing stored (no blob, no
//! row, no job, no temporary file).

mod support;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Relay, Server, files_under, fixture};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What ingest leaves behind: blob files, spool files, image and job rows.
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    blobs: usize,
    spool: usize,
    images: i64,
    jobs: i64,
    blob_rows: i64,
}

async fn stored(relay: &Relay) -> Stored {
    let mut db = relay.database().await;
    Stored {
        blobs: files_under(&relay.data_dir().join("blobs/sha256")).len(),
        spool: files_under(&relay.data_dir().join("blobs/tmp")).len(),
        images: support::count(&mut db, "images").await,
        jobs: support::count(&mut db, "jobs").await,
        blob_rows: support::count(&mut db, "blobs").await,
    }
}

struct Office {
    relay: Relay,
    server: Server,
    token: String,
}

impl Office {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let relay = Relay::new();
        let (_, _, token) = relay.office_with_user("Imaging Clinic");
        // No worker: derive jobs stay queued, so what is stored is what
        // ingest stored (renditions are the derive tests' concern).
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--workers", "0"];
        args.extend_from_slice(extra);
        let server = relay.start_with(&args, &[]);
        Self {
            relay,
            server,
            token,
        }
    }

    async fn case(&self) -> String {
        self.server.create_case(&self.token, "dermatology").await
    }

    async fn post_bytes(
        &self,
        case: &str,
        content_type: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .server
            .http
            .post(self.server.url(&format!("/api/v1/cases/{case}/images")))
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.server.send(request, &self.token).await
    }

    async fn original(&self, image: &str) -> reqwest::Response {
        self.server
            .http
            .get(self.server.url(&format!("/api/v1/images/{image}/original")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent")
    }
}

fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(bytes))
        .ok()
}

fn has_gps(bytes: &[u8]) -> bool {
    exif_of(bytes).is_some_and(|e| {
        e.fields()
            .any(|f| f.ifd_num == exif::In::PRIMARY && f.tag.context() == exif::Context::Gps)
    })
}

#[tokio::test]
async fn a_camera_photo_is_stored_without_location_and_read_back_verified() {
    let office = Office::start();
    let case = office.case().await;
    let original = fixture("photos/camera-gps.jpg");
    assert!(has_gps(&original), "the fixture carries GPS");
    let digest = format!("sha-256=:{}:", base64_of(&Sha256::digest(&original)));

    let response = office
        .server
        .http
        .post(office.server.url(&format!(
            "/api/v1/cases/{case}/images?filename=lesion%20left%20arm.jpg"
        )))
        .bearer_auth(&office.token)
        .header("content-type", "image/jpeg")
        .header("content-digest", &digest)
        .body(original.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let content_digest = response.headers()["content-digest"]
        .to_str()
        .expect("header")
        .to_owned();
    let receipt: Value = response.json().await.expect("json");
    assert_eq!(receipt["case_id"], case.as_str());
    assert_eq!(receipt["media_type"], "image/jpeg");
    assert_eq!(receipt["filename"], "lesion left arm.jpg");
    assert_eq!(receipt["sha256"], sha256_hex(&original));
    assert_eq!(receipt["size"], original.len());
    assert_ne!(
        receipt["stored_sha256"], receipt["sha256"],
        "location removed, so the stored bytes differ"
    );
    assert_eq!(receipt["metadata"]["location_removed"], true);
    assert!(receipt["received_at"].is_string());

    // What is served is what was stored: the stored digest, verified.
    let image = receipt["id"].as_str().expect("id");
    let response = office.original(image).await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    let served_digest = response.headers()["content-digest"]
        .to_str()
        .expect("digest")
        .to_owned();
    let stored = response.bytes().await.expect("bytes").to_vec();
    assert_eq!(
        sha256_hex(&stored),
        receipt["stored_sha256"].as_str().expect("hex")
    );
    assert_eq!(receipt["stored_size"], stored.len());
    assert_eq!(
        etag,
        format!("\"{}\"", receipt["stored_sha256"].as_str().expect("hex"))
    );
    assert_eq!(served_digest, content_digest);
    assert_eq!(
        content_digest,
        format!("sha-256=:{}:", base64_of(&Sha256::digest(&stored)))
    );

    // Location gone; orientation, capture time and camera kept.
    assert!(!has_gps(&stored), "GPS survived");
    assert!(
        !String::from_utf8_lossy(&stored).contains("GPSLatitude"),
        "an XMP location survived"
    );
    let before = exif_of(&original).expect("exif");
    let after = exif_of(&stored).expect("exif kept");
    for tag in [
        exif::Tag::DateTimeOriginal,
        exif::Tag::Make,
        exif::Tag::Model,
        exif::Tag::Orientation,
    ] {
        let a = before
            .get_field(tag, exif::In::PRIMARY)
            .map(|f| f.display_value().to_string());
        let b = after
            .get_field(tag, exif::In::PRIMARY)
            .map(|f| f.display_value().to_string());
        assert_eq!(a, b, "{tag} changed");
    }
    // Lossless: the same pixels, and the compressed scan data byte for byte.
    let decoded_before = image::load_from_memory(&original)
        .expect("decode")
        .to_rgb8();
    let decoded_after = image::load_from_memory(&stored).expect("decode").to_rgb8();
    assert!(decoded_before == decoded_after, "pixels changed");
    assert_eq!(scan_data(&original), scan_data(&stored));

    // The blob sits at its content address.
    let hex = receipt["stored_sha256"].as_str().expect("hex");
    let path =
        office
            .relay
            .data_dir()
            .join(format!("blobs/sha256/{}/{}/{hex}", &hex[..2], &hex[2..4]));
    assert_eq!(std::fs::read(path).expect("blob file"), stored);
    // With its derive job, and nothing left in the spool.
    let s = stored_state(&office).await;
    assert_eq!((s.images, s.jobs, s.blob_rows, s.spool), (1, 1, 1, 0));
}

async fn stored_state(office: &Office) -> Stored {
    stored(&office.relay).await
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The JPEG entropy-coded data: everything from the SOS marker on, found
/// by walking the marker segments by their lengths (an EXIF thumbnail has
/// its own `FF DA` bytes earlier in the file).
fn scan_data(jpeg: &[u8]) -> Vec<u8> {
    let mut at = 2;
    loop {
        assert_eq!(jpeg[at], 0xFF, "marker expected at {at}");
        if jpeg[at + 1] == 0xDA {
            return jpeg[at..].to_vec();
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        at += 2 + len;
    }
}

#[tokio::test]
async fn a_png_loses_its_location_and_keeps_its_pixels() {
    let office = Office::start();
    let case = office.case().await;
    let original = fixture("photos/lesion.png");
    assert!(has_gps(&original), "the fixture carries GPS");
    let (status, receipt) = office
        .post_bytes(&case, "image/png", original.clone(), &[])
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["metadata"]["location_removed"], true);
    let stored = office
        .original(receipt["id"].as_str().expect("id"))
        .await
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    assert!(!has_gps(&stored));
    let a = image::load_from_memory(&original)
        .expect("decode")
        .to_rgba8();
    let b = image::load_from_memory(&stored).expect("decode").to_rgba8();
    assert!(a == b, "pixels changed");
}

#[tokio::test]
async fn a_photo_without_location_is_stored_as_received() {
    let office = Office::start();
    let case = office.case().await;
    let original = fixture("photos/camera-plain.jpg");
    let (status, receipt) = office
        .post_bytes(&case, "image/jpeg", original.clone(), &[])
        .await;
    assert_eq!(status, 201, "{receipt}");
    assert_eq!(receipt["sha256"], receipt["stored_sha256"]);
    assert_eq!(receipt["metadata"]["location_removed"], false);
}

#[tokio::test]
async fn an_office_can_keep_photo_location() {
    let relay = Relay::new();
    let (office, _, token) = relay.office_with_user("Mapping Clinic");
    relay.ok(&[
        "admin",
        "office",
        "update",
        "--office",
        &office,
        "--strip-location",
        "false",
    ]);
    let server = relay.start();
    let case = server.create_case(&token, "dermatology").await;
    let receipt = server
        .upload(&token, &case, "photos/camera-gps.jpg", "image/jpeg")
        .await;
    assert_eq!(receipt["sha256"], receipt["stored_sha256"]);
    assert_eq!(receipt["metadata"]["location_removed"], false);
}

#[tokio::test]
async fn dicom_is_stored_exactly_as_received_with_its_identifiers() {
    let office = Office::start();
    let case = office.case().await;
    for file in support::dicom_fixtures() {
        let bytes = fixture(&file);
        let (status, receipt) = office
            .post_bytes(&case, "application/dicom", bytes.clone(), &[])
            .await;
        assert_eq!(status, 201, "{file}: {receipt}");
        assert_eq!(receipt["sha256"], sha256_hex(&bytes), "{file}");
        assert_eq!(
            receipt["stored_sha256"], receipt["sha256"],
            "{file} was altered"
        );
        let m = &receipt["metadata"];
        for key in [
            "sop_class_uid",
            "sop_instance_uid",
            "study_instance_uid",
            "series_instance_uid",
            "transfer_syntax",
        ] {
            assert!(
                m[key].as_str().is_some_and(|v| !v.is_empty()),
                "{file}: {key} in {m}"
            );
        }
        let served = office
            .original(receipt["id"].as_str().expect("id"))
            .await
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(served.as_ref(), bytes.as_slice(), "{file}");
    }
}

#[tokio::test]
async fn the_same_bytes_are_stored_once() {
    let office = Office::start();
    let first_case = office.case().await;
    let second_case = office.case().await;
    let bytes = fixture("dicom/CT_small.dcm");
    let (status, a) = office
        .post_bytes(&first_case, "application/dicom", bytes.clone(), &[])
        .await;
    assert_eq!(status, 201);
    let (status, b) = office
        .post_bytes(&second_case, "application/dicom", bytes.clone(), &[])
        .await;
    assert_eq!(status, 201, "another case gets its own image");
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["stored_sha256"], b["stored_sha256"]);
    // The same bytes into the same case again: a retry, answered with the
    // existing image and no new row or job.
    let (status, again) = office
        .post_bytes(&first_case, "application/dicom", bytes, &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], a["id"]);
    let s = stored(&office.relay).await;
    assert_eq!((s.blobs, s.blob_rows, s.images, s.jobs), (1, 1, 2, 2));
}

#[tokio::test]
async fn ranges_etags_and_listing() {
    let office = Office::start();
    let case = office.case().await;
    let bytes = fixture("dicom/MR_small.dcm");
    let (_, receipt) = office
        .post_bytes(&case, "application/dicom", bytes.clone(), &[])
        .await;
    let id = receipt["id"].as_str().expect("id");
    let url = office.server.url(&format!("/api/v1/images/{id}/original"));
    let response = office
        .server
        .http
        .get(&url)
        .bearer_auth(&office.token)
        .header("range", "bytes=128-131")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes 128-131/{}", bytes.len()).as_str()
    );
    assert_eq!(response.bytes().await.expect("bytes").as_ref(), b"DICM");
    let response = office
        .server
        .http
        .get(&url)
        .bearer_auth(&office.token)
        .header("range", format!("bytes={}-", bytes.len() + 10))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 416);
    let etag = format!("\"{}\"", receipt["stored_sha256"].as_str().expect("hex"));
    let response = office
        .server
        .http
        .get(&url)
        .bearer_auth(&office.token)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 304);

    let (status, list) = office
        .server
        .get(&format!("/api/v1/cases/{case}/images"), &office.token)
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], id);
    let (status, one) = office
        .server
        .get(&format!("/api/v1/images/{id}"), &office.token)
        .await;
    assert_eq!((status, &one), (200, &receipt));
}

#[tokio::test]
async fn a_corrupted_blob_is_never_served_as_good() {
    let office = Office::start();
    let case = office.case().await;
    let (_, receipt) = office
        .post_bytes(
            &case,
            "application/dicom",
            fixture("dicom/CT_small.dcm"),
            &[],
        )
        .await;
    let hex = receipt["stored_sha256"].as_str().expect("hex").to_owned();
    let path =
        office
            .relay
            .data_dir()
            .join(format!("blobs/sha256/{}/{}/{hex}", &hex[..2], &hex[2..4]));
    let mut bytes = std::fs::read(&path).expect("blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).expect("flip a bit");
    let id = receipt["id"].as_str().expect("id");
    let (status, body) = office
        .server
        .get(&format!("/api/v1/images/{id}/original"), &office.token)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("integrity")),
        "{body}"
    );
    // A range of an untouched part is not served either: the whole is suspect.
    let response = office
        .server
        .http
        .get(office.server.url(&format!("/api/v1/images/{id}/original")))
        .bearer_auth(&office.token)
        .header("range", "bytes=0-3")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 500);
    let metrics = office
        .server
        .http
        .get(office.server.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("relay_blob_integrity_failures_total 2"),
        "{metrics}"
    );
    office.server.stop_and_then(|log| {
        assert!(
            log.lines()
                .any(|l| l.contains("failed verification") && l.contains(id)),
            "{log}"
        );
    });
}

#[tokio::test]
async fn submitting_needs_an_image_and_closes_the_case_to_uploads() {
    let office = Office::start();
    let case = office.case().await;
    let (status, body) = office
        .server
        .post(
            &format!("/api/v1/cases/{case}/submit"),
            &office.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_state")),
        "{body}"
    );
    assert!(body["message"].as_str().expect("message").contains("image"));
    office
        .server
        .upload(
            &office.token,
            &case,
            "photos/camera-plain.jpg",
            "image/jpeg",
        )
        .await;
    let (status, body) = office
        .server
        .post(
            &format!("/api/v1/cases/{case}/submit"),
            &office.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "submitted");
    assert!(body["submitted_at"].is_string());
    let before = stored(&office.relay).await;
    let (status, body) = office
        .post_bytes(&case, "image/jpeg", fixture("photos/camera-gps.jpg"), &[])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("invalid_state"))
    );
    assert_eq!(stored(&office.relay).await, before);
}

#[tokio::test]
async fn a_multipart_form_takes_several_files() {
    let office = Office::start();
    let case = office.case().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixture("photos/camera-plain.jpg"))
                .file_name("a.jpg")
                .mime_str("image/jpeg")
                .expect("mime"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(fixture("dicom/CT_small.dcm"))
                .file_name("b.dcm")
                .mime_str("application/dicom")
                .expect("mime"),
        );
    let request = office
        .server
        .http
        .post(office.server.url(&format!("/api/v1/cases/{case}/images")))
        .multipart(form);
    let (status, body) = office.server.send(request, &office.token).await;
    assert_eq!(status, 201, "{body}");
    let names: Vec<&str> = body["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter_map(|i| i["filename"].as_str())
        .collect();
    assert_eq!(names, ["a.jpg", "b.dcm"]);
}

/// One refusal: what is sent, and the status and code expected.
struct Refusal {
    what: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

fn refusals() -> Vec<Refusal> {
    let r = |what, content_type, body: Vec<u8>, status, code| Refusal {
        what,
        content_type,
        body,
        headers: vec![],
        status,
        code,
    };
    let ct = fixture("dicom/CT_small.dcm");
    vec![
        r("empty body", "image/jpeg", vec![], 400, "empty_body"),
        r(
            "truncated JPEG",
            "image/jpeg",
            fixture("bad/truncated.jpg"),
            422,
            "invalid_image",
        ),
        r(
            "PNG decompression bomb",
            "image/png",
            fixture("bad/png-bomb.png"),
            422,
            "too_many_pixels",
        ),
        r(
            "text sent as JPEG",
            "image/jpeg",
            fixture("bad/not-an-image.txt"),
            415,
            "unsupported_media_type",
        ),
        r(
            "text sent as DICOM",
            "application/dicom",
            fixture("bad/text-as-dicom.dcm"),
            415,
            "unsupported_media_type",
        ),
        r(
            "DICOM element past end of file",
            "application/dicom",
            fixture("bad/dicom-element-past-eof.dcm"),
            422,
            "invalid_dicom",
        ),
        r(
            "DICOM without SOP Instance UID",
            "application/dicom",
            fixture("bad/dicom-no-sop-instance-uid.dcm"),
            422,
            "invalid_dicom",
        ),
        r(
            "executable in DICOM preamble",
            "application/dicom",
            fixture("bad/dicom-polyglot-pe.dcm"),
            422,
            "unsafe_preamble",
        ),
        r(
            "JPEG declared as PNG",
            "image/png",
            fixture("photos/camera-plain.jpg"),
            415,
            "media_type_mismatch",
        ),
        r(
            "DICOM declared as JPEG",
            "image/jpeg",
            ct.clone(),
            415,
            "media_type_mismatch",
        ),
        r(
            "HEIC photo",
            "image/heic",
            fixture("bad/heic-photo.heic"),
            415,
            "unsupported_media_type",
        ),
        r(
            "HEIC photo sent as JPEG",
            "image/jpeg",
            fixture("bad/heic-photo.heic"),
            415,
            "unsupported_media_type",
        ),
        r(
            "a content type Relay does not take",
            "text/plain",
            ct.clone(),
            415,
            "unsupported_media_type",
        ),
        Refusal {
            what: "Content-Digest of other bytes",
            content_type: "application/dicom",
            body: ct.clone(),
            headers: vec![(
                "content-digest",
                format!("sha-256=:{}:", base64_of(&Sha256::digest(b"other"))),
            )],
            status: 400,
            code: "digest_mismatch",
        },
        Refusal {
            what: "malformed Content-Digest",
            content_type: "application/dicom",
            body: ct,
            headers: vec![("content-digest", "sha-256=notbase64".to_owned())],
            status: 400,
            code: "invalid_digest_header",
        },
    ]
}

#[tokio::test]
async fn every_bad_input_is_refused_and_nothing_is_stored() {
    let office = Office::start();
    let case = office.case().await;
    let before = stored(&office.relay).await;
    for refusal in refusals() {
        let headers: Vec<(&str, &str)> = refusal
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (status, body) = office
            .post_bytes(&case, refusal.content_type, refusal.body, &headers)
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (refusal.status, Some(refusal.code)),
            "{}: {body}",
            refusal.what
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            refusal.what
        );
        assert_eq!(
            stored(&office.relay).await,
            before,
            "{} left something behind",
            refusal.what
        );
    }
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let office = Office::start();
    let case = office.case().await;
    let (_, body) = office
        .post_bytes(&case, "image/heic", fixture("bad/heic-photo.heic"), &[])
        .await;
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("export the photo as JPEG"),
        "{body}"
    );
    let (_, body) = office
        .post_bytes(
            &case,
            "application/dicom",
            fixture("bad/dicom-no-sop-instance-uid.dcm"),
            &[],
        )
        .await;
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("SOP Instance UID"),
        "{body}"
    );
    let (_, body) = office
        .post_bytes(
            &case,
            "application/dicom",
            fixture("bad/dicom-polyglot-pe.dcm"),
            &[],
        )
        .await;
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("executable"),
        "{body}"
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_at_the_limit() {
    let office = Office::start_with(&["--max-upload-bytes", "4096"]);
    let case = office.case().await;
    let before = stored(&office.relay).await;
    let (status, body) = office
        .post_bytes(
            &case,
            "application/dicom",
            fixture("dicom/CT_small.dcm"),
            &[],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    assert_eq!(stored(&office.relay).await, before);
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_leaves_nothing() {
    use std::io::Write;
    let office = Office::start();
    let case = office.case().await;
    let before = stored(&office.relay).await;
    let bytes = fixture("dicom/CT_small.dcm");
    let addr = office.server.base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        stream,
        "POST /api/v1/cases/{case}/images HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/dicom\r\nContent-Length: {}\r\n\r\n",
        office.token,
        bytes.len()
    )
    .expect("headers");
    stream
        .write_all(&bytes[..bytes.len() / 2])
        .expect("half the body");
    stream.flush().expect("flush");
    // Wait until the server has taken the half body into its spool, then vanish.
    let spool = office.relay.data_dir().join("blobs/tmp");
    wait_until(|| !files_under(&spool).is_empty()).await;
    drop(stream);
    wait_until(|| files_under(&spool).is_empty()).await;
    assert_eq!(stored(&office.relay).await, before);
}

/// Polls `condition` for up to 10 s.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 10 s");
}

#[tokio::test]
async fn another_office_cannot_upload_into_or_read_a_case() {
    let relay = Relay::new();
    let (_, _, owner) = relay.office_with_user("Owner");
    let (_, _, intruder) = relay.office_with_user("Intruder");
    let server = relay.start_with(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"], &[]);
    let case = server.create_case(&owner, "radiology").await;
    let receipt = server
        .upload(&owner, &case, "dicom/CT_small.dcm", "application/dicom")
        .await;
    let before = stored(&relay).await;
    let request = server
        .http
        .post(server.url(&format!("/api/v1/cases/{case}/images")))
        .header("content-type", "application/dicom")
        .body(fixture("dicom/MR_small.dcm"));
    let (status, _) = server.send(request, &intruder).await;
    assert_eq!(status, 404);
    assert_eq!(stored(&relay).await, before);
    let id = receipt["id"].as_str().expect("id");
    for path in [
        format!("/api/v1/images/{id}"),
        format!("/api/v1/images/{id}/original"),
        format!("/api/v1/cases/{case}/images"),
    ] {
        let (status, _) = server.get(&path, &intruder).await;
        assert_eq!(status, 404, "{path}");
    }
}
