//! The frame every page shares: head, navigation for the caller's role,
//! sign-out, and small formatting helpers. Scripts and styles are files
//! under `/assets/`, never inline (the content policy forbids it).

use maud::{DOCTYPE, Markup, html};
use relay_workers::model::{CaseStatus, Principal, Priority, Timestamp};

use super::page::Page;

/// Links of the navigation bar, per role.
fn nav(principal: &Principal) -> &'static [(&'static str, &'static str)] {
    match principal {
        Principal::Office { .. } => &[("/office", "Cases"), ("/office/cases/new", "New case")],
        Principal::Specialist { .. } => &[("/specialist", "Worklist")],
        Principal::Admin { .. } => &[
            ("/admin", "Overview"),
            ("/admin/offices", "Offices"),
            ("/admin/users", "Users"),
            ("/admin/tokens", "Tokens"),
            ("/admin/jobs", "Jobs"),
            ("/admin/reprocess", "Reprocess"),
            ("/admin/audit", "Audit"),
        ],
    }
}

fn head(title: &str, scripts: &[&str]) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Relay" }
            link rel="stylesheet" href="/assets/app.css";
            script src="/assets/app.js" defer {}
            @for script in scripts {
                script src=(format!("/assets/{script}")) defer {}
            }
        }
    }
}

/// A signed-in page: `scripts` are extra files under `/assets/`.
pub fn page(page: &Page, title: &str, scripts: &[&str], body: Markup) -> Markup {
    let principal = &page.caller.principal;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, scripts))
            body data-role=(principal.role().as_str()) {
                meta name="csrf-token" content=(page.csrf);
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(page.home()) { "Relay" }
                    nav aria-label="Main" {
                        @for (href, label) in nav(principal) {
                            a href=(href) { (label) }
                        }
                    }
                    form.sign-out method="post" action="/sign-out" {
                        input type="hidden" name="csrf" value=(page.csrf);
                        span.who { (principal.role().as_str()) }
                        button type="submit" { "Sign out" }
                    }
                }
                div #alerts role="alert" aria-live="assertive" {}
                main #main { (body) }
            }
        }
    }
}

/// A page without a signed-in user (sign-in, errors before sign-in).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, &[]))
            body {
                header.top { a.brand href="/" { "Relay" } }
                (body)
            }
        }
    }
}

/// A time for people: UTC on the server, turned into local time by the
/// page script (`<time>` keeps the exact instant).
pub fn time(at: Option<Timestamp>) -> Markup {
    match at {
        Some(at) => {
            let dt = at.to_datetime();
            html! { time datetime=(at.to_rfc3339()) { (dt.format("%Y-%m-%d %H:%M UTC")) } }
        }
        None => html! { span.muted { "—" } },
    }
}

/// How long ago (or how far ahead) `at` is, roughly.
pub fn age(at: Option<Timestamp>, now: Timestamp) -> String {
    let Some(at) = at else {
        return "—".to_owned();
    };
    let minutes = (now.as_millis() - at.as_millis()) / 60_000;
    let (minutes, suffix) = if minutes < 0 {
        (-minutes, " ahead")
    } else {
        (minutes, "")
    };
    let text = match minutes {
        0..60 => format!("{minutes} min"),
        60..2880 => format!("{} h {} min", minutes / 60, minutes % 60),
        _ => format!("{} days", minutes / 1440),
    };
    format!("{text}{suffix}")
}

pub fn status_label(status: CaseStatus) -> &'static str {
    match status {
        CaseStatus::Draft => "Draft",
        CaseStatus::Submitted => "Waiting for a specialist",
        CaseStatus::InReview => "In review",
        CaseStatus::InfoRequested => "Question for the office",
        CaseStatus::Reported => "Report ready",
        CaseStatus::Acknowledged => "Report acknowledged",
        CaseStatus::Cancelled => "Cancelled",
    }
}

pub fn status(status: CaseStatus) -> Markup {
    html! { span class={"badge status-" (status.as_str())} { (status_label(status)) } }
}

pub fn priority(priority: Priority) -> Markup {
    html! { span class={"badge priority-" (priority.as_str())} { (priority.as_str()) } }
}

/// Multi-line text as paragraphs.
pub fn paragraphs(text: &str) -> Markup {
    html! {
        @if text.trim().is_empty() {
            p.muted { "—" }
        } @else {
            @for line in text.split("\n\n") { p.pre { (line) } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let now = Timestamp::from_millis(10 * 86_400_000);
        let ago = |m: i64| Some(Timestamp::from_millis(now.as_millis() - m * 60_000));
        assert_eq!(age(ago(5), now), "5 min");
        assert_eq!(age(ago(125), now), "2 h 5 min");
        assert_eq!(age(ago(3 * 1440), now), "3 days");
        assert_eq!(age(ago(-90), now), "1 h 30 min ahead");
        assert_eq!(age(None, now), "—");
    }

    #[test]
    fn text_is_escaped() {
        let html = paragraphs("<script>alert(1)</script>").into_string();
        assert!(!html.contains("<script>"));
    }
}
