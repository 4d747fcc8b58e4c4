//! Standard Webhooks signing: HMAC-SHA256 over `{msg_id}.{timestamp}.{body}`.
//!
//! The scheme is the symmetric one of the Standard Webhooks specification
//! (standardwebhooks.com): each office has a secret, shown to it once as
//! `whsec_<base64>`; every delivery carries `webhook-id`, `webhook-timestamp`
//! (unix seconds) and `webhook-signature` (`v1,<base64 HMAC>`). Signing the id
//! and the timestamp with the body lets the receiver refuse replays: a
//! captured delivery cannot be re-sent with a fresh timestamp.
//!
//! HMAC is written out here (RFC 2104 over [`sha2::Sha256`]) because the
//! engine has no HMAC crate; the RFC 4231 test vectors below prove it.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The header naming the message; the same on every retry of one event, so
/// receivers use it to process an event once.
pub const HEADER_ID: &str = "webhook-id";
/// The header holding the unix time (seconds) of this attempt.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header holding the space-separated list of `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a timestamp may be from the receiver's clock, as the
/// specification suggests: five minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

const SECRET_PREFIX: &str = "whsec_";
const SIGNATURE_VERSION: &str = "v1";
/// The size of a secret Relay generates.
const GENERATED_SECRET_BYTES: usize = 32;
/// The sizes the specification allows: 24 bytes (192 bits) to 64 (512 bits).
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

/// A webhook signing secret. Text form: `whsec_<base64 of the key>`.
///
/// `Display` is the only place the key ever appears (to show it to the
/// office once, or to store it); `Debug` hides it.
#[derive(Clone)]
pub struct WebhookSecret(Box<[u8]>);

impl WebhookSecret {
    /// A new secret of 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; GENERATED_SECRET_BYTES];
        getrandom::fill(&mut key)?;
        Ok(Self(Box::new(key)))
    }

    fn key(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let encoded = s.strip_prefix(SECRET_PREFIX).ok_or(SecretError::Prefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self(key.into_boxed_slice()))
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A webhook secret's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_; paste the whole secret Relay issued")]
    Prefix,
    #[error("a webhook secret is whsec_ followed by standard base64; paste it unaltered")]
    NotBase64,
    #[error("a webhook secret holds 24 to 64 bytes, this one holds {0}; generate a new secret")]
    Length(usize),
}

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the webhook-id is empty or contains a full stop; the sender must use an id without one"
    )]
    MalformedId,
    #[error(
        "the webhook timestamp is {age_secs}s old, beyond the {tolerance_secs}s tolerance; \
         refuse it as a possible replay, or check the sender's clock"
    )]
    TooOld { age_secs: u64, tolerance_secs: u64 },
    #[error(
        "the webhook timestamp is {ahead_secs}s in the future, beyond the {tolerance_secs}s \
         tolerance; check the clocks of sender and receiver"
    )]
    TooNew {
        ahead_secs: u64,
        tolerance_secs: u64,
    },
    #[error("the webhook-signature header holds no v1 signature; the sender must sign with v1")]
    NoSignature,
    #[error(
        "no webhook signature matches; check that the secret is the one issued for this \
         endpoint and that the body is read unaltered"
    )]
    Mismatch,
}

/// The `webhook-signature` value for one message: `v1,<base64>`.
///
/// `msg_id` must not contain a full stop (the specification's rule: the
/// signed content is delimited by full stops); Relay's ids never do.
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    debug_assert!(valid_msg_id(msg_id), "webhook message id {msg_id:?}");
    format!(
        "{SIGNATURE_VERSION},{}",
        STANDARD.encode(signature_bytes(secret, msg_id, timestamp, body))
    )
}

/// The three headers of a signed delivery, in the specification's names.
pub fn headers(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        (HEADER_ID, msg_id.to_owned()),
        (HEADER_TIMESTAMP, timestamp.to_string()),
        (HEADER_SIGNATURE, sign(secret, msg_id, timestamp, body)),
    ]
}

/// Checks a delivery as a receiver would: the timestamp within
/// `tolerance_secs` of `now` (either side), and at least one `v1` entry of
/// the space-separated `signature_header` equal, in constant time, to the
/// HMAC of this id, timestamp and body. Entries of other versions (`v1a`, …)
/// are skipped, as the specification asks. A negative tolerance counts as 0.
pub fn verify(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    if !valid_msg_id(msg_id) {
        return Err(SignatureError::MalformedId);
    }
    let tolerance = u64::try_from(tolerance_secs).unwrap_or(0);
    let distance = now.abs_diff(timestamp);
    if distance > tolerance {
        return Err(if timestamp < now {
            SignatureError::TooOld {
                age_secs: distance,
                tolerance_secs: tolerance,
            }
        } else {
            SignatureError::TooNew {
                ahead_secs: distance,
                tolerance_secs: tolerance,
            }
        });
    }

    let expected = signature_bytes(secret, msg_id, timestamp, body);
    let mut saw_v1 = false;
    for entry in signature_header.split_ascii_whitespace() {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if version != SIGNATURE_VERSION {
            continue;
        }
        saw_v1 = true;
        // A strict decoder: canonical padding, no stray bits, so exactly one
        // text is accepted for a given signature.
        let Ok(presented) = STANDARD.decode(encoded) else {
            continue;
        };
        if constant_time_eq(&presented, &expected) {
            return Ok(());
        }
    }
    Err(if saw_v1 {
        SignatureError::Mismatch
    } else {
        SignatureError::NoSignature
    })
}

fn valid_msg_id(msg_id: &str) -> bool {
    !msg_id.is_empty() && !msg_id.contains('.')
}

fn signature_bytes(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let timestamp = timestamp.to_string();
    hmac_sha256(
        secret.key(),
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `message` parts:
/// `H((K ^ opad) || H((K ^ ipad) || message))`, with `K` the key padded with
/// zeros to the 64-byte block, or first hashed when longer than a block.
fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }

    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let inner = inner.finalize();

    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Whether two byte strings are equal, taking the same time wherever they
/// differ. Only the lengths (public: a signature is 32 bytes) may leak.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hmac_hex(key: &[u8], message: &[u8]) -> String {
        hex::encode(hmac_sha256(key, &[message]))
    }

    // RFC 4231, section 4: the HMAC-SHA-256 results of the test cases.

    #[test]
    fn rfc4231_case_1() {
        assert_eq!(
            hmac_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn rfc4231_case_2_key_shorter_than_output() {
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc4231_case_3() {
        assert_eq!(
            hmac_hex(&[0xaa; 20], &[0xdd; 50]),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"
        );
    }

    #[test]
    fn rfc4231_case_4() {
        let key: Vec<u8> = (0x01..=0x19).collect();
        assert_eq!(
            hmac_hex(&key, &[0xcd; 50]),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"
        );
    }

    #[test]
    fn rfc4231_case_5_truncated() {
        let mac = hmac_sha256(&[0x0c; 20], &[b"Test With Truncation"]);
        assert_eq!(hex::encode(&mac[..16]), "a3b6167473100ee06e0c796c2955552b");
    }

    #[test]
    fn rfc4231_case_6_key_longer_than_block() {
        assert_eq!(
            hmac_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn rfc4231_case_7_key_and_data_longer_than_block() {
        assert_eq!(
            hmac_hex(
                &[0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than \
                  block-size data. The key needs to be hashed before being used by the \
                  HMAC algorithm."
            ),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"
        );
    }

    #[test]
    fn a_message_in_parts_is_its_concatenation() {
        let key = [0x42; 33];
        assert_eq!(
            hmac_sha256(&key, &[b"ab", b"", b"cde"]),
            hmac_sha256(&key, &[b"abcde"])
        );
    }

    #[test]
    fn a_key_of_exactly_one_block_is_not_hashed() {
        // 64 bytes is padded (with nothing), 65 is hashed: the results differ.
        let key64 = [0x01; 64];
        let key65 = [0x01; 65];
        assert_ne!(hmac_sha256(&key64, &[b"m"]), hmac_sha256(&key65, &[b"m"]));
        let hashed: [u8; 32] = Sha256::digest(key65).into();
        assert_eq!(hmac_sha256(&key65, &[b"m"]), hmac_sha256(&hashed, &[b"m"]));
    }

    /// The example of the Standard Webhooks libraries' test suites.
    #[test]
    fn standard_webhooks_reference_example() {
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse()
            .expect("valid secret");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let timestamp = 1_614_265_330;
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

        assert_eq!(sign(&secret, id, timestamp, body), expected);
        assert_eq!(
            verify(&secret, id, timestamp, body, expected, timestamp, 300),
            Ok(())
        );
    }

    const SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    const TS: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"type":"report.signed","data":{"case_id":"c1"}}"#;

    fn secret() -> WebhookSecret {
        SECRET.parse().expect("valid secret")
    }

    #[test]
    fn known_answer_by_hand() {
        let key: Vec<u8> = (0u8..32).collect();
        let content = format!("{ID}.{TS}.{}", std::str::from_utf8(BODY).expect("utf-8"));
        let by_hand = format!(
            "v1,{}",
            STANDARD.encode(hmac_sha256(&key, &[content.as_bytes()]))
        );
        assert_eq!(sign(&secret(), ID, TS, BODY), by_hand);
        // The same value computed outside Relay (Python's hmac module).
        assert_eq!(by_hand, "v1,/V+Ija3+qiFj6SW2/mZCEVCHeGNH9UJkO4hbjqB4WNc=");
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let headers = headers(&secret(), ID, TS, BODY);
        assert_eq!(
            headers,
            vec![
                ("webhook-id", ID.to_owned()),
                ("webhook-timestamp", "1700000000".to_owned()),
                ("webhook-signature", sign(&secret(), ID, TS, BODY)),
            ]
        );
    }

    #[test]
    fn verify_accepts_within_tolerance_either_side() {
        let sig = sign(&secret(), ID, TS, BODY);
        for now in [TS, TS + 300, TS - 300] {
            assert_eq!(verify(&secret(), ID, TS, BODY, &sig, now, 300), Ok(()));
        }
    }

    #[test]
    fn tampered_body_fails() {
        let sig = sign(&secret(), ID, TS, BODY);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&secret(), ID, TS, &tampered, &sig, TS, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret(), ID, TS, b"", &sig, TS, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tampered_id_or_timestamp_fails() {
        let sig = sign(&secret(), ID, TS, BODY);
        assert_eq!(
            verify(&secret(), "msg_other", TS, BODY, &sig, TS, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secret(), ID, TS + 1, BODY, &sig, TS, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_fails() {
        let sig = sign(&secret(), ID, TS, BODY);
        let other = WebhookSecret::generate().expect("rng");
        assert_eq!(
            verify(&other, ID, TS, BODY, &sig, TS, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_or_future_timestamp_fails_even_when_signed() {
        let sig = sign(&secret(), ID, TS, BODY);
        assert_eq!(
            verify(&secret(), ID, TS, BODY, &sig, TS + 301, 300),
            Err(SignatureError::TooOld {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert_eq!(
            verify(&secret(), ID, TS, BODY, &sig, TS - 301, 300),
            Err(SignatureError::TooNew {
                ahead_secs: 301,
                tolerance_secs: 300
            })
        );
        // Extremes neither overflow nor pass.
        assert!(verify(&secret(), ID, i64::MIN, BODY, &sig, i64::MAX, 300).is_err());
        // A negative tolerance accepts only the exact second.
        assert!(verify(&secret(), ID, TS, BODY, &sig, TS + 1, -5).is_err());
        assert_eq!(verify(&secret(), ID, TS, BODY, &sig, TS, -5), Ok(()));
    }

    #[test]
    fn any_v1_entry_of_the_list_may_match() {
        let sig = sign(&secret(), ID, TS, BODY);
        let other = sign(&WebhookSecret::generate().expect("rng"), ID, TS, BODY);
        let v1a = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";
        for header in [
            format!("{other} {sig}"),
            format!("{sig} {other}"),
            format!("{v1a} {sig}"),
            format!("junk {sig}"),
        ] {
            assert_eq!(verify(&secret(), ID, TS, BODY, &header, TS, 300), Ok(()));
        }
    }

    #[test]
    fn malformed_headers_fail() {
        let sig = sign(&secret(), ID, TS, BODY);
        let encoded = sig.strip_prefix("v1,").expect("v1 prefix");
        let no_v1 = [
            "",
            "   ",
            encoded,
            &format!("v2,{encoded}"),
            &format!("V1,{encoded}"),
            &format!("v1a,{encoded}"),
        ];
        for header in no_v1 {
            assert_eq!(
                verify(&secret(), ID, TS, BODY, header, TS, 300),
                Err(SignatureError::NoSignature),
                "{header:?}"
            );
        }
        let bad_v1 = [
            "v1,".to_owned(),
            "v1,!!!!".to_owned(),
            format!("v1,{}", encoded.trim_end_matches('=')),
            format!("v1, {encoded}"),
            format!("v1,{}", &encoded[..20]),
            format!("v1,{encoded}AAAA"),
            format!("v1,{}", STANDARD.encode(b"not the signature")),
        ];
        for header in &bad_v1 {
            assert_eq!(
                verify(&secret(), ID, TS, BODY, header, TS, 300),
                Err(SignatureError::Mismatch),
                "{header:?}"
            );
        }
    }

    #[test]
    fn ids_with_a_full_stop_are_refused() {
        for id in ["", "msg.1"] {
            assert_eq!(
                verify(&secret(), id, TS, BODY, "v1,AAAA", TS, 300),
                Err(SignatureError::MalformedId)
            );
        }
    }

    #[test]
    fn secret_text_round_trips_and_is_redacted() {
        let secret = WebhookSecret::generate().expect("rng");
        let text = secret.to_string();
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.len(), "whsec_".len() + 44);
        let back: WebhookSecret = text.parse().expect("round trip");
        assert_eq!(back.to_string(), text);
        assert_eq!(back.key(), secret.key());
        let debug = format!("{secret:?}");
        assert_eq!(debug, "WebhookSecret(<redacted>)");
        assert!(!debug.contains(&text["whsec_".len()..]));
        let another = WebhookSecret::generate().expect("rng");
        assert_ne!(another.to_string(), text);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let key32 = STANDARD.encode([7u8; 32]);
        assert_eq!(
            key32.parse::<WebhookSecret>().err(),
            Some(SecretError::Prefix)
        );
        assert_eq!(
            format!("WHSEC_{key32}").parse::<WebhookSecret>().err(),
            Some(SecretError::Prefix)
        );
        assert_eq!(
            "whsec_not base64!".parse::<WebhookSecret>().err(),
            Some(SecretError::NotBase64)
        );
        assert_eq!(
            format!("whsec_{}", STANDARD.encode([7u8; 23]))
                .parse::<WebhookSecret>()
                .err(),
            Some(SecretError::Length(23))
        );
        assert_eq!(
            format!("whsec_{}", STANDARD.encode([7u8; 65]))
                .parse::<WebhookSecret>()
                .err(),
            Some(SecretError::Length(65))
        );
        for len in [24, 64] {
            assert!(
                format!("whsec_{}", STANDARD.encode(vec![7u8; len]))
                    .parse::<WebhookSecret>()
                    .is_ok()
            );
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"bbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
