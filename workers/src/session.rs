//! Browser sessions: a bearer token exchanged once, at sign-in, for a
//! random cookie secret, so the token never sits in the browser.
//!
//! Like a token, a session secret is 256 random bits of which only the
//! sha256 (the [`SessionKey`]) is stored. The session belongs to the token
//! it was made from: the token's revocation or expiry ends it at once,
//! because every check reads the token beside the session. A session also
//! ends on its own after [`SessionPolicy::lifetime`], or after
//! [`SessionPolicy::idle`] without a request.
//!
//! The CSRF token of a session is derived from its secret (a keyed hash
//! with a fixed label), so it is tied to the session, needs no storage,
//! and cannot be computed from anything in the database.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::AuthError;
use crate::model::{Principal, Timestamp, TokenId};

const SECRET_BYTES: usize = 32;
/// Separates the CSRF derivation from the key derivation.
const CSRF_LABEL: &[u8] = b"relay web csrf v1\0";

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// From sign-in, whatever the activity.
    pub lifetime: Duration,
    /// Without a request.
    pub idle: Duration,
    /// How stale the recorded last use may get before a request records it
    /// again (so not every request writes).
    pub touch_after: Duration,
}

impl Default for SessionPolicy {
    /// A working day from sign-in; 30 minutes idle, the usual automatic
    /// log-off for clinical workstations.
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            idle: Duration::from_secs(30 * 60),
            touch_after: Duration::from_secs(60),
        }
    }
}

/// The secret a browser holds in its session cookie. `Display` (hex) is the
/// cookie value; `Debug` hides it.
pub struct SessionSecret([u8; SECRET_BYTES]);

impl SessionSecret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// A cookie value; `None` unless it is 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != SECRET_BYTES * 2 {
            return None;
        }
        let mut bytes = [0u8; SECRET_BYTES];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// What the catalog stores and looks the session up by.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }

    /// The session's CSRF token (64 hex digits), for forms and scripts.
    pub fn csrf_token(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(CSRF_LABEL);
        hasher.update(self.0);
        hex::encode(hasher.finalize())
    }

    /// Whether `presented` is this session's CSRF token, in constant time.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let expected = self.csrf_token();
        presented.len() == expected.len()
            && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    }
}

impl fmt::Display for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// The sha256 of a session secret: the only form in which it is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A key is not a secret, but a prefix is all a log needs.
        write!(f, "SessionKey({}…)", &self.to_hex()[..12])
    }
}

/// A session as stored, with the token it came from.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub token_id: TokenId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub token_expires_at: Option<Timestamp>,
    pub token_revoked_at: Option<Timestamp>,
    pub principal: Principal,
}

/// A session that is still good: who it signs in as, and whether its last
/// use should be recorded again.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub principal: Principal,
    pub token_id: TokenId,
    pub needs_touch: bool,
}

impl SessionPolicy {
    /// When a session made at `now` ends at the latest.
    pub fn expires_at(&self, now: Timestamp) -> Timestamp {
        now.plus(self.lifetime)
    }

    /// Decides whether `stored` still signs anybody in at `now`.
    pub fn check(
        &self,
        stored: Option<StoredSession>,
        now: Timestamp,
    ) -> Result<LiveSession, AuthError> {
        let s = stored.ok_or(AuthError::SessionEnded)?;
        if s.token_revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if s.token_expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        if s.expires_at <= now || s.last_seen_at.plus(self.idle) <= now {
            return Err(AuthError::SessionEnded);
        }
        Ok(LiveSession {
            principal: s.principal,
            token_id: s.token_id,
            needs_touch: s.last_seen_at.plus(self.touch_after) <= now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;

    fn stored(now: Timestamp) -> StoredSession {
        StoredSession {
            token_id: TokenId::generate(),
            created_at: now,
            last_seen_at: now,
            expires_at: SessionPolicy::default().expires_at(now),
            token_expires_at: None,
            token_revoked_at: None,
            principal: Principal::Admin {
                user: UserId::generate(),
            },
        }
    }

    fn later(t: Timestamp, secs: u64) -> Timestamp {
        t.plus(Duration::from_secs(secs))
    }

    #[test]
    fn a_secret_round_trips_and_its_key_is_not_the_secret() {
        let secret = SessionSecret::generate().expect("rng");
        let text = secret.to_string();
        let parsed = SessionSecret::parse(&text).expect("parses");
        assert_eq!(parsed.key(), secret.key());
        assert_ne!(secret.key().to_hex(), text);
        assert!(!format!("{secret:?}").contains(&text));
        assert!(SessionSecret::parse("abc").is_none());
        assert!(SessionSecret::parse(&"z".repeat(64)).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let a = SessionSecret::generate().expect("rng");
        let b = SessionSecret::generate().expect("rng");
        assert!(a.csrf_matches(&a.csrf_token()));
        assert!(!a.csrf_matches(&b.csrf_token()));
        assert!(!a.csrf_matches(""));
        assert_ne!(a.csrf_token(), a.key().to_hex());
    }

    #[test]
    fn sessions_end_by_lifetime_idleness_or_their_token() {
        let policy = SessionPolicy::default();
        let now = Timestamp::now();
        let live = policy
            .check(Some(stored(now)), later(now, 10))
            .expect("live");
        assert!(!live.needs_touch);
        assert!(
            policy
                .check(Some(stored(now)), later(now, 61))
                .expect("live")
                .needs_touch
        );
        assert_eq!(
            policy.check(Some(stored(now)), later(now, 31 * 60)).err(),
            Some(AuthError::SessionEnded)
        );
        let mut active = stored(now);
        active.last_seen_at = later(now, 12 * 3600 - 60);
        assert_eq!(
            policy.check(Some(active), later(now, 12 * 3600)).err(),
            Some(AuthError::SessionEnded)
        );
        let mut revoked = stored(now);
        revoked.token_revoked_at = Some(now);
        assert_eq!(
            policy.check(Some(revoked), now).err(),
            Some(AuthError::Revoked)
        );
        let mut expired = stored(now);
        expired.token_expires_at = Some(now);
        assert_eq!(
            policy.check(Some(expired), now).err(),
            Some(AuthError::Expired)
        );
        assert_eq!(policy.check(None, now).err(), Some(AuthError::SessionEnded));
    }
}
