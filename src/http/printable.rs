//! The report as a page for the patient's chart: printable, self-contained
//! (no scripts, no external styles), escaped by the template engine.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use relay_workers::model::{Case, InPersonVisit, Principal, Report};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, CasePath};

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:46em;margin:2em auto;color:#111}\
h1{font-size:1.4em}h2{font-size:1.05em;margin-top:1.4em;border-bottom:1px solid #999}\
dl{display:grid;grid-template-columns:12em 1fr;gap:.2em 1em}dt{color:#555}\
.seal{font:11px monospace;color:#555;word-break:break-all}@media print{body{margin:0}}";

fn visit(v: InPersonVisit) -> &'static str {
    match v {
        InPersonVisit::NotNeeded => "Not needed",
        InPersonVisit::Routine => "Yes, routine",
        InPersonVisit::Urgent => "Yes, urgently",
    }
}

fn page(case: &Case, report: &Report) -> Markup {
    let c = &report.content;
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Consult report " (case.id) }
                style { (STYLE) }
            }
            body {
                h1 { "Consult report — " (case.specialty.as_str()) }
                dl {
                    dt { "Patient" } dd { (case.patient.name.as_str()) }
                    dt { "Date of birth" } dd { (String::from(case.patient.birth_date)) }
                    dt { "MRN" } dd { (case.patient.mrn.as_str()) }
                    dt { "Case" } dd { (case.id) }
                    dt { "Signed" } dd { (report.signed_at.map(|t| t.to_rfc3339()).unwrap_or_default()) }
                }
                h2 { "Question" } p { (case.question.as_str()) }
                h2 { "Findings" } p { (c.findings.as_str()) }
                h2 { "Impression" } p { (c.impression.as_str()) }
                h2 { "Recommendation" } p { (c.recommendation.as_str()) }
                h2 { "In-person visit" } p { (visit(c.in_person_visit)) }
                @if !c.diagnosis_codes.is_empty() {
                    h2 { "Diagnosis codes" }
                    p { @for code in &c.diagnosis_codes { (String::from(code.clone())) " " } }
                }
                @for addendum in &report.addenda {
                    h2 { "Addendum, " (addendum.signed_at.to_rfc3339()) }
                    p { (addendum.text) }
                    p.seal { "sha256 " (addendum.sha256) }
                }
                p.seal { "Signed report sha256 " (report.sha256.map(|s| s.to_hex()).unwrap_or_default()) }
            }
        }
    }
}

/// `GET /api/v1/cases/{id}/report.html`: the signed report, printable.
#[utoipa::path(get, path = "/api/v1/cases/{id}/report.html", tag = "consult", params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The report as a printable page", content_type = "text/html"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn printable(
    State(state): State<AppState>,
    caller: Caller,
    CasePath(id): CasePath,
) -> Result<Response, ApiError> {
    let include_draft = matches!(caller.principal, Principal::Specialist { .. });
    let report = state
        .catalog
        .get_report(&caller.audit, caller.scope(), id, include_draft)
        .await?;
    let case = state
        .catalog
        .get_case(&caller.audit, caller.scope(), id)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(&case, &report).into_string(),
    )
        .into_response())
}
