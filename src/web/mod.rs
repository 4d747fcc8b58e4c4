//! The web pages: what office staff, specialists and administrators use
//! instead of the JSON API, served by `relay serve` itself.
//!
//! Pages are rendered on the server (maud escapes everything) from the same
//! scoped, audited catalog calls the API makes, so a case outside the
//! caller's scope is a 404 page exactly as it is a 404 answer. What a page
//! changes, its small scripts (`assets/`) change through the JSON API,
//! which accepts the session cookie with a CSRF header ([`session`]):
//! uploads, claims, draft autosave, signing and acknowledging go through
//! the one audited handler each already has.
//!
//! Every page answers with `Cache-Control: no-store` and a Content Security
//! Policy that allows only this origin's scripts, styles and images and no
//! inline script. Patient data never appears in a URL: pages are addressed
//! by ids, and searches go in POST bodies.

mod admin;
mod assets;
mod layout;
mod office;
mod page;
pub mod session;
mod sign_in;
mod specialist;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{Next, from_fn};
use axum::response::Response;
use axum::routing::{get, post};

use crate::http::AppState;

/// What a page may load: this origin only, no inline script, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// A rendered page.
pub type Html = axum::response::Html<String>;

fn html_page(markup: maud::Markup) -> Html {
    axum::response::Html(markup.into_string())
}

/// The routes of the pages and their assets.
pub fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(page::home))
        .route("/sign-in", get(sign_in::form).post(sign_in::sign_in))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/office", get(office::cases))
        .route("/office/cases/new", get(office::new_case))
        .route("/office/cases/{id}", get(office::case))
        .route("/specialist", get(specialist::worklist))
        .route("/specialist/cases/{id}", get(specialist::case))
        .route("/admin", get(admin::overview))
        .route("/admin/offices", get(admin::offices))
        .route("/admin/users", get(admin::users))
        .route("/admin/tokens", get(admin::tokens))
        .route("/admin/jobs", get(admin::jobs))
        .route("/admin/reprocess", get(admin::reprocess))
        .route("/admin/audit", get(admin::audit).post(admin::audit_search))
        .layer(from_fn(page_headers));
    pages.route("/assets/{name}", get(assets::asset))
}

/// Headers every page carries: no caching of patient data anywhere, the
/// content policy, and no referrer leaving the site.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
