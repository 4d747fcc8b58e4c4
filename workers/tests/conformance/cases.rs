//! Cases: scoped per office and specialty, moved by one state machine,
//! every move in the history.

use relay_workers::catalog::{CaseQuery, Cases, CatalogError, Consult};
use relay_workers::model::{CancelReason, CasePatch, CaseScope, CaseStatus, Priority, Specialty};

use super::fixture::{Db, assert_kind};

on_every_backend!(
    another_office_sees_no_case_of_ours,
    specialists_see_their_specialty_once_submitted,
    cases_are_listed_newest_first_in_pages,
    only_drafts_are_edited_and_submitting_needs_an_image,
    submission_sets_the_service_level_and_cancel_ends_the_case,
);

async fn another_office_sees_no_case_of_ours(db: &Db) {
    let ours = db.office("North Clinic").await;
    let theirs = db.office("South Clinic").await;
    let case = db.draft(&ours).await;
    let got = db
        .catalog
        .get_case(&ours.ctx, ours.scope(), case.id)
        .await
        .expect("own case");
    assert_eq!((got.id, got.status), (case.id, CaseStatus::Draft));
    assert_eq!(got.patient, case.patient);

    let not_found = CatalogError::is_not_found;
    let (ctx, scope) = (&theirs.ctx, theirs.scope());
    assert_kind(
        db.catalog.get_case(ctx, scope, case.id).await,
        not_found,
        "get",
    );
    assert_kind(
        db.catalog
            .update_case(ctx, scope, case.id, CasePatch::default())
            .await,
        not_found,
        "update",
    );
    assert_kind(
        db.catalog.submit_case(ctx, scope, case.id).await,
        not_found,
        "submit",
    );
    let reason = CancelReason::try_from("duplicate".to_owned()).expect("reason");
    assert_kind(
        db.catalog.cancel_case(ctx, scope, case.id, reason).await,
        not_found,
        "cancel",
    );
    assert_kind(
        db.catalog.case_history(ctx, scope, case.id).await,
        not_found,
        "history",
    );
    let page = db
        .catalog
        .list_cases(ctx, scope, &query(None, 1, 50))
        .await
        .expect("list");
    assert_eq!((page.items.len(), page.total), (0, 0));
    // An administrator sees every office's cases.
    assert!(
        db.catalog
            .get_case(&ours.ctx, CaseScope::All, case.id)
            .await
            .is_ok()
    );
}

async fn specialists_see_their_specialty_once_submitted(db: &Db) {
    let office = db.office("North Clinic").await;
    let derm = db.specialist(Specialty::Dermatology).await;
    let rad = db.specialist(Specialty::Radiology).await;
    let draft = db.draft(&office).await;
    let submitted = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    assert_kind(
        db.catalog.get_case(&derm.ctx, derm.scope(), draft.id).await,
        CatalogError::is_not_found,
        "a draft is the office's alone",
    );
    assert!(
        db.catalog
            .get_case(&derm.ctx, derm.scope(), submitted.id)
            .await
            .is_ok()
    );
    assert_kind(
        db.catalog
            .get_case(&rad.ctx, rad.scope(), submitted.id)
            .await,
        CatalogError::is_not_found,
        "another specialty",
    );
    let listed = db
        .catalog
        .list_cases(&derm.ctx, derm.scope(), &query(None, 1, 50))
        .await
        .expect("list");
    assert_eq!(
        listed.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![submitted.id]
    );
}

async fn cases_are_listed_newest_first_in_pages(db: &Db) {
    let office = db.office("North Clinic").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(db.draft(&office).await.id);
        // Distinct creation times, so the order does not rest on ids alone.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let submitted = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let list = |status, page, per_page| {
        let (catalog, office) = (db.catalog.clone(), office.clone());
        async move {
            catalog
                .list_cases(&office.ctx, office.scope(), &query(status, page, per_page))
                .await
                .expect("list")
        }
    };
    let first = list(Some(CaseStatus::Draft), 1, 2).await;
    let second = list(Some(CaseStatus::Draft), 2, 2).await;
    let third = list(Some(CaseStatus::Draft), 3, 2).await;
    assert_eq!((first.total, first.page, first.per_page), (5, 1, 2));
    let seen: Vec<_> = [first, second, third]
        .iter()
        .flat_map(|p| p.items.iter().map(|c| c.id))
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let all = list(None, 1, 50).await;
    assert_eq!(all.total, 6);
    assert_eq!(all.items[0].id, submitted.id);
    let beyond = list(None, 9, 50).await;
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 6);
}

async fn only_drafts_are_edited_and_submitting_needs_an_image(db: &Db) {
    let office = db.office("North Clinic").await;
    let (ctx, scope) = (&office.ctx, office.scope());
    let case = db.draft(&office).await;
    let patch: CasePatch = serde_json::from_value(serde_json::json!({
        "priority": "urgent",
        "question": "Changed question?",
        "clinical": { "body_site": "left forearm" },
    }))
    .expect("patch");
    let edited = db
        .catalog
        .update_case(ctx, scope, case.id, patch.clone())
        .await
        .expect("edit a draft");
    assert_eq!(edited.priority, Priority::Urgent);
    assert_eq!(edited.question.as_str(), "Changed question?");
    let stored = db
        .catalog
        .get_case(ctx, scope, case.id)
        .await
        .expect("case");
    assert_eq!(
        stored.clinical.body_site.as_ref().map(|s| s.as_str()),
        Some("left forearm")
    );
    assert!(stored.updated_at >= stored.created_at);

    assert_kind(
        db.catalog.submit_case(ctx, scope, case.id).await,
        |e| matches!(e, CatalogError::Conflict(m) if m.contains("no images")),
        "submit without images",
    );
    db.attach(&office, &case, b"one image").await;
    let submitted = db
        .catalog
        .submit_case(ctx, scope, case.id)
        .await
        .expect("submit");
    assert_eq!(submitted.status, CaseStatus::Submitted);
    assert_kind(
        db.catalog.update_case(ctx, scope, case.id, patch).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "a submitted case is not edited",
    );
    assert_kind(
        db.catalog.submit_case(ctx, scope, case.id).await,
        |e| matches!(e, CatalogError::InvalidTransition(_)),
        "submit twice",
    );
}

async fn submission_sets_the_service_level_and_cancel_ends_the_case(db: &Db) {
    let office = db.office("North Clinic").await;
    let (ctx, scope) = (&office.ctx, office.scope());
    let case = db.submitted(&office, Specialty::Radiology, "stat").await;
    let submitted_at = case.submitted_at.expect("submitted at");
    assert_eq!(case.queued_at, Some(submitted_at));
    // Radiology STAT: one hour by default.
    assert_eq!(
        case.due_at
            .map(|d| d.as_millis() - submitted_at.as_millis()),
        Some(3_600_000)
    );
    let reason = CancelReason::try_from("sent in error".to_owned()).expect("reason");
    let cancelled = db
        .catalog
        .cancel_case(ctx, scope, case.id, reason.clone())
        .await
        .expect("cancel");
    assert_eq!(cancelled.status, CaseStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason, Some(reason.clone()));
    assert!(cancelled.cancelled_at.is_some());
    assert_kind(
        db.catalog.cancel_case(ctx, scope, case.id, reason).await,
        |e| matches!(e, CatalogError::InvalidTransition(_)),
        "cancel twice",
    );
    let history = db
        .catalog
        .case_history(ctx, scope, case.id)
        .await
        .expect("history");
    let moves: Vec<_> = history
        .iter()
        .map(|h| (h.from_status.as_str(), h.to_status.as_str()))
        .collect();
    assert_eq!(
        moves,
        vec![("draft", "submitted"), ("submitted", "cancelled")]
    );
    assert_eq!(history[1].note.as_deref(), Some("sent in error"));
    assert_eq!(history[1].actor, office.user.id.to_string());
}

fn query(status: Option<CaseStatus>, page: u32, per_page: u32) -> CaseQuery {
    CaseQuery {
        status,
        page,
        per_page,
    }
}
