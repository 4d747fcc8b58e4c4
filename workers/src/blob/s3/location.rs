//! The `s3://bucket/prefix?key=value…` blob URL, parsed once into checked
//! settings, so a typo in a deployment's `--blobs` fails at start with the
//! name of the key at fault instead of being silently ignored.

use crate::blob::BlobError;

/// S3 refuses parts smaller than this (except the last one).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3 refuses parts larger than this.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3 allows at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// Above this a blob goes up in parts: one failed part is retried alone and
/// parts go up side by side. Most photos stay below; CT and MR series do not.
const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 << 20;
/// 16 MiB parts keep a 1 GiB study to 64 parts and a part in memory of the
/// HTTP stack small.
const DEFAULT_PART_SIZE: u64 = 16 << 20;

const KNOWN_KEYS: &str = "endpoint, region, multipart_threshold, part_size";

/// Where and how an S3 blob store keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// An S3-compatible server's URL; `None` means AWS itself.
    pub endpoint: Option<String>,
    /// `None` means the region of the standard AWS configuration chain.
    pub region: Option<String>,
    /// Blobs larger than this use a multipart upload.
    pub multipart_threshold: u64,
    /// The size of each part but the last.
    pub part_size: u64,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix][?endpoint=…&region=…&multipart_threshold=…&part_size=…]`.
    pub fn parse(url: &str) -> Result<Self, BlobError> {
        let invalid = |reason: String| BlobError::UnsupportedUrl(format!("{url}: {reason}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("an S3 blob url starts with s3://".to_owned()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(invalid(
                "the bucket name is missing (s3://BUCKET/prefix)".to_owned(),
            ));
        }
        let mut location = S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value =
                percent_decode(raw).ok_or_else(|| invalid(format!("{key}: bad %-escape")))?;
            match key {
                "endpoint" => location.endpoint = Some(parse_endpoint(&value).map_err(invalid)?),
                "region" if !value.is_empty() => location.region = Some(value),
                "multipart_threshold" => {
                    location.multipart_threshold = parse_size(&value)
                        .ok_or_else(|| invalid(format!("{key}: expected a size like 64MiB")))?;
                }
                "part_size" => {
                    location.part_size = parse_size(&value)
                        .filter(|s| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(s))
                        .ok_or_else(|| {
                            invalid(format!("{key}: expected a size from 5MiB to 5GiB"))
                        })?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown query key `{other}` (known: {KNOWN_KEYS})"
                    )));
                }
            }
        }
        Ok(location)
    }

    /// The object key of a blob: `<prefix>/sha256/ab/cd/<hex>`, the
    /// filesystem store's layout.
    pub fn blob_key(&self, hex: &str) -> String {
        self.key(&format!("sha256/{}/{}/{hex}", &hex[0..2], &hex[2..4]))
    }

    /// `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The part size for a blob of `size` bytes: the configured one, grown
    /// when the blob would otherwise need more parts than S3 allows.
    pub fn part_size_for(&self, size: u64) -> u64 {
        self.part_size.max(size.div_ceil(MAX_PARTS))
    }

    /// The server: the endpoint, or AWS S3 and its region.
    pub fn server(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!(
                "AWS S3 ({})",
                self.region.as_deref().unwrap_or("default region")
            ),
        }
    }

    /// `s3://bucket/prefix at endpoint`: for logs and operators.
    pub fn describe(&self) -> String {
        let place = self.server();
        if self.prefix.is_empty() {
            format!("s3://{} at {place}", self.bucket)
        } else {
            format!("s3://{}/{} at {place}", self.bucket, self.prefix)
        }
    }
}

/// An `http(s)://host[:port]` endpoint, with any `user:password@` refused so
/// that a secret can never end up in a log line.
fn parse_endpoint(value: &str) -> Result<String, String> {
    let authority = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| format!("endpoint: expected http://host:port, got {value}"))?;
    if authority.split('/').next().unwrap_or("").contains('@') {
        return Err(
            "endpoint: credentials do not belong in the url; use the AWS_* environment".to_owned(),
        );
    }
    Ok(value.trim_end_matches('/').to_owned())
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`.
fn parse_size(value: &str) -> Option<u64> {
    let units = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    let (digits, unit) = units
        .iter()
        .find_map(|(suffix, unit)| value.strip_suffix(suffix).map(|d| (d, *unit)))
        .unwrap_or((value, 1));
    digits.trim().parse::<u64>().ok()?.checked_mul(unit)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_parses() {
        let l = S3Location::parse(
            "s3://relay/site/a/?endpoint=http%3A%2F%2F127.0.0.1%3A8333/&region=eu-west-1&multipart_threshold=8MiB&part_size=5MiB",
        )
        .expect("parses");
        assert_eq!(l.bucket, "relay");
        assert_eq!(l.prefix, "site/a");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(l.region.as_deref(), Some("eu-west-1"));
        assert_eq!((l.multipart_threshold, l.part_size), (8 << 20, 5 << 20));
        assert_eq!(
            l.blob_key("abcdef"),
            "site/a/sha256/ab/cd/abcdef".to_owned()
        );
        assert_eq!(l.describe(), "s3://relay/site/a at http://127.0.0.1:8333");
    }

    #[test]
    fn a_bare_bucket_takes_the_defaults() {
        let l = S3Location::parse("s3://relay").expect("parses");
        assert_eq!(
            (l.prefix.as_str(), &l.endpoint, &l.region),
            ("", &None, &None)
        );
        assert_eq!(l.blob_key("abcdef"), "sha256/ab/cd/abcdef");
        assert_eq!(l.multipart_threshold, DEFAULT_MULTIPART_THRESHOLD);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = |url: &str| S3Location::parse(url).expect_err("refused").to_string();
        assert!(err("s3://b?endpiont=http://x").contains("`endpiont`"));
        assert!(err("s3://b?part_size=1MiB").contains("part_size"));
        assert!(err("s3://b?multipart_threshold=lots").contains("multipart_threshold"));
        assert!(err("s3://b?endpoint=ftp://x").contains("endpoint"));
        assert!(err("s3://b?endpoint=http://k:s@x").contains("credentials"));
        assert!(err("s3:///prefix").contains("bucket"));
    }

    #[test]
    fn huge_blobs_grow_their_parts_to_stay_within_the_part_limit() {
        let l = S3Location::parse("s3://b?part_size=5MiB").expect("parses");
        assert_eq!(l.part_size_for(1 << 30), 5 << 20);
        let huge = 100u64 << 30;
        assert!(huge.div_ceil(l.part_size_for(huge)) <= MAX_PARTS);
    }
}
