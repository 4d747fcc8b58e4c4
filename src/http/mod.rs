//! The HTTP front door: routes, middleware and the OpenAPI document.
//!
//! Every `/api/v1` route is registered through utoipa's router, so a route
//! cannot exist without its entry in `/api/v1/openapi.json`.

mod audit;
mod cases;
mod consult;
pub(crate) mod drain;
pub mod error;
pub(crate) mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod health;
pub(crate) mod images;
mod jobs;
mod me;
pub mod metrics;
pub(crate) mod openapi;
mod printable;
pub(crate) mod renditions;
mod reprocess;
pub mod serve;
pub mod throttle;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use relay_workers::blob::BlobStore;
use relay_workers::catalog::Catalog;
use relay_workers::ingest::Ingest;
use relay_workers::queue::{JobWaker, RunnerStats};
use relay_workers::session::SessionPolicy;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::error::ApiError;
use self::metrics::Metrics;
use self::openapi::ApiDoc;

/// The largest JSON body the API accepts.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach. Cheap to clone: all shared.
#[derive(Clone)]
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub blobs: Arc<dyn BlobStore>,
    pub ingest: Ingest,
    pub metrics: Arc<Metrics>,
    /// The in-process worker's counters, when this process runs one.
    pub runner_stats: Option<Arc<RunnerStats>>,
    /// How long a specialist's claim lasts unless renewed.
    pub claim_lease: Duration,
    /// Wakes this process's worker when a request queues a job.
    pub worker_wake: Option<JobWaker>,
    /// Resumable (tus) uploads in progress, kept in the data directory.
    pub uploads: Arc<relay_workers::resumable::Resumable>,
    /// How long an untouched resumable upload is kept.
    pub upload_ttl: Duration,
    /// Whether session cookies are marked `Secure` (the site is served over
    /// TLS: its public URL is `https://`).
    pub secure_cookies: bool,
    /// How long web page sessions last.
    pub sessions: SessionPolicy,
    /// Failed token authentications per client address.
    pub auth_throttle: Arc<throttle::AuthThrottle>,
}

impl AppState {
    /// A request queued a job: let the in-process worker start it now
    /// rather than at its next poll.
    pub fn work_queued(&self) {
        if let Some(wake) = &self.worker_wake {
            wake.wake();
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("blobs", &self.blobs.describe())
            .finish_non_exhaustive()
    }
}

/// JSON routes: small bodies, a deadline.
fn json_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(cases::create_case, cases::list_cases))
        .routes(routes!(cases::get_case, cases::update_case))
        .routes(routes!(cases::cancel_case))
        .routes(routes!(images::submit_case))
        .routes(routes!(images::list_images))
        .routes(routes!(images::list_studies))
        .routes(routes!(images::get_image))
        .routes(routes!(consult::worklist))
        .routes(routes!(consult::claim))
        .routes(routes!(consult::renew))
        .routes(routes!(consult::release))
        .routes(routes!(consult::save_draft, consult::report))
        .routes(routes!(consult::sign))
        .routes(routes!(printable::printable))
        .routes(routes!(consult::addendum))
        .routes(routes!(consult::request_info))
        .routes(routes!(consult::answer))
        .routes(routes!(consult::acknowledge))
        .routes(routes!(consult::messages))
        .routes(routes!(consult::history))
        .routes(routes!(consult::notifications))
        .routes(routes!(audit::list_audit))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::retry_dead))
        .routes(routes!(reprocess::start_run, reprocess::list_runs))
        .routes(routes!(reprocess::get_run))
        .routes(routes!(me::me))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
}

/// Streaming routes: image bytes in and out. Ingest bounds uploads itself,
/// so these have no body limit and no request deadline.
fn streaming_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(images::upload_images))
        .routes(routes!(uploads::discover, uploads::create))
        .routes(routes!(uploads::status, uploads::patch, uploads::terminate))
        .routes(routes!(images::get_original))
        .routes(routes!(renditions::thumbnail))
        .routes(routes!(renditions::preview))
        .routes(routes!(renditions::frame))
}

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(json_routes())
        .merge(streaming_routes())
        .merge(crate::dicomweb::routes())
        .split_for_parts();
    openapi::add_shared_answers(&mut api);
    api
}

/// The complete HTTP service.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let json = json_routes()
        .layer(from_fn_with_state(request_timeout, deadline))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT));
    let streaming = streaming_routes().layer(DefaultBodyLimit::disable());
    let dicomweb = crate::dicomweb::routes().layer(DefaultBodyLimit::disable());
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(json)
        .merge(streaming)
        .merge(dicomweb)
        .split_for_parts();
    openapi::add_shared_answers(&mut api);
    let api_json: Arc<str> = api.to_pretty_json().unwrap_or_default().into();
    // Images are already compressed; DICOM is served with ranges.
    let compress = DefaultPredicate::new()
        .and(NotForContentType::const_new("application/dicom"))
        .and(NotForContentType::const_new("multipart/related"));
    let middleware = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".to_owned()).into_response()
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(CompressionLayer::new().compress_when(compress));
    router
        .merge(crate::web::router())
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    api_json.to_string(),
                )
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

/// The span every log line of a request is written in: ids, never content.
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or("unmatched");
    tracing::info_span!(
        "request",
        request.id = %request_id,
        http.method = %request.method(),
        http.route = %route,
        user.id = tracing::field::Empty,
    )
}

/// Answers `408 timeout` when a request runs past the configured time. The
/// handler's future is dropped, which rolls back any open transaction.
async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
