//! Extractors that turn a request into checked values, each rejecting with
//! an [`ApiError`] so every refusal has the same JSON shape.
//!
//! Architecture Invariant: a handler that touches patient data takes a
//! [`Caller`], the only way to get a `CaseScope` and an `AuditContext`.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use relay_workers::audit::{Actor, AuditContext};
use relay_workers::auth::{AuthError, authenticate};
use relay_workers::model::{CaseId, CaseScope, OfficeId, Principal, Specialty, Timestamp, UserId};
use relay_workers::session::SessionSecret;
use relay_workers::token::PresentedToken;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use super::throttle;
use crate::web::session;

/// The authenticated caller of a request, with the context its audit events
/// carry (remote address, request id).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub audit: AuditContext,
}

impl Caller {
    pub fn scope(&self) -> CaseScope {
        self.principal.case_scope()
    }

    /// The caller's office, for routes only office staff may use.
    pub fn office(&self) -> Result<OfficeId, ApiError> {
        match self.principal {
            Principal::Office { office, .. } => Ok(office),
            _ => Err(ApiError::Forbidden("only office users can do this")),
        }
    }

    /// The caller's user and specialty, for routes only specialists may use.
    pub fn specialist(&self) -> Result<(UserId, Specialty), ApiError> {
        match self.principal {
            Principal::Specialist { user, specialty } => Ok((user, specialty)),
            _ => Err(ApiError::Forbidden("only specialists can do this")),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.principal {
            Principal::Admin { .. } => Ok(()),
            _ => Err(ApiError::Forbidden("only administrators can do this")),
        }
    }
}

impl Caller {
    /// The caller `principal`, with the audit context of the request in `parts`.
    pub(crate) fn of(principal: Principal, parts: &Parts) -> Self {
        tracing::Span::current().record("user.id", tracing::field::display(principal.user_id()));
        let remote_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Caller {
            audit: AuditContext {
                actor: Actor::User(principal.clone()),
                remote_addr,
                request_id,
            },
            principal,
        }
    }

    /// The caller of a request that carries the web pages' session cookie,
    /// with the session's secret (for its CSRF token); `None` without the
    /// cookie. CSRF is not checked here: see [`Caller`]'s extractor.
    pub async fn from_session(
        parts: &Parts,
        state: &AppState,
    ) -> Result<Option<(Caller, SessionSecret)>, ApiError> {
        let Some(secret) = session::read_cookie(&parts.headers, state.secure_cookies) else {
            return Ok(None);
        };
        let background = parts.headers.contains_key(session::BACKGROUND_HEADER);
        let principal = session::authenticate(state, &secret, background).await?;
        Ok(Some((Caller::of(principal, parts), secret)))
    }
}

/// A bearer token in `Authorization`, or else the web pages' session
/// cookie. A request authenticated by the cookie that could change
/// something (any method but GET, HEAD, OPTIONS) must also carry the
/// session's CSRF token in `X-CSRF-Token`, or it is refused with 403
/// before the handler runs; bearer callers never need one (a browser does
/// not attach a bearer token on its own).
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let client = throttle::client_of(parts);
        let presents_credentials = parts.headers.contains_key(header::AUTHORIZATION)
            || parts.headers.contains_key(header::COOKIE);
        if presents_credentials {
            state
                .auth_throttle
                .check(client)
                .map_err(ApiError::Throttled)?;
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            let (caller, secret) = Caller::from_session(parts, state)
                .await?
                .ok_or(AuthError::Missing)?;
            if !parts.method.is_safe() {
                let presented = parts
                    .headers
                    .get(session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !secret.csrf_matches(presented) {
                    return Err(ApiError::Csrf);
                }
            }
            return Ok(caller);
        };
        let value = value.to_str().map_err(|_| AuthError::Invalid)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing.into());
        }
        let checked = match PresentedToken::parse(token.trim()) {
            Some(presented) => {
                let stored = state.catalog.token_credentials(presented.id()).await?;
                authenticate(&presented, stored, Timestamp::now())
            }
            None => Err(AuthError::Invalid),
        };
        match checked {
            Ok(principal) => Ok(Caller::of(principal, parts)),
            Err(refused) => Err(match state.auth_throttle.failed(client) {
                Some(wait) => ApiError::Throttled(wait),
                None => refused.into(),
            }),
        }
    }
}

/// A case id from the path. A malformed id answers 404 like an unknown one.
#[derive(Debug, Clone, Copy)]
pub struct CasePath(pub CaseId);

impl<S: Send + Sync> FromRequestParts<S> for CasePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_: PathRejection| ApiError::NotFound { what: "case" })?;
        raw.parse()
            .map(CasePath)
            .map_err(|_| ApiError::NotFound { what: "case" })
    }
}

/// Query parameters, refused with `400 invalid_query`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::InvalidQuery(e.body_text()))
    }
}

/// A type a JSON request body is read into. Bodies are objects all the way
/// down; a type names the fields where an array is the right shape.
pub trait JsonBody: DeserializeOwned {
    /// Dotted paths of fields that hold arrays.
    const ARRAYS: &'static [&'static str] = &[];
}

impl JsonBody for relay_workers::model::NewCase {}
impl JsonBody for relay_workers::model::CasePatch {}
impl JsonBody for relay_workers::model::ReportDraft {
    const ARRAYS: &'static [&'static str] = &["diagnosis_codes"];
}

/// A JSON body. Malformed JSON is `400 invalid_json`; a well-formed body
/// with a wrong, missing, unknown or invalid field is `422 invalid_field`
/// naming the field by its path.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: JsonBody, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with 'Content-Type: application/json'".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| match e {
                BytesRejection::FailedToBufferBody(inner) if is_length_limit(&inner) => {
                    ApiError::PayloadTooLarge {
                        limit: super::JSON_BODY_LIMIT,
                    }
                }
                other => ApiError::InvalidJson(other.body_text()),
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_length_limit(error: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(
        error,
        axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)
    )
}

/// Deserializes `bytes`, classifying the failure and naming the field.
///
/// Request bodies are JSON objects all the way down. serde's derived
/// structs would also accept an array and fill fields by position (so
/// `["x"]` could cancel a case); arrays are refused before that can happen.
pub fn parse_json<T: JsonBody>(bytes: &[u8]) -> Result<T, ApiError> {
    let arrays = T::ARRAYS;
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidJson(format!(
            "malformed JSON: {}",
            without_position(&e.to_string())
        ))
    })?;
    if !value.is_object() {
        return Err(ApiError::InvalidField {
            field: None,
            message: "invalid type: expected the body to be a JSON object".to_owned(),
        });
    }
    if let Some(path) = first_array(&value, String::new(), arrays) {
        return Err(ApiError::InvalidField {
            field: Some(path),
            message: "invalid type: array, expected an object or a single value".to_owned(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::InvalidField {
            field: (path != ".").then_some(path),
            message: without_position(&e.into_inner().to_string()),
        }
    })
}

/// The dotted path of the first array inside `value` that is not at one of
/// the `allowed` paths, if any.
fn first_array(value: &serde_json::Value, path: String, allowed: &[&str]) -> Option<String> {
    match value {
        serde_json::Value::Array(_) if allowed.contains(&path.as_str()) => None,
        serde_json::Value::Array(_) => Some(path),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, v)| {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            first_array(v, child, allowed)
        }),
        _ => None,
    }
}

/// serde_json appends " at line 1 column 7"; the field path says more.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_workers::model::NewCase;

    fn err(json: &str) -> ApiError {
        parse_json::<NewCase>(json.as_bytes()).expect_err("refused")
    }

    const PATIENT: &str =
        r#""patient": {"name": "J", "birth_date": "1970-01-02", "sex": "female", "mrn": "A1"}"#;

    #[test]
    fn syntax_errors_are_invalid_json() {
        assert!(matches!(err("{\"patient\": "), ApiError::InvalidJson(_)));
        assert!(matches!(err("not json"), ApiError::InvalidJson(_)));
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = err(
            r#"{"patient": {"name": "J", "birth_date": "2999-01-01", "sex": "female", "mrn": "A1"}, "specialty": "dermatology", "question": "Q"}"#,
        );
        match e {
            ApiError::InvalidField { field, message } => {
                assert_eq!(field.as_deref(), Some("patient.birth_date"));
                assert!(message.contains("future"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_invalid_fields() {
        let e = err(&format!(
            r#"{{{PATIENT}, "specialty": "dermatology", "question": "Q", "x": 1}}"#
        ));
        assert!(
            matches!(e, ApiError::InvalidField { ref message, .. } if message.contains("unknown field `x`"))
        );
        let e = err(&format!(r#"{{{PATIENT}, "specialty": "dermatology"}}"#));
        assert!(
            matches!(e, ApiError::InvalidField { ref message, .. } if message.contains("question"))
        );
        let e = err(&format!(
            r#"{{{PATIENT}, "specialty": "cardiology", "question": "Q"}}"#
        ));
        assert!(matches!(e, ApiError::InvalidField { field: Some(ref f), .. } if f == "specialty"));
    }

    #[test]
    fn arrays_never_stand_in_for_objects() {
        assert!(matches!(
            err(r#"["x"]"#),
            ApiError::InvalidField { field: None, .. }
        ));
        let nested = r#"{"patient": ["J", "1970-01-02", "female", "A1"], "specialty": "dermatology", "question": "Q"}"#;
        assert!(
            matches!(err(nested), ApiError::InvalidField { field: Some(ref f), .. } if f == "patient")
        );
    }

    #[test]
    fn arrays_are_allowed_where_a_type_names_them() {
        use relay_workers::model::ReportDraft;
        let draft: ReportDraft =
            parse_json(br#"{"impression": "benign", "diagnosis_codes": ["D22.5"]}"#)
                .expect("accepted");
        assert_eq!(draft.diagnosis_codes.len(), 1);
        let refused =
            parse_json::<ReportDraft>(br#"{"impression": ["benign"]}"#).expect_err("refused");
        assert!(
            matches!(refused, ApiError::InvalidField { field: Some(ref f), .. } if f == "impression")
        );
    }

    #[test]
    fn trailing_garbage_is_invalid_json() {
        let body =
            format!(r#"{{{PATIENT}, "specialty": "dermatology", "question": "Q"}} trailing"#);
        assert!(matches!(err(&body), ApiError::InvalidJson(_)));
    }
}
