//! `multipart/related` (RFC 2387) as DICOMweb uses it: reading the media
//! type of a STOW request, writing the parts of a WADO answer, and reading
//! what an `Accept` header allows. The STOW body itself is parsed as a
//! stream by multer, which is indifferent to the multipart subtype.

use axum::http::{HeaderMap, header};
use bytes::Bytes;

use crate::http::error::ApiError;

/// A media type with its parameters (names lower-case, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaRange {
    pub fn parse(text: &str) -> Self {
        let mut pieces = split_unquoted(text, ';').into_iter();
        let essence = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let params = pieces
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                Some((
                    name.trim().to_ascii_lowercase(),
                    value.trim().trim_matches('"').to_owned(),
                ))
            })
            .collect();
        Self { essence, params }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// The boundary of a STOW request, which must be `multipart/related` with
/// `type="application/dicom"` (or no `type`: then each part's own media
/// type decides). Anything else is `415`, before a byte is read.
pub fn stow_boundary(headers: &HeaderMap) -> Result<String, ApiError> {
    let refuse = |why: &str| {
        ApiError::UnsupportedMediaType(format!(
            "{why}: send multipart/related; type=\"application/dicom\" with one Part 10 instance per part"
        ))
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refuse("no Content-Type"))?;
    let range = MediaRange::parse(content_type);
    if range.essence != "multipart/related" {
        return Err(refuse(&format!("Content-Type {:?}", range.essence)));
    }
    if let Some(kind) = range.param("type")
        && !kind.eq_ignore_ascii_case("application/dicom")
    {
        return Err(refuse(&format!("parts of type {kind:?} are not accepted")));
    }
    range
        .param("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .map(str::to_owned)
        .ok_or_else(|| refuse("no boundary"))
}

/// The media ranges an `Accept` header lists (none: anything goes).
pub fn accepted(headers: &HeaderMap) -> Vec<MediaRange> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_unquoted(v, ','))
        .map(MediaRange::parse)
        .filter(|r| !r.essence.is_empty())
        .collect()
}

/// Whether `Accept` allows a `multipart/related` answer whose parts are
/// `part_type` in `transfer_syntax`: an entry `*/*`, or `multipart/related`
/// (or `multipart/*`) whose `type` is absent or matches (`image/*` matches
/// any image) and whose `transfer-syntax` is absent, `*` or this one.
pub fn accepts_multipart(headers: &HeaderMap, part_type: &str, transfer_syntax: &str) -> bool {
    let ranges = accepted(headers);
    ranges.is_empty()
        || ranges.iter().any(|r| {
            let multipart = matches!(r.essence.as_str(), "multipart/related" | "multipart/*");
            let type_ok = r.param("type").is_none_or(|t| matches_type(t, part_type));
            let ts_ok = r
                .param("transfer-syntax")
                .is_none_or(|ts| ts == "*" || ts == transfer_syntax);
            r.essence == "*/*" || (multipart && type_ok && ts_ok)
        })
}

/// Whether `Accept` allows a single `media_type` body.
pub fn accepts_single(headers: &HeaderMap, media_type: &str) -> bool {
    let ranges = accepted(headers);
    ranges.is_empty() || ranges.iter().any(|r| matches_type(&r.essence, media_type))
}

/// `range` (`*/*`, `image/*`, `image/jpeg`) covers `media_type`.
fn matches_type(range: &str, media_type: &str) -> bool {
    let range = range.to_ascii_lowercase();
    range == "*/*"
        || range == media_type
        || range
            .strip_suffix("/*")
            .is_some_and(|top| media_type.split('/').next() == Some(top))
}

/// A fresh boundary for an answer.
pub fn new_boundary() -> String {
    format!("relay-{}", uuid::Uuid::now_v7().simple())
}

/// The `Content-Type` of a multipart answer.
pub fn content_type(part_type: &str, boundary: &str) -> String {
    format!("multipart/related; type=\"{part_type}\"; boundary={boundary}")
}

/// The delimiter and headers that open a part of `len` bytes.
pub fn part_head(boundary: &str, content_type: &str, len: u64) -> Bytes {
    Bytes::from(format!(
        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    ))
}

/// What ends a part's bytes.
pub const PART_END: &[u8] = b"\r\n";

/// The closing delimiter.
pub fn closing(boundary: &str) -> Bytes {
    Bytes::from(format!("--{boundary}--\r\n"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn stow_needs_multipart_related_of_dicom() {
        let ok = headers(
            header::CONTENT_TYPE,
            "multipart/related; type=\"application/dicom\"; boundary=\"a;b\"",
        );
        assert_eq!(stow_boundary(&ok).ok().as_deref(), Some("a;b"));
        for bad in [
            "application/dicom",
            "multipart/related; type=\"application/dicom+json\"; boundary=x",
            "multipart/related; type=\"application/dicom\"",
        ] {
            assert!(matches!(
                stow_boundary(&headers(header::CONTENT_TYPE, bad)),
                Err(ApiError::UnsupportedMediaType(_))
            ));
        }
    }

    #[test]
    fn accept_names_part_types_and_transfer_syntaxes() {
        let dicom = headers(
            header::ACCEPT,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
        );
        assert!(accepts_multipart(
            &dicom,
            "application/dicom",
            "1.2.840.10008.1.2.1"
        ));
        assert!(!accepts_multipart(
            &dicom,
            "application/octet-stream",
            "1.2.840.10008.1.2.1"
        ));
        let explicit = headers(
            header::ACCEPT,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
        );
        assert!(!accepts_multipart(
            &explicit,
            "application/dicom",
            "1.2.840.10008.1.2.4.50"
        ));
        assert!(accepts_multipart(&HeaderMap::new(), "image/jpeg", "x"));
        let images = headers(header::ACCEPT, "multipart/related; type=\"image/*\"");
        assert!(accepts_multipart(
            &images,
            "image/jpeg",
            "1.2.840.10008.1.2.4.50"
        ));
        assert!(accepts_single(
            &headers(header::ACCEPT, "image/*"),
            "image/jpeg"
        ));
        assert!(!accepts_single(
            &headers(header::ACCEPT, "image/png"),
            "image/jpeg"
        ));
    }
}
