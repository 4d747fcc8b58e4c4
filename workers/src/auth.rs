//! Checking a presented bearer token against what the catalog stored.

use crate::catalog::TokenCredentials;
use crate::model::{Principal, Timestamp};
use crate::token::PresentedToken;

/// Why a token does not sign anybody in. The message tells the holder what
/// to do next without saying anything about other accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send 'Authorization: Bearer <token>'")]
    Missing,
    #[error("invalid token")]
    Invalid,
    #[error("token expired: ask an administrator for a new one")]
    Expired,
    #[error("token revoked: ask an administrator for a new one")]
    Revoked,
    /// A browser session signed out, timed out or never existed.
    #[error("session ended: sign in again")]
    SessionEnded,
}

/// Decides whether `presented` signs in as the account in `stored` at `now`.
/// The secret is compared in constant time before anything else is said.
pub fn authenticate(
    presented: &PresentedToken,
    stored: Option<TokenCredentials>,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    let stored = stored.ok_or(AuthError::Invalid)?;
    if !presented.matches(&stored.digest) {
        return Err(AuthError::Invalid);
    }
    if stored.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if stored.expires_at.is_some_and(|at| at <= now) {
        return Err(AuthError::Expired);
    }
    Ok(stored.principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;
    use crate::token::IssuedToken;

    fn setup(expires_at: Option<Timestamp>, revoked: bool) -> (PresentedToken, TokenCredentials) {
        let issued = IssuedToken::generate().expect("rng");
        let presented = PresentedToken::parse(&issued.to_string()).expect("parses");
        let creds = TokenCredentials {
            digest: issued.secret_digest(),
            expires_at,
            revoked_at: revoked.then(Timestamp::now),
            principal: Principal::Admin {
                user: UserId::generate(),
            },
        };
        (presented, creds)
    }

    #[test]
    fn a_valid_token_signs_in() {
        let (p, c) = setup(None, false);
        assert!(authenticate(&p, Some(c), Timestamp::now()).is_ok());
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let now = Timestamp::now();
        let (p, c) = setup(Some(now), false);
        assert_eq!(
            authenticate(&p, Some(c.clone()), now),
            Err(AuthError::Expired)
        );
        assert!(authenticate(&p, Some(c), Timestamp::from_millis(now.as_millis() - 1)).is_ok());
    }

    #[test]
    fn revoked_and_unknown_tokens_fail() {
        let (p, c) = setup(None, true);
        assert_eq!(
            authenticate(&p, Some(c), Timestamp::now()),
            Err(AuthError::Revoked)
        );
        assert_eq!(
            authenticate(&p, None, Timestamp::now()),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn a_wrong_secret_says_invalid_even_if_revoked() {
        let (_, c) = setup(None, true);
        let (other, _) = setup(None, false);
        assert_eq!(
            authenticate(&other, Some(c), Timestamp::now()),
            Err(AuthError::Invalid)
        );
    }
}
