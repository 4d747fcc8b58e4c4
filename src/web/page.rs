//! What every signed-in page starts from: the caller (through the session
//! cookie only) and the session's CSRF token, and how a page fails.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use relay_workers::model::Principal;
use relay_workers::session::SessionSecret;

use super::layout;
use super::session;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::Caller;

/// A request from a signed-in browser.
#[derive(Debug)]
pub struct Page {
    pub caller: Caller,
    /// The session's CSRF token, put in every page for its forms and scripts.
    pub csrf: String,
    secret: SessionSecret,
}

impl Page {
    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.secret.csrf_matches(presented)
    }

    /// The landing page of the caller's role.
    pub fn home(&self) -> &'static str {
        home_of(&self.caller.principal)
    }
}

pub fn home_of(principal: &Principal) -> &'static str {
    match principal {
        Principal::Office { .. } => "/office",
        Principal::Specialist { .. } => "/specialist",
        Principal::Admin { .. } => "/admin",
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_session(parts, state).await {
            Ok(Some((caller, secret))) => Ok(Page {
                caller,
                csrf: secret.csrf_token(),
                secret,
            }),
            Ok(None) => Err(PageError::SignIn),
            Err(error) if session::needs_sign_in(&error) => Err(PageError::SignIn),
            Err(error) => Err(PageError::Api(error)),
        }
    }
}

/// Why a page cannot be shown. Statuses come from [`ApiError`]'s one
/// mapping; this only renders them as HTML.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in, or the session ended: go to the sign-in page.
    SignIn,
    Api(ApiError),
}

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(error: E) -> Self {
        PageError::Api(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let error = match self {
            PageError::SignIn => return Redirect::to("/sign-in").into_response(),
            PageError::Api(error) if session::needs_sign_in(&error) => {
                return Redirect::to("/sign-in").into_response();
            }
            PageError::Api(error) => error,
        };
        let (status, code) = error.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = %error, code, "page failed");
        }
        let (title, advice) = match status {
            StatusCode::NOT_FOUND => (
                "Not found",
                "There is no such case, or it is not one you can see.",
            ),
            StatusCode::FORBIDDEN => ("Not allowed", "Your account cannot open this page."),
            StatusCode::TOO_MANY_REQUESTS => (
                "Too many attempts",
                "Wait a little, then check the token and sign in again.",
            ),
            _ => ("Something went wrong", ""),
        };
        let body = html! {
            main.narrow {
                h1 { (title) }
                p.error role="alert" { (error.public_message(status)) }
                @if !advice.is_empty() { p { (advice) } }
                p { a href="/" { "Back to the start page" } }
            }
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            layout::bare(title, body).into_string(),
        )
            .into_response();
        if let ApiError::Throttled(wait) = &error {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.seconds().into());
        }
        response
    }
}

/// `GET /`: the caller's start page, or the sign-in page.
pub async fn home(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    match Caller::from_session(&parts, &state).await {
        Ok(Some((caller, _))) => Redirect::to(home_of(&caller.principal)).into_response(),
        _ => Redirect::to("/sign-in").into_response(),
    }
}
