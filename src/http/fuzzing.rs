//! The bodies of the HTTP-side fuzz targets in `workers/fuzz/`: the tus
//! request headers and `multipart/form-data` uploads, parsed by the same
//! functions the handlers use. The cargo-fuzz targets call these with
//! libFuzzer's bytes and `tests/fuzz_replay.rs` with every committed corpus
//! file and regression case. Each panics only on a defect: a panic in the
//! parsing, or an invariant stated here that does not hold.
//!
//! Not part of Relay's API: hidden from the docs and used by nothing else.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use relay_workers::model::{CaseId, Sha256};

use super::images::{file_part, next_field, open_multipart};
use super::uploads::{checksum, metadata, number, require_version};

/// The headers a tus request's parsing reads, in the order the input's
/// lines fill them.
const TUS_HEADERS: [&str; 6] = [
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "content-digest",
];

/// `tus_headers`: each line of the input is the value of one header in
/// [`TUS_HEADERS`]; every parser of them runs. A checksum that parses
/// names the digest its base64 encodes, and metadata keys are non-empty
/// words.
pub fn tus_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for (name, line) in TUS_HEADERS.iter().zip(data.split(|&b| b == b'\n')) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let _ = require_version(&headers);
    let _ = number(&headers, "upload-length");
    let _ = number(&headers, "upload-offset");
    if let Ok(pairs) = metadata(&headers) {
        for (key, value) in pairs {
            assert!(
                !key.is_empty() && !key.contains([' ', ',']),
                "metadata key {key:?}"
            );
            // What `create` makes of the values it reads.
            let _ = value.parse::<CaseId>();
            let _ = value.parse::<Sha256>();
        }
    }
    if let Ok(Some(digest)) = checksum(&headers) {
        let again = HeaderValue::from_str(&format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(digest.as_bytes())
        ))
        .ok()
        .map(|v| HeaderMap::from_iter([(HeaderName::from_static("upload-checksum"), v)]));
        assert_eq!(
            again.map(|h| checksum(&h).ok().flatten()),
            Some(Some(digest)),
            "a parsed checksum does not round-trip"
        );
    }
    if let Some(value) = headers.get("content-digest").and_then(|v| v.to_str().ok()) {
        let _ = Sha256::from_content_digest(value);
    }
}

/// The boundary of the `Content-Type` the multipart target sends unless
/// the input brings its own.
pub const MULTIPART_BOUNDARY: &str = "relay-fuzz-boundary";

/// `multipart`: an upload's body through the handler's multipart parsing
/// ([`open_multipart`], [`next_field`], [`file_part`]), every file part read to its end as
/// ingest would stream it. The first byte shapes the request: its low six
/// bits are the size of the body's chunks (0: one chunk), and with its top
/// bit set the first line of the rest is the `Content-Type` (so the
/// boundary parsing is fuzzed too); otherwise the `Content-Type` is
/// `multipart/form-data` with [`MULTIPART_BOUNDARY`].
pub fn multipart(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = if control & 0x80 != 0 {
        let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        (rest[..at].to_vec(), rest.get(at + 1..).unwrap_or_default())
    } else {
        (
            format!("multipart/form-data; boundary={MULTIPART_BOUNDARY}").into_bytes(),
            rest,
        )
    };
    let Ok(content_type) = HeaderValue::from_bytes(&content_type) else {
        return;
    };
    let chunk = match usize::from(control & 0x3f) {
        0 => body.len().max(1),
        n => n,
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let Ok(request) = Request::builder()
        .method("POST")
        .uri("/api/v1/cases/x/images")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
    else {
        return;
    };
    runtime().block_on(async {
        let Ok(mut multipart) = open_multipart(request, &()).await else {
            return;
        };
        let mut read = 0usize;
        let mut part = 0;
        while let Ok(Some(field)) = next_field(&mut multipart).await {
            part += 1;
            let Ok(Some((_filename, _declared, mut field))) = file_part(field, part) else {
                continue;
            };
            while let Some(Ok(bytes)) = field.next().await {
                read += bytes.len();
            }
        }
        assert!(
            read <= body.len(),
            "multipart produced more than it was sent"
        );
    });
}

/// One single-threaded runtime for every input: multipart parsing is async.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}
