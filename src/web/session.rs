//! The session cookie the web pages sign in with, and the check every
//! cookie-authenticated request goes through.
//!
//! The cookie holds a random secret (see `relay_workers::session`); it is
//! `HttpOnly` (scripts never read it), `SameSite=Strict` (no other site's
//! page can make the browser send it), `Path=/`, and `Secure` when the site
//! is served over TLS — decided by the configured public URL: `https://…`
//! sets `Secure` and the `__Host-` name prefix, which browsers only accept
//! from a secure origin, for the whole host. A site reached over plain
//! HTTP (the embedded default on 127.0.0.1) gets neither, or the browser
//! would drop the cookie.

use axum::http::{HeaderMap, HeaderValue, header};
use relay_workers::auth::AuthError;
use relay_workers::model::{Principal, Timestamp};
use relay_workers::session::SessionSecret;

use crate::http::AppState;
use crate::http::error::ApiError;

/// The header page scripts send the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Marks a request a page makes on its own (the worklist's refresh, a
/// thumbnail poll, the claim's renewal): it does not count as activity, so
/// an unattended page still reaches the idle timeout.
pub const BACKGROUND_HEADER: &str = "x-relay-background";

/// The cookie's name: with `Secure`, the `__Host-` prefix binds it to this
/// host and path `/`.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-relay_session"
    } else {
        "relay_session"
    }
}

/// The session secret in the request's cookies, if well-formed.
pub fn read_cookie(headers: &HeaderMap, secure: bool) -> Option<SessionSecret> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| SessionSecret::parse(v.trim()))
}

fn attributes(secure: bool) -> &'static str {
    if secure {
        "; Path=/; HttpOnly; SameSite=Strict; Secure"
    } else {
        "; Path=/; HttpOnly; SameSite=Strict"
    }
}

/// `Set-Cookie` for a new session. No `Max-Age`: the browser forgets it
/// when it closes, and the server ends it on its own schedule anyway.
pub fn set_cookie(secret: &SessionSecret, secure: bool) -> HeaderValue {
    let value = format!("{}={secret}{}", cookie_name(secure), attributes(secure));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let value = format!("{}=; Max-Age=0{}", cookie_name(secure), attributes(secure));
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who the session signs in as, if it is still live; records its use
/// (unless the request is `background`) when the recorded last use has
/// grown stale.
pub async fn authenticate(
    state: &AppState,
    secret: &SessionSecret,
    background: bool,
) -> Result<Principal, ApiError> {
    let key = secret.key();
    let stored = state.catalog.session(&key).await?;
    let now = Timestamp::now();
    let live = state.sessions.check(stored, now)?;
    if live.needs_touch && !background {
        state.catalog.touch_session(&key, now).await?;
    }
    Ok(live.principal)
}

/// Purges ended sessions; called at sign-in, so the table stays small
/// without a timer of its own.
pub async fn purge(state: &AppState) {
    let now = Timestamp::now();
    let idle_before = Timestamp::from_millis(
        now.as_millis() - i64::try_from(state.sessions.idle.as_millis()).unwrap_or(i64::MAX),
    );
    match state.catalog.purge_sessions(now, idle_before).await {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "ended web sessions removed"),
        Err(error) => tracing::warn!(%error, "could not purge ended web sessions"),
    }
}

/// Whether an authentication failure means "sign in (again)".
pub fn needs_sign_in(error: &ApiError) -> bool {
    matches!(
        error,
        ApiError::Unauthorized(
            AuthError::Missing
                | AuthError::Invalid
                | AuthError::Expired
                | AuthError::Revoked
                | AuthError::SessionEnded
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_strict_http_only_and_secure_over_tls() {
        let secret = SessionSecret::generate().expect("rng");
        let plain = set_cookie(&secret, false);
        let plain = plain.to_str().expect("ascii");
        assert!(plain.starts_with("relay_session="));
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict"));
        assert!(plain.contains("Path=/") && !plain.contains("Secure"));
        let tls = set_cookie(&secret, true);
        let tls = tls.to_str().expect("ascii");
        assert!(tls.starts_with("__Host-relay_session=") && tls.ends_with("; Secure"));
        assert!(
            clear_cookie(false)
                .to_str()
                .expect("ascii")
                .contains("Max-Age=0")
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let secret = SessionSecret::generate().expect("rng");
        let mut headers = HeaderMap::new();
        let value = format!("a=b; relay_session={secret}; c=d");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&value).expect("header"),
        );
        assert_eq!(
            read_cookie(&headers, false).map(|s| s.key()),
            Some(secret.key())
        );
        assert!(read_cookie(&headers, true).is_none());
    }
}
