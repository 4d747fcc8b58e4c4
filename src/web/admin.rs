//! The administrators' pages: accounts, webhook settings, the job queue,
//! reprocess runs and the audit trail. They read what the CLI and the admin
//! API read; their buttons call the admin API (retry, cancel, start a run).

use axum::Form;
use axum::extract::State;
use chrono::NaiveDate;
use maud::{Markup, html};
use relay_workers::audit::{AuditEvent, AuditFilter};
use relay_workers::model::Timestamp;
use relay_workers::queue::{JobFilter, JobState};
use serde::Deserialize;

use super::layout::{self, time};
use super::page::{Page, PageError};
use super::{Html, html_page};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::extract::ApiQuery;

fn admin_page(page: &Page, title: &str, body: Markup) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    Ok(html_page(layout::page(page, title, &[], body)))
}

/// `GET /admin`: the queue at a glance and where to go.
pub async fn overview(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let stats = state.catalog.queue_stats().await?;
    let body = html! {
        h1 { "Administration" }
        h2 { "Job queue" }
        div.table-wrap {
            table {
                thead { tr { th { "Kind" } th { "Queued" } th { "Running" } th { "Dead" } th { "Oldest waiting" } } }
                tbody {
                    @for s in &stats {
                        tr class=[(s.dead > 0).then_some("overdue")] {
                            td { (s.kind) } td { (s.queued) } td { (s.running) }
                            td { @if s.dead > 0 { a href="/admin/jobs?state=dead" { (s.dead) } } @else { "0" } }
                            td { (format!("{:.0} s", s.oldest_queued_seconds)) }
                        }
                    }
                }
            }
        }
        @if stats.is_empty() { p.muted { "No jobs yet." } }
    };
    admin_page(&page, "Administration", body)
}

/// `GET /admin/offices`: offices with their webhook and e-mail settings
/// (never the signing secret).
pub async fn offices(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let offices = state.catalog.list_offices().await?;
    let mut rows = Vec::with_capacity(offices.len());
    for office in offices {
        let webhook = state.catalog.office_webhook(office.id).await?;
        let email = state.catalog.office_notify_email(office.id).await?;
        rows.push((office, webhook, email));
    }
    let body = html! {
        h1 { "Offices" }
        p.muted { "Create offices and change their settings with " code { "relay admin office …" } "." }
        div.table-wrap {
            table #offices {
                thead { tr { th { "Name" } th { "Id" } th { "Webhook" } th { "Patient name in events" } th { "E-mail notices" } th { "Created" } } }
                tbody {
                    @for (office, webhook, email) in &rows {
                        tr {
                            td { (office.name.as_str()) }
                            td { code { (office.id) } }
                            td { @if let Some(w) = webhook { code { (w.url) } } @else { span.muted { "none" } } }
                            td { @if webhook.as_ref().is_some_and(|w| w.include_patient_name) { "included" } @else { "omitted" } }
                            td { (email.as_deref().unwrap_or("—")) }
                            td { (time(Some(office.created_at))) }
                        }
                    }
                }
            }
        }
    };
    admin_page(&page, "Offices", body)
}

/// `GET /admin/users`
pub async fn users(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let users = state.catalog.list_users(None).await?;
    let body = html! {
        h1 { "Users" }
        p.muted { "Create users with " code { "relay admin user create" } "." }
        div.table-wrap {
            table #users {
                thead { tr { th { "Name" } th { "Role" } th { "Office" } th { "Specialty" } th { "Id" } th { "Created" } } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.name.as_str()) } td { (u.role.as_str()) }
                            td { @if let Some(o) = u.office { code { (o) } } @else { "—" } }
                            td { (u.specialty.map(|s| s.as_str()).unwrap_or("—")) }
                            td { code { (u.id) } }
                            td { (time(Some(u.created_at))) }
                        }
                    }
                }
            }
        }
    };
    admin_page(&page, "Users", body)
}

/// `GET /admin/tokens`: tokens and their state (never secrets or digests).
pub async fn tokens(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let tokens = state.catalog.list_tokens(None).await?;
    let now = Timestamp::now();
    let body = html! {
        h1 { "Tokens" }
        p.muted { "Issue and revoke tokens with " code { "relay admin token create" } " and " code { "relay admin token revoke" } "; revoking a token also ends the browser sessions signed in with it." }
        div.table-wrap {
            table #tokens {
                thead { tr { th { "Token" } th { "User" } th { "Created" } th { "Expires" } th { "State" } } }
                tbody {
                    @for t in &tokens {
                        tr {
                            td { code { (t.id) } } td { code { (t.user_id) } }
                            td { (time(Some(t.created_at))) } td { (time(t.expires_at)) }
                            td {
                                @if t.revoked_at.is_some() { span.badge.late { "revoked" } }
                                @else if t.expires_at.is_some_and(|e| e <= now) { span.badge.late { "expired" } }
                                @else { span.badge.ok { "active" } }
                            }
                        }
                    }
                }
            }
        }
    };
    admin_page(&page, "Tokens", body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    state: Option<String>,
}

/// `GET /admin/jobs?state=`: the queue, dead jobs with retry buttons.
pub async fn jobs(
    State(state): State<AppState>,
    page: Page,
    ApiQuery(params): ApiQuery<JobParams>,
) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let wanted = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(JobState::parse)
        .transpose()
        .map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
    let jobs = state
        .catalog
        .list_jobs(&JobFilter {
            state: wanted,
            kind: None,
            limit: 200,
        })
        .await?;
    let states = ["", "queued", "running", "dead", "done", "cancelled"];
    let body = html! {
        div.title-row {
            h1 { "Jobs" }
            button #retry-dead data-action="POST /api/v1/admin/jobs/retry-dead" data-then="reload" { "Retry every dead job" }
        }
        nav.filters aria-label="Job state" {
            @for s in states {
                @let current = wanted.map(|w| w.as_str()).unwrap_or("") == s;
                a href=(format!("/admin/jobs?state={s}")) aria-current=[current.then_some("page")] { (if s.is_empty() { "all" } else { s }) }
            }
        }
        div.table-wrap {
            table #jobs {
                thead { tr { th { "Id" } th { "Kind" } th { "State" } th { "Attempts" } th { "Last error" } th { "Updated" } th { "" } } }
                tbody {
                    @for job in &jobs {
                        tr class=[(job.state == JobState::Dead).then_some("overdue")] {
                            td { (job.id) } td { (job.kind) } td { (job.state.as_str()) }
                            td { (job.attempts) "/" (job.max_attempts) }
                            td.error-text { (job.last_error.as_deref().unwrap_or("")) }
                            td { (time(Some(job.updated_at))) }
                            td {
                                @if matches!(job.state, JobState::Dead | JobState::Cancelled) {
                                    button data-action=(format!("POST /api/v1/admin/jobs/{}/retry", job.id)) data-then="reload" { "Retry" }
                                }
                                @if matches!(job.state, JobState::Queued | JobState::Dead) {
                                    " " button data-action=(format!("POST /api/v1/admin/jobs/{}/cancel", job.id)) data-then="reload" data-confirm="Cancel this job? It will not run." { "Cancel" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if jobs.is_empty() { p.muted { "No jobs in this state." } }
    };
    admin_page(&page, "Jobs", body)
}

/// `GET /admin/reprocess`: batch runs, and buttons that start one.
pub async fn reprocess(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let runs = state.catalog.list_runs(50).await?;
    let body = html! {
        div.title-row {
            h1 { "Reprocess runs" }
            div.actions {
                button #start-verify data-action="POST /api/v1/admin/reprocess" data-body=r#"{"kind":"verify"}"# data-then="reload" data-confirm="Re-hash every stored blob now? It runs on the job queue." { "Verify every blob" }
                button #start-rederive data-action="POST /api/v1/admin/reprocess" data-body=r#"{"kind":"rederive"}"# data-then="reload" data-confirm="Queue derive again for stale images?" { "Re-derive stale images" }
            }
        }
        div.table-wrap {
            table #runs {
                thead { tr { th { "Id" } th { "Kind" } th { "State" } th { "Scanned" } th { "OK" } th { "Failed" } th { "Started" } th { "Finished" } } }
                tbody {
                    @for run in &runs {
                        tr class=[(run.counts.failed > 0).then_some("overdue")] {
                            td { code { (run.id) } } td { (run.kind.as_str()) }
                            td { (format!("{:?}", run.state).to_lowercase()) }
                            td { (run.counts.scanned) } td { (run.counts.ok) } td { (run.counts.failed) }
                            td { (time(Some(run.started_at))) } td { (time(run.finished_at)) }
                        }
                    }
                }
            }
        }
        @if runs.is_empty() { p.muted { "No runs yet." } }
    };
    admin_page(&page, "Reprocess", body)
}

/// The audit search form; values come back in the POST body, never a URL.
#[derive(Debug, Default, Deserialize)]
pub struct AuditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    object_id: String,
    #[serde(default)]
    office_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

fn some(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn day(text: &str, field: &str) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = some(text) else {
        return Ok(None);
    };
    let date =
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|_| ApiError::InvalidField {
            field: Some(field.to_owned()),
            message: format!("{field} must be a date"),
        })?;
    Ok(date
        .and_hms_opt(0, 0, 0)
        .map(|dt| Timestamp::from(dt.and_utc())))
}

impl AuditForm {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        let office_id = some(&self.office_id)
            .map(|o| o.parse())
            .transpose()
            .map_err(|_| ApiError::InvalidField {
                field: Some("office_id".to_owned()),
                message: "office id must be a UUID".to_owned(),
            })?;
        Ok(AuditFilter {
            actor: some(&self.actor),
            action: some(&self.action),
            object_id: some(&self.object_id),
            office_id,
            since: day(&self.since, "since")?,
            // Until the end of that day.
            until: day(&self.until, "until")?
                .map(|t| Timestamp::from_millis(t.as_millis() + 86_400_000)),
            before_id: None,
            limit: 200,
        })
    }
}

fn audit_body(page: &Page, form: &AuditForm, events: &[AuditEvent]) -> Markup {
    html! {
        h1 { "Audit trail" }
        form.audit-search #audit-search method="post" action="/admin/audit" {
            input type="hidden" name="csrf" value=(page.csrf);
            div.grid3 {
                div { label for="actor" { "Actor (user id)" } input #actor name="actor" value=(form.actor); }
                div { label for="action" { "Action (case.read, or case.)" } input #action name="action" value=(form.action); }
                div { label for="object_id" { "Object id" } input #object_id name="object_id" value=(form.object_id); }
                div { label for="office_id" { "Office id" } input #office_id name="office_id" value=(form.office_id); }
                div { label for="since" { "From" } input #since name="since" type="date" value=(form.since); }
                div { label for="until" { "To" } input #until name="until" type="date" value=(form.until); }
            }
            button.primary type="submit" { "Search" }
        }
        p.muted { (events.len()) " events, newest first (at most 200). The search itself is recorded." }
        div.table-wrap {
            table #audit {
                thead { tr { th { "#" } th { "When" } th { "Actor" } th { "Role" } th { "Action" } th { "Object" } th { "Office" } th { "From" } th { "Request" } } }
                tbody {
                    @for e in events {
                        tr {
                            td { (e.id) } td { (time(Some(e.occurred_at))) }
                            td { code { (e.actor) } } td { (e.actor_role) } td { (e.action) }
                            td { code { (e.object_id.as_deref().unwrap_or("")) } }
                            td { code { (e.office_id.map(|o| o.to_string()).unwrap_or_default()) } }
                            td { (e.remote_addr) }
                            td.small { (e.request_id.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /admin/audit`: the latest events.
pub async fn audit(State(state): State<AppState>, page: Page) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    let form = AuditForm::default();
    let events = state
        .catalog
        .list_audit(&page.caller.audit, &form.filter()?)
        .await?;
    let body = audit_body(&page, &form, &events);
    admin_page(&page, "Audit", body)
}

/// `POST /admin/audit`: a search, its filters in the body.
pub async fn audit_search(
    State(state): State<AppState>,
    page: Page,
    Form(form): Form<AuditForm>,
) -> Result<Html, PageError> {
    page.caller.require_admin()?;
    if !page.csrf_matches(&form.csrf) {
        return Err(ApiError::Csrf.into());
    }
    let events = state
        .catalog
        .list_audit(&page.caller.audit, &form.filter()?)
        .await?;
    let body = audit_body(&page, &form, &events);
    admin_page(&page, "Audit", body)
}
