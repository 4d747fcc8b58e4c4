//! Bearer tokens: 256 random bits, shown once, stored only as a digest.
//!
//! A token reads `relay_<token id>_<secret>`: the id (public, 32 hex digits)
//! finds the row without comparing secrets in SQL, and the secret (64 hex
//! digits) is checked against the stored sha256 in constant time. The prefix
//! lets secret scanners recognise a leaked Relay token.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::model::TokenId;

const PREFIX: &str = "relay_";
const SECRET_BYTES: usize = 32;

/// A freshly issued token. Its `Display` is the only place the secret ever
/// appears; `Debug` hides it.
pub struct IssuedToken {
    id: TokenId,
    secret: [u8; SECRET_BYTES],
}

impl IssuedToken {
    /// A new token with a secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret)?;
        Ok(Self {
            id: TokenId::generate(),
            secret,
        })
    }

    pub fn id(&self) -> TokenId {
        self.id
    }

    /// What the catalog stores instead of the secret.
    pub fn secret_digest(&self) -> SecretDigest {
        SecretDigest::of(&self.secret)
    }
}

impl fmt::Display for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}_{}",
            self.id.as_uuid().simple(),
            hex::encode(self.secret)
        )
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A token as presented by a client, split into its parts.
pub struct PresentedToken {
    id: TokenId,
    secret: [u8; SECRET_BYTES],
}

impl PresentedToken {
    /// Splits a bearer value; `None` when it is not shaped like a Relay token.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        if id.len() != 32 {
            return None;
        }
        let id = TokenId::from(Uuid::try_parse(id).ok()?);
        let mut bytes = [0u8; SECRET_BYTES];
        hex::decode_to_slice(secret, &mut bytes).ok()?;
        Some(Self { id, secret: bytes })
    }

    pub fn id(&self) -> TokenId {
        self.id
    }

    /// Whether this secret is the one whose digest was stored, compared in
    /// constant time.
    pub fn matches(&self, stored: &SecretDigest) -> bool {
        SecretDigest::of(&self.secret).0.ct_eq(&stored.0).into()
    }
}

impl fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The sha256 of a token secret, the only form in which it is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_token_parses_back_and_matches_its_digest() {
        let issued = IssuedToken::generate().expect("rng");
        let text = issued.to_string();
        assert!(text.starts_with("relay_"));
        assert_eq!(text.len(), "relay_".len() + 32 + 1 + 64);
        let presented = PresentedToken::parse(&text).expect("parses");
        assert_eq!(presented.id(), issued.id());
        assert!(presented.matches(&issued.secret_digest()));
    }

    #[test]
    fn a_different_secret_does_not_match() {
        let a = IssuedToken::generate().expect("rng");
        let b = IssuedToken::generate().expect("rng");
        let forged = format!(
            "relay_{}_{}",
            a.id().as_uuid().simple(),
            hex::encode(b.secret)
        );
        let presented = PresentedToken::parse(&forged).expect("parses");
        assert!(!presented.matches(&a.secret_digest()));
    }

    #[test]
    fn malformed_tokens_are_not_parsed() {
        for bad in [
            "",
            "relay_",
            "bearer xyz",
            "relay_abc_def",
            &"relay_".repeat(20),
        ] {
            assert!(PresentedToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn digest_is_not_the_secret_and_debug_hides_it() {
        let issued = IssuedToken::generate().expect("rng");
        let text = issued.to_string();
        let secret_hex = text.rsplit('_').next().expect("secret part");
        assert_ne!(issued.secret_digest().to_hex(), secret_hex);
        assert!(!format!("{issued:?}").contains(secret_hex));
        let hex = issued.secret_digest().to_hex();
        assert_eq!(SecretDigest::from_hex(&hex), Some(issued.secret_digest()));
    }
}
