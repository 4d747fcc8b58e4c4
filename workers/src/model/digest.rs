//! A sha256 digest: the identity of a blob and the proof of its bytes.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256 as Hasher};

use super::InvalidValue;

/// The sha256 of some bytes. Text form: 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
pub struct Sha256([u8; 32]);

impl Sha256 {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Hasher::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The RFC 9530 `Content-Digest` value: `sha-256=:<base64>:`.
    pub fn content_digest(&self) -> String {
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }

    /// Reads the sha-256 member of an RFC 9530 `Content-Digest` header.
    /// `Ok(None)` when the header names only other algorithms.
    pub fn from_content_digest(header: &str) -> Result<Option<Self>, InvalidValue> {
        for member in header.split(',') {
            let Some((algorithm, value)) = member.trim().split_once('=') else {
                return Err(InvalidValue::new(
                    "Content-Digest must look like sha-256=:<base64>:",
                ));
            };
            if !algorithm.trim().eq_ignore_ascii_case("sha-256") {
                continue;
            }
            let encoded = value
                .trim()
                .strip_prefix(':')
                .and_then(|v| v.strip_suffix(':'))
                .ok_or_else(|| InvalidValue::new("Content-Digest value must be :<base64>:"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| InvalidValue::new("Content-Digest sha-256 value is not base64"))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| InvalidValue::new("Content-Digest sha-256 value is not 32 bytes"))?;
            return Ok(Some(Self(bytes)));
        }
        Ok(None)
    }
}

impl FromStr for Sha256 {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidValue::new("a sha256 is 64 lower-case hex digits"));
        }
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|_| InvalidValue::new("a sha256 is 64 lower-case hex digits"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

impl Serialize for Sha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Hashes bytes as they pass, for streams too large to hold.
#[derive(Debug, Clone, Default)]
pub struct Sha256Hasher(Hasher);

impl Sha256Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hex_round_trip_and_known_value() {
        let d = Sha256::of(b"");
        assert_eq!(d.to_hex(), EMPTY);
        assert_eq!(EMPTY.parse::<Sha256>(), Ok(d));
        assert!(EMPTY.to_uppercase().parse::<Sha256>().is_err());
        assert!("abc".parse::<Sha256>().is_err());
    }

    #[test]
    fn content_digest_round_trip() {
        let d = Sha256::of(b"hello");
        let header = d.content_digest();
        assert_eq!(Sha256::from_content_digest(&header), Ok(Some(d)));
        let both = format!("sha-512=:AAAA:, {header}");
        assert_eq!(Sha256::from_content_digest(&both), Ok(Some(d)));
        assert_eq!(Sha256::from_content_digest("sha-512=:AAAA:"), Ok(None));
        assert!(Sha256::from_content_digest("sha-256=:bm90MzJieXRlcw==:").is_err());
        assert!(Sha256::from_content_digest("sha-256=nocolons").is_err());
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut h = Sha256Hasher::new();
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), Sha256::of(b"hello"));
    }
}
