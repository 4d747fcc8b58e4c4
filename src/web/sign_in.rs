//! Signing in and out. A bearer token (as `relay admin token create`
//! prints it) is exchanged once for a session cookie; the token itself is
//! never stored by the browser.

use axum::Form;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use relay_workers::auth::{AuthError, authenticate};
use relay_workers::model::Timestamp;
use relay_workers::session::SessionSecret;
use relay_workers::token::PresentedToken;
use serde::Deserialize;

use super::layout;
use super::page::{PageError, home_of};
use super::session;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::Caller;
use crate::http::throttle;

fn form_page(error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            main.narrow #main {
                h1 { "Sign in to Relay" }
                p { "Paste the access token your administrator gave you. "
                    "It is exchanged for a session of this browser; the page does not keep it." }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                form.stack method="post" action="/sign-in" {
                    label for="token" { "Access token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus
                        spellcheck="false";
                    button.primary type="submit" { "Sign in" }
                }
            }
        },
    )
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /sign-in`
pub async fn form() -> Response {
    html_response(StatusCode::OK, form_page(None))
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
}

/// A browser tells where a request came from (`Sec-Fetch-Site`); a sign-in
/// posted by another site's page (login CSRF) is refused.
fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

/// `POST /sign-in`: checks the token like the API does, records a session
/// tied to it and sets the cookie.
pub async fn sign_in(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    if cross_site(&parts.headers) {
        return Err(ApiError::Forbidden("sign in from Relay's own page").into());
    }
    let refused = |e: AuthError| {
        let message = match e {
            AuthError::Expired | AuthError::Revoked => e.to_string(),
            _ => "That token does not sign anybody in. Check it and try again.".to_owned(),
        };
        html_response(StatusCode::UNAUTHORIZED, form_page(Some(&message)))
    };
    let client = throttle::client_of(&parts);
    state
        .auth_throttle
        .check(client)
        .map_err(ApiError::Throttled)?;
    let failed = |e: AuthError| match state.auth_throttle.failed(client) {
        Some(wait) => Err(ApiError::Throttled(wait).into()),
        None => Ok(refused(e)),
    };
    let Some(presented) = PresentedToken::parse(form.token.trim()) else {
        return failed(AuthError::Invalid);
    };
    let stored = state.catalog.token_credentials(presented.id()).await?;
    let token_expires = stored.as_ref().and_then(|s| s.expires_at);
    let principal = match authenticate(&presented, stored, Timestamp::now()) {
        Ok(principal) => principal,
        Err(e) => return failed(e),
    };
    session::purge(&state).await;
    let secret = SessionSecret::generate()
        .map_err(|e| ApiError::Internal(format!("no randomness for a session: {e}")))?;
    let mut expires = state.sessions.expires_at(Timestamp::now());
    if let Some(token_expires) = token_expires {
        expires = expires.min(token_expires);
    }
    let caller = Caller::of(principal, &parts);
    state
        .catalog
        .create_session(&caller.audit, &secret.key(), presented.id(), expires)
        .await?;
    tracing::info!(token.id = %presented.id(), "signed in to the web pages");
    let mut response = Redirect::to(home_of(&caller.principal)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&secret, state.secure_cookies),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /sign-out`: deletes the session (with its CSRF token: another
/// site cannot sign a user out) and the cookie.
pub async fn sign_out(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<SignOutForm>,
) -> Result<Response, PageError> {
    match Caller::from_session(&parts, &state).await {
        Ok(Some((caller, secret))) => {
            if !secret.csrf_matches(&form.csrf) {
                return Err(ApiError::Csrf.into());
            }
            state
                .catalog
                .end_session(&caller.audit, &secret.key())
                .await?;
        }
        Ok(None) => {}
        Err(error) if session::needs_sign_in(&error) => {}
        Err(error) => return Err(error.into()),
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::clear_cookie(state.secure_cookies),
    );
    Ok(response)
}
