//! The office's pages: its cases, a new referral, and one case — images,
//! questions, the report.

use axum::extract::State;
use maud::{Markup, html};
use relay_workers::catalog::{CaseQuery, CatalogError};
use relay_workers::model::{Case, CaseStatus, Image, Report, Timestamp};
use serde::Deserialize;

use super::layout::{self, paragraphs, time};
use super::page::{Page, PageError};
use super::{Html, html_page};
use crate::http::AppState;
use crate::http::extract::{ApiQuery, CasePath};

const PER_PAGE: u32 = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    page: Option<u32>,
}

/// `GET /office`: the office's cases, newest first, and what it has been told.
pub async fn cases(
    State(state): State<AppState>,
    page: Page,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Html, PageError> {
    let office = page.caller.office()?;
    let number = params.page.unwrap_or(1).max(1);
    let query = CaseQuery {
        status: None,
        page: number,
        per_page: PER_PAGE,
    };
    let cases = state
        .catalog
        .list_cases(&page.caller.audit, page.caller.scope(), &query)
        .await?;
    let unread = state.catalog.notifications(office, true).await?;
    let now = Timestamp::now();
    let pages = cases.total.div_ceil(u64::from(PER_PAGE)).max(1);
    let body = html! {
        div.title-row {
            h1 { "Cases" }
            a.button.primary href="/office/cases/new" { "New case" }
        }
        @if !unread.is_empty() {
            section.notices aria-label="Notifications" {
                h2 { "New for your office" }
                ul {
                    @for n in &unread {
                        li { a href=(format!("/office/cases/{}", n.case_id)) { (notice(&n.event)) } " · " (time(Some(n.created_at))) }
                    }
                }
            }
        }
        @if cases.items.is_empty() {
            p.muted { "No cases yet. Start with " a href="/office/cases/new" { "a new case" } "." }
        } @else {
            div.table-wrap {
                table #cases {
                    thead { tr { th { "Patient" } th { "Specialty" } th { "Priority" } th { "Status" } th { "Created" } th { "Due" } } }
                    tbody {
                        @for case in &cases.items {
                            tr class=[case.is_overdue(now).then_some("overdue")] {
                                td { a href=(format!("/office/cases/{}", case.id)) { (case.patient.name.as_str()) } }
                                td { (case.specialty.as_str()) }
                                td { (layout::priority(case.priority)) }
                                td { (layout::status(case.status)) }
                                td { (time(Some(case.created_at))) }
                                td { (time(case.due_at)) @if case.is_overdue(now) { " " span.badge.late { "overdue" } } }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager aria-label="Pages" {
                    @if number > 1 { a href=(format!("/office?page={}", number - 1)) { "Newer" } }
                    span { "Page " (number) " of " (pages) }
                    @if u64::from(number) < pages { a href=(format!("/office?page={}", number + 1)) { "Older" } }
                }
            }
        }
    };
    Ok(html_page(layout::page(&page, "Cases", &[], body)))
}

fn notice(event: &str) -> &'static str {
    match event {
        "report_signed" => "A report is ready",
        "addendum_signed" => "An addendum was added to a report",
        "info_requested" => "A specialist asks a question",
        "case_overdue" => "A case is past its due time",
        _ => "Something changed on a case",
    }
}

fn text_field(name: &str, label: &str, hint: &str) -> Markup {
    html! {
        label for=(name) { (label) @if !hint.is_empty() { " " span.muted { (hint) } } }
        input id=(name) name=(name) type="text" autocomplete="off";
    }
}

/// `GET /office/cases/new`: the referral form. Its script posts it as JSON
/// to `POST /api/v1/cases` and opens the new case.
pub async fn new_case(page: Page) -> Result<Html, PageError> {
    page.caller.office()?;
    let body = html! {
        h1 { "New case" }
        form.case-form #new-case data-api-form="POST /api/v1/cases" data-then="case" novalidate {
            fieldset {
                legend { "Patient" }
                div.grid2 {
                    div { label for="patient.name" { "Name" } input id="patient.name" name="patient.name" type="text" required autocomplete="off"; }
                    div { label for="patient.mrn" { "Medical record number" } input id="patient.mrn" name="patient.mrn" type="text" required autocomplete="off"; }
                    div { label for="patient.birth_date" { "Date of birth" } input id="patient.birth_date" name="patient.birth_date" type="date" required; }
                    div {
                        label for="patient.sex" { "Sex" }
                        select id="patient.sex" name="patient.sex" required {
                            option value="" { "Choose…" }
                            option value="female" { "Female" }
                            option value="male" { "Male" }
                            option value="other" { "Other" }
                            option value="unknown" { "Unknown" }
                        }
                    }
                }
            }
            fieldset {
                legend { "Referral" }
                div.grid2 {
                    div {
                        label for="specialty" { "Specialty" }
                        select #specialty name="specialty" required {
                            option value="dermatology" { "Dermatology (photos)" }
                            option value="radiology" { "Radiology (DICOM)" }
                        }
                    }
                    div {
                        label for="priority" { "Priority" }
                        select #priority name="priority" {
                            option value="routine" { "Routine" }
                            option value="urgent" { "Urgent" }
                            option value="stat" { "Stat" }
                        }
                    }
                }
                label for="question" { "Clinical question" }
                textarea #question name="question" rows="3" required {}
                label for="history" { "History" }
                textarea #history name="history" rows="4" {}
            }
            fieldset {
                legend { "Examination" }
                div.grid2 {
                    div { (text_field("clinical.body_site", "Body site", "(dermatology)")) }
                    div { (text_field("clinical.duration", "Duration", "")) }
                    div { (text_field("clinical.modality", "Modality", "(radiology, e.g. CT)")) }
                    div { (text_field("clinical.body_part", "Body part", "(radiology)")) }
                    div { (text_field("clinical.medications", "Medications", "")) }
                    div { (text_field("clinical.allergies", "Allergies", "")) }
                }
            }
            p.form-error role="alert" {}
            button.primary type="submit" { "Create case" }
        }
    };
    Ok(html_page(layout::page(&page, "New case", &[], body)))
}

/// The case's header and the referral as written.
pub fn referral(case: &Case, now: Timestamp) -> Markup {
    let c = &case.clinical;
    let clinical = [
        ("Body site", c.body_site.as_ref().map(|v| v.as_str())),
        ("Duration", c.duration.as_ref().map(|v| v.as_str())),
        ("Modality", c.modality.as_ref().map(|v| v.as_str())),
        ("Body part", c.body_part.as_ref().map(|v| v.as_str())),
        ("Medications", c.medications.as_ref().map(|v| v.as_str())),
        ("Allergies", c.allergies.as_ref().map(|v| v.as_str())),
    ];
    html! {
        dl.facts {
            dt { "Status" } dd { (layout::status(case.status)) }
            dt { "Priority" } dd { (layout::priority(case.priority)) }
            dt { "Specialty" } dd { (case.specialty.as_str()) }
            dt { "Due" } dd { (time(case.due_at)) @if case.is_overdue(now) { " " span.badge.late { "overdue" } } }
            @for (label, value) in clinical {
                @if let Some(value) = value { dt { (label) } dd { (value) } }
            }
        }
        h2 { "Question" }
        (paragraphs(case.question.as_str()))
        h2 { "History" }
        (paragraphs(case.history.as_str()))
    }
}

/// A signed report, for the office and for the specialist after signing.
pub fn report_view(case: &Case, report: &Report) -> Markup {
    let c = &report.content;
    html! {
        section.report #report aria-label="Report" {
            h2 { "Report" }
            p.muted { "Signed " (time(report.signed_at)) }
            h3 { "Findings" } (paragraphs(c.findings.as_str()))
            h3 { "Impression" } (paragraphs(c.impression.as_str()))
            h3 { "Recommendation" } (paragraphs(c.recommendation.as_str()))
            h3 { "In-person visit" }
            p { (match c.in_person_visit.as_str() { "routine" => "Yes, routine", "urgent" => "Yes, urgently", _ => "Not needed" }) }
            @if !c.diagnosis_codes.is_empty() {
                h3 { "Diagnosis codes" }
                p { @for code in &c.diagnosis_codes { code { (String::from(code.clone())) } " " } }
            }
            @for addendum in &report.addenda {
                h3 { "Addendum, " (time(Some(addendum.signed_at))) }
                (paragraphs(&addendum.text))
            }
            p.seal { "sha256 " (report.sha256.map(|s| s.to_hex()).unwrap_or_default()) }
            p { a.button href=(format!("/api/v1/cases/{}/report.html", case.id)) target="_blank" rel="noopener" { "Print report" } }
        }
    }
}

/// One image as the office sees it: the receipt.
fn receipt(image: &Image) -> Markup {
    let stripped = image.sha256 != image.stored_sha256;
    html! {
        li.receipt data-image=(image.id) {
            (super::specialist::thumb_img(image))
            div {
                strong { (image.filename.as_deref().unwrap_or("(no name)")) }
                " " span.muted { (image.media_type.as_str()) ", " (image.size) " bytes" }
                br;
                span.digest title=(image.sha256.to_hex()) { "sha256 " (image.sha256.to_hex()) }
                @if stripped { br; span.badge.ok { "location removed" } }
            }
        }
    }
}

/// `GET /office/cases/{id}`
pub async fn case(
    State(state): State<AppState>,
    page: Page,
    CasePath(id): CasePath,
) -> Result<Html, PageError> {
    page.caller.office()?;
    let (ctx, scope) = (&page.caller.audit, page.caller.scope());
    let case = state.catalog.get_case(ctx, scope, id).await?;
    let images = state.catalog.list_images(ctx, scope, id).await?;
    let messages = state.catalog.case_messages(ctx, scope, id).await?;
    let history = state.catalog.case_history(ctx, scope, id).await?;
    let report = match case.status {
        CaseStatus::Reported | CaseStatus::Acknowledged => {
            match state.catalog.get_report(ctx, scope, id, false).await {
                Ok(report) => Some(report),
                Err(CatalogError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        }
        _ => None,
    };
    let now = Timestamp::now();
    let uploads_open = matches!(case.status, CaseStatus::Draft | CaseStatus::InfoRequested);
    let body = html! {
        div.title-row {
            h1 { (case.patient.name.as_str()) }
            span.muted { "born " (String::from(case.patient.birth_date)) " · " (case.patient.sex.as_str()) " · MRN " (case.patient.mrn.as_str()) }
        }
        div.case-grid {
            div {
                @if let Some(report) = &report {
                    (report_view(&case, report))
                    @if case.status == CaseStatus::Reported {
                        button.primary #acknowledge data-action=(format!("POST /api/v1/cases/{}/acknowledge", case.id)) data-then="reload" { "Acknowledge: I have read this report" }
                    } @else {
                        p.ok { "Acknowledged " (time(case.acknowledged_at)) }
                    }
                }
                @if !messages.is_empty() {
                    section aria-label="Questions and answers" {
                        h2 { "Questions and answers" }
                        ol.messages {
                            @for m in &messages {
                                li class=(m.kind) { strong { (if m.kind == "question" { "Specialist asks" } else { "Office answered" }) } " · " (time(Some(m.created_at))) (paragraphs(&m.text)) }
                            }
                        }
                    }
                }
                @if case.status == CaseStatus::InfoRequested {
                    form.stack #answer data-api-form=(format!("POST /api/v1/cases/{}/answer", case.id)) data-then="reload" {
                        label for="answer-text" { "Your answer (add images below first if asked)" }
                        textarea #answer-text name="text" rows="4" required {}
                        p.form-error role="alert" {}
                        button.primary type="submit" { "Send answer" }
                    }
                }
                section aria-label="Images" {
                    h2 { "Images" }
                    ul.receipts #images {
                        @for image in &images { (receipt(image)) }
                    }
                    @if images.is_empty() { p.muted #no-images { "No images yet." } }
                    @if uploads_open {
                        (upload_area(&case))
                    }
                }
                @if case.status == CaseStatus::Draft {
                    div.actions {
                        button.primary #submit-case data-action=(format!("POST /api/v1/cases/{}/submit", case.id)) data-then="reload" { "Submit to " (case.specialty.as_str()) }
                    }
                }
            }
            aside {
                (referral(&case, now))
                h2 { "Timeline" }
                ol.history {
                    @for h in &history {
                        li { (time(Some(h.at))) " · " (h.to_status) }
                    }
                }
            }
        }
    };
    Ok(html_page(layout::page(&page, "Case", &["upload.js"], body)))
}

fn upload_area(case: &Case) -> Markup {
    html! {
        div.upload #upload data-case=(case.id) {
            p #drop-zone.drop-zone tabindex="0" {
                "Drop photos or DICOM files here, or "
                label.link for="files" { "choose files" }
                "."
            }
            input #files type="file" multiple accept="image/jpeg,image/png,application/dicom,.dcm";
            ul.progress-list #upload-list aria-live="polite" {}
        }
    }
}
