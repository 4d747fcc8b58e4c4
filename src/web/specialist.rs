//! The specialist's pages: the worklist, and the case view where images
//! are read (viewer), the question and history sit beside them, and the
//! report is written (autosaved to the server's draft) and signed.

use axum::extract::State;
use maud::{Markup, html};
use relay_workers::catalog::CatalogError;
use relay_workers::model::{
    Case, CaseStatus, DeriveState, Image, MediaType, Report, Study, Timestamp, UserId,
    WorklistQuery, group_studies,
};

use super::layout::{self, age, paragraphs, time};
use super::office::{referral, report_view};
use super::page::{Page, PageError};
use super::{Html, html_page};
use crate::http::AppState;
use crate::http::extract::{ApiQuery, CasePath};
use serde::Deserialize;

/// How often the worklist page refreshes its table, in seconds, unless
/// `?refresh=` asks for another pace (1 to 600).
const WORKLIST_REFRESH: u32 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorklistParams {
    refresh: Option<u32>,
}

/// `GET /specialist`: the specialty's waiting cases, by priority, overdue
/// first, then by waiting time; no names.
pub async fn worklist(
    State(state): State<AppState>,
    page: Page,
    ApiQuery(params): ApiQuery<WorklistParams>,
) -> Result<Html, PageError> {
    let (me, specialty) = page.caller.specialist()?;
    let refresh = params.refresh.unwrap_or(WORKLIST_REFRESH).clamp(1, 600);
    let query = WorklistQuery {
        page: 1,
        per_page: 100,
        ..WorklistQuery::default()
    };
    let list = state
        .catalog
        .worklist(&page.caller.audit, me, specialty, &query)
        .await?;
    let now = Timestamp::now();
    let body = html! {
        div.title-row {
            h1 { "Worklist · " (specialty.as_str()) }
            span.muted #refreshed { "Updated " (time(Some(now))) }
        }
        div.table-wrap #worklist data-refresh=(refresh) {
            @if list.items.is_empty() {
                p.muted { "Nothing is waiting." }
            } @else {
                table {
                    thead { tr { th { "Priority" } th { "Patient" } th { "Question" } th { "Images" } th { "Waiting" } th { "Due" } th { "" } } }
                    tbody {
                        @for item in &list.items {
                            tr class=[item.overdue.then_some("overdue")] {
                                td { (layout::priority(item.priority)) }
                                td { (item.patient_age) " y, " (item.patient_sex.as_str()) }
                                td.question { (excerpt(&item.question, 140)) }
                                td { (item.image_count) }
                                td { (age(item.queued_at, now)) }
                                td { (time(item.due_at)) @if item.overdue { " " span.badge.late { "overdue" } } }
                                td {
                                    a.button href=(format!("/specialist/cases/{}", item.case_id)) {
                                        @if item.claimed_by == Some(me) { "Continue" } @else { "Open" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_page(layout::page(&page, "Worklist", &[], body)))
}

fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An image's thumbnail, or a placeholder the page script fills in once
/// derive has made it.
pub fn thumb_img(image: &Image) -> Markup {
    let src = format!("/api/v1/images/{}/thumbnail", image.id);
    let alt = image.filename.as_deref().unwrap_or("image");
    html! {
        @match image.derive_state {
            DeriveState::Ready => img.thumb src=(src) alt=(alt);
            DeriveState::Pending => img.thumb.pending data-src=(src) data-image=(image.id) alt=(alt);
            _ => span.thumb.none title=(image.derive_error.as_deref().unwrap_or("")) { "no preview" },
        }
    }
}

fn window_of(image: &Image) -> Option<String> {
    let a = image.attributes.as_ref()?;
    let (c, w) = (
        a.get("window_center")?.as_f64()?,
        a.get("window_width")?.as_f64()?,
    );
    Some(format!("{c},{w}"))
}

/// The thumbnails: each photo, and each DICOM series as one stack.
fn thumbnails(images: &[Image], studies: &[Study]) -> Markup {
    let by_id = |id| images.iter().find(|i| i.id == id);
    html! {
        nav.thumbs aria-label="Images" {
            @for image in images.iter().filter(|i| i.media_type.is_photo()) {
                button.thumb-button type="button" data-kind="photo"
                    data-full=(format!("/api/v1/images/{}/original", image.id))
                    data-label=(image.filename.as_deref().unwrap_or("photo")) {
                    (thumb_img(image))
                    span { (image.filename.as_deref().unwrap_or("photo")) }
                }
            }
            @for study in studies {
                @for series in &study.series {
                    @let slices: Vec<String> = series.instances.iter().flat_map(|inst| {
                        (0..inst.frames.unwrap_or(1)).map(move |f| format!("{}/{f}", inst.image_id))
                    }).collect();
                    @let first = series.instances.first().and_then(|i| by_id(i.image_id));
                    button.thumb-button type="button" data-kind="series"
                        data-slices=(slices.join(" "))
                        data-window=[first.and_then(window_of)]
                        data-modality=[series.modality.as_deref()]
                        data-label=(series.series_description.as_deref().or(series.modality.as_deref()).unwrap_or("series")) {
                        @if let Some(first) = first { (thumb_img(first)) }
                        span { (series.modality.as_deref().unwrap_or("DICOM")) " · " (slices.len()) " images" }
                    }
                }
            }
            @if images.iter().any(|i| i.media_type == MediaType::Dicom && i.derive_state != DeriveState::Ready) {
                p.muted.small { "Some DICOM is still being prepared or cannot be shown; reload in a moment." }
            }
        }
    }
}

/// The viewer: a stage for one photo or one DICOM stack, with its tools.
fn viewer() -> Markup {
    html! {
        section.viewer #viewer aria-label="Image viewer" {
            div.toolbar role="toolbar" aria-label="Viewer tools" {
                button type="button" data-tool="zoom-out" title="Zoom out (-)" { "−" }
                button type="button" data-tool="zoom-in" title="Zoom in (+)" { "+" }
                button type="button" data-tool="fit" title="Fit (0)" { "Fit" }
                span.dicom-only {
                    label for="wl-preset" { "Window" }
                    select #wl-preset {
                        option value="" { "From the file" }
                        option value="40,400" { "Soft tissue 40/400" }
                        option value="-600,1500" { "Lung −600/1500" }
                        option value="400,1800" { "Bone 400/1800" }
                        option value="40,80" { "Brain 40/80" }
                    }
                    button type="button" data-tool="drag-mode" aria-pressed="true" title="Drag adjusts window/level; press P to pan instead" { "W/L drag" }
                }
                span.readout #position aria-live="polite" {}
                span.readout #wl-readout {}
            }
            div.stage #stage tabindex="0" aria-label="Image; use arrow keys, + and −, Page Up and Page Down" {
                img #stage-img alt="";
                p.muted #stage-empty { "Choose an image on the left." }
                p.stage-note #stage-note {}
            }
            p.muted.small { "Keys: + − zoom, 0 fit, arrows pan; in a DICOM stack ↑ ↓ / Page Up Page Down / wheel change slice, Home End first and last, W window drag, P pan." }
        }
    }
}

fn report_form(case: &Case, draft: Option<&Report>) -> Markup {
    let c = draft.map(|r| r.content.clone()).unwrap_or_default();
    let codes: Vec<String> = c
        .diagnosis_codes
        .iter()
        .cloned()
        .map(String::from)
        .collect();
    let visit = c.in_person_visit.as_str();
    html! {
        form.stack #report-form data-case=(case.id) {
            h2 { "Report" }
            label for="findings" { "Findings" }
            textarea #findings name="findings" rows="5" { (c.findings.as_str()) }
            label for="impression" { "Impression" span.muted { " (required to sign)" } }
            textarea #impression name="impression" rows="3" { (c.impression.as_str()) }
            label for="recommendation" { "Recommendation" }
            textarea #recommendation name="recommendation" rows="3" { (c.recommendation.as_str()) }
            label for="in_person_visit" { "In-person visit" }
            select #in_person_visit name="in_person_visit" {
                @for (value, label) in [("not_needed", "Not needed"), ("routine", "Yes, routine"), ("urgent", "Yes, urgently")] {
                    option value=(value) selected[visit == value] { (label) }
                }
            }
            label for="diagnosis_codes" { "Diagnosis codes" span.muted { " (separated by spaces)" } }
            input #diagnosis_codes name="diagnosis_codes" type="text" autocomplete="off" value=(codes.join(" "));
            p.muted #autosave-status aria-live="polite" {
                @if let Some(d) = draft { "Draft saved " (time(Some(d.updated_at))) } @else { "Not saved yet: the draft saves itself as you type." }
            }
            p.form-error role="alert" {}
            div.actions {
                button.primary #sign-open type="button" { "Sign report…" }
            }
        }
        dialog #sign-dialog aria-labelledby="sign-title" {
            h2 #sign-title { "Sign this report?" }
            p { "A signed report can never change; corrections become signed addenda. The office is told at once." }
            div.actions {
                button #sign-cancel type="button" { "Keep editing" }
                button.primary #sign-confirm type="button" { "Sign report" }
            }
        }
        form.stack #request-info data-api-form=(format!("POST /api/v1/cases/{}/request-info", case.id)) data-then="goto:/specialist" {
            h2 { "Ask the office" }
            label for="info-text" { "Question (the case waits for the answer; your claim is released)" }
            textarea #info-text name="text" rows="3" required {}
            p.form-error role="alert" {}
            button type="submit" { "Send question" }
        }
    }
}

fn actions(case: &Case, me: UserId, now: Timestamp) -> Markup {
    let mine = case.status == CaseStatus::InReview
        && case.claimed_by == Some(me)
        && case.claim_until.is_some_and(|until| until > now);
    let claimable = matches!(case.status, CaseStatus::Submitted)
        || (case.status == CaseStatus::InReview && !mine);
    html! {
        div.actions #case-actions data-case=(case.id) data-mine=(mine) {
            @if mine {
                span.badge.ok { "Claimed by you until " (time(case.claim_until)) }
                button #release data-action=(format!("POST /api/v1/cases/{}/release", case.id)) data-then="goto:/specialist" { "Release to the worklist" }
            } @else if claimable {
                @if case.status == CaseStatus::InReview {
                    span.badge.late { "Claimed by another specialist until " (time(case.claim_until)) }
                }
                button.primary #claim data-action=(format!("POST /api/v1/cases/{}/claim", case.id)) data-then="reload" { "Claim this case" }
            }
        }
    }
}

/// `GET /specialist/cases/{id}`: one case of the specialty.
pub async fn case(
    State(state): State<AppState>,
    page: Page,
    CasePath(id): CasePath,
) -> Result<Html, PageError> {
    let (me, _) = page.caller.specialist()?;
    let (ctx, scope) = (&page.caller.audit, page.caller.scope());
    let case = state.catalog.get_case(ctx, scope, id).await?;
    let images = state.catalog.list_images(ctx, scope, id).await?;
    let messages = state.catalog.case_messages(ctx, scope, id).await?;
    let report = match state.catalog.get_report(ctx, scope, id, true).await {
        Ok(report) => Some(report),
        Err(CatalogError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let studies = group_studies(&images);
    let now = Timestamp::now();
    let mine = case.status == CaseStatus::InReview && case.claimed_by == Some(me);
    let signed = report.as_ref().filter(|r| r.status == "signed");
    let patient_age = case
        .patient
        .birth_date
        .age_on(now.to_datetime().date_naive());
    let body = html! {
        div.title-row {
            h1 { "Case · " (patient_age) " y, " (case.patient.sex.as_str()) }
            (actions(&case, me, now))
        }
        div.reader {
            (thumbnails(&images, &studies))
            (viewer())
            aside.side {
                (referral(&case, now))
                @if !messages.is_empty() {
                    h2 { "Questions and answers" }
                    ol.messages {
                        @for m in &messages {
                            li class=(m.kind) { strong { (if m.kind == "question" { "You asked" } else { "Office answered" }) } " · " (time(Some(m.created_at))) (paragraphs(&m.text)) }
                        }
                    }
                }
                p.small.muted { "Patient: " (case.patient.name.as_str()) ", MRN " (case.patient.mrn.as_str()) }
            }
        }
        @if let Some(signed) = signed {
            (report_view(&case, signed))
        } @else if mine {
            (report_form(&case, report.as_ref()))
        } @else if case.status == CaseStatus::InfoRequested {
            p.muted { "Waiting for the office to answer." }
        }
    };
    Ok(html_page(layout::page(
        &page,
        "Case",
        &["viewer.js", "report.js"],
        body,
    )))
}
