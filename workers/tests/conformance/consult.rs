//! The consult loop: worklists, claims as leases on the database clock,
//! reports signed once and never changed, the information round trip.

use std::time::Duration;

use relay_workers::catalog::{Cases, CatalogError, Consult};
use relay_workers::model::{CaseStatus, ReportDraft, ReportText, Specialty, WorklistQuery};

use super::fixture::{Backend, Db, assert_kind};

on_every_backend!(
    the_worklist_orders_by_priority_then_place_in_line,
    a_claim_is_exclusive_until_its_lease_runs_out,
    a_signed_report_is_immutable_and_delivered,
    the_information_round_trip_keeps_the_place_in_line,
);

fn report_text(s: &str) -> ReportText {
    ReportText::try_from(s.to_owned()).expect("text")
}

fn draft(impression: &str) -> ReportDraft {
    ReportDraft {
        findings: report_text("A 4 mm symmetric macule."),
        impression: report_text(impression),
        recommendation: report_text("Routine follow-up."),
        ..ReportDraft::default()
    }
}

fn worklist(page: u32) -> WorklistQuery {
    WorklistQuery {
        page,
        per_page: 50,
        ..WorklistQuery::default()
    }
}

const LEASE: Duration = Duration::from_secs(600);

async fn the_worklist_orders_by_priority_then_place_in_line(db: &Db) {
    let office = db.office("North Clinic").await;
    let derm = db.specialist(Specialty::Dermatology).await;
    let routine = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let stat = db.submitted(&office, Specialty::Dermatology, "stat").await;
    let urgent = db
        .submitted(&office, Specialty::Dermatology, "urgent")
        .await;
    let routine2 = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    db.submitted(&office, Specialty::Radiology, "stat").await;
    db.draft(&office).await;
    let list = db
        .catalog
        .worklist(
            &derm.ctx,
            derm.user.id,
            Specialty::Dermatology,
            &worklist(1),
        )
        .await
        .expect("worklist");
    assert_eq!(list.total, 4);
    assert_eq!(
        list.items.iter().map(|i| i.case_id).collect::<Vec<_>>(),
        vec![stat.id, urgent.id, routine.id, routine2.id]
    );
    assert!(list.items.iter().all(|i| i.image_count == 1 && !i.overdue));

    // A case claimed by someone else leaves the list; one's own stays.
    let other = db.specialist(Specialty::Dermatology).await;
    db.catalog
        .claim_case(&other.ctx, other.scope(), other.user.id, stat.id, LEASE)
        .await
        .expect("claim");
    db.catalog
        .claim_case(&derm.ctx, derm.scope(), derm.user.id, urgent.id, LEASE)
        .await
        .expect("claim");
    let list = db
        .catalog
        .worklist(
            &derm.ctx,
            derm.user.id,
            Specialty::Dermatology,
            &worklist(1),
        )
        .await
        .expect("worklist");
    assert_eq!(
        list.items.iter().map(|i| i.case_id).collect::<Vec<_>>(),
        vec![urgent.id, routine.id, routine2.id]
    );
    let mine = db
        .catalog
        .worklist(
            &derm.ctx,
            derm.user.id,
            Specialty::Dermatology,
            &WorklistQuery {
                mine: true,
                ..worklist(1)
            },
        )
        .await
        .expect("worklist");
    assert_eq!(
        mine.items.iter().map(|i| i.case_id).collect::<Vec<_>>(),
        vec![urgent.id]
    );
    let overdue = db
        .catalog
        .worklist(
            &derm.ctx,
            derm.user.id,
            Specialty::Dermatology,
            &WorklistQuery {
                overdue_only: true,
                ..worklist(1)
            },
        )
        .await
        .expect("worklist");
    assert_eq!(overdue.total, 0);
}

async fn a_claim_is_exclusive_until_its_lease_runs_out(db: &Db) {
    let office = db.office("North Clinic").await;
    let first = db.specialist(Specialty::Dermatology).await;
    let second = db.specialist(Specialty::Dermatology).await;
    let case = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let claimed = db
        .catalog
        .claim_case(
            &first.ctx,
            first.scope(),
            first.user.id,
            case.id,
            Duration::from_millis(300),
        )
        .await
        .expect("claim");
    assert_eq!(claimed.status, CaseStatus::InReview);
    assert_eq!(claimed.claimed_by, Some(first.user.id));
    assert_kind(
        db.catalog
            .claim_case(&second.ctx, second.scope(), second.user.id, case.id, LEASE)
            .await,
        |e| matches!(e, CatalogError::AlreadyClaimed),
        "claimed by another",
    );
    assert_kind(
        db.catalog
            .save_report_draft(
                &second.ctx,
                second.scope(),
                second.user.id,
                case.id,
                &draft("x"),
            )
            .await,
        |e| matches!(e, CatalogError::ClaimRequired),
        "draft without the claim",
    );
    // The holder renews; then lets the lease (database clock) run out.
    db.catalog
        .claim_case(
            &first.ctx,
            first.scope(),
            first.user.id,
            case.id,
            Duration::from_millis(300),
        )
        .await
        .expect("renew");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_kind(
        db.catalog
            .save_report_draft(
                &first.ctx,
                first.scope(),
                first.user.id,
                case.id,
                &draft("x"),
            )
            .await,
        |e| matches!(e, CatalogError::ClaimRequired),
        "an expired claim",
    );
    let taken = db
        .catalog
        .claim_case(&second.ctx, second.scope(), second.user.id, case.id, LEASE)
        .await
        .expect("claim after expiry");
    assert_eq!(taken.claimed_by, Some(second.user.id));
    assert_kind(
        db.catalog
            .release_case(&first.ctx, first.scope(), first.user.id, case.id)
            .await,
        |e| matches!(e, CatalogError::ClaimRequired),
        "release another's claim",
    );
    let released = db
        .catalog
        .release_case(&second.ctx, second.scope(), second.user.id, case.id)
        .await
        .expect("release");
    assert_eq!(
        (released.status, released.claimed_by),
        (CaseStatus::Submitted, None)
    );
    // A draft cannot be claimed (and is not in a specialist's scope).
    let draft_case = db.draft(&office).await;
    assert_kind(
        db.catalog
            .claim_case(
                &first.ctx,
                first.scope(),
                first.user.id,
                draft_case.id,
                LEASE,
            )
            .await,
        CatalogError::is_not_found,
        "claim a draft",
    );
}

async fn a_signed_report_is_immutable_and_delivered(db: &Db) {
    let office = db.office("North Clinic").await;
    let derm = db.specialist(Specialty::Dermatology).await;
    let case = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let (ctx, scope, me) = (&derm.ctx, derm.scope(), derm.user.id);
    db.catalog
        .claim_case(ctx, scope, me, case.id, LEASE)
        .await
        .expect("claim");
    assert_kind(
        db.catalog.sign_report(ctx, scope, me, case.id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "nothing to sign",
    );
    let mut text = draft("");
    text.diagnosis_codes = vec![serde_json::from_value(serde_json::json!("L82.1")).expect("code")];
    db.catalog
        .save_report_draft(ctx, scope, me, case.id, &text)
        .await
        .expect("draft");
    assert_kind(
        db.catalog.sign_report(ctx, scope, me, case.id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "no impression",
    );
    text.impression = report_text("Seborrheic keratosis.");
    let saved = db
        .catalog
        .save_report_draft(ctx, scope, me, case.id, &text)
        .await
        .expect("draft");
    assert_eq!(
        (saved.status.as_str(), saved.content.clone()),
        ("draft", text.clone())
    );
    assert_kind(
        db.catalog
            .get_report(&office.ctx, office.scope(), case.id, false)
            .await,
        CatalogError::is_not_found,
        "an office does not see a draft",
    );

    let signed = db
        .catalog
        .sign_report(ctx, scope, me, case.id)
        .await
        .expect("sign");
    assert_eq!(signed.status, "signed");
    assert_eq!(signed.content, text);
    assert!(signed.sha256.is_some() && signed.signed_at.is_some());
    let seen = db
        .catalog
        .get_report(&office.ctx, office.scope(), case.id, false)
        .await
        .expect("office reads the report");
    assert_eq!(seen, signed);
    let reported = db
        .catalog
        .get_case(&office.ctx, office.scope(), case.id)
        .await
        .expect("case");
    assert_eq!(
        (reported.status, reported.claimed_by),
        (CaseStatus::Reported, None)
    );

    // Through the catalog: no claim any more, so no new draft or signature.
    assert_kind(
        db.catalog
            .save_report_draft(ctx, scope, me, case.id, &text)
            .await,
        |e| matches!(e, CatalogError::ClaimRequired),
        "redraft a signed report",
    );
    assert_kind(
        db.catalog.claim_case(ctx, scope, me, case.id, LEASE).await,
        |e| matches!(e, CatalogError::InvalidTransition(_)),
        "claim a reported case",
    );
    // Below the catalog: the database itself refuses.
    let tamper = db
        .execute_text(
            "UPDATE reports SET impression = 'changed' WHERE case_id = $1",
            &case.id.to_string(),
        )
        .await;
    assert!(tamper.is_err(), "a signed report was changed: {tamper:?}");
    let delete = db
        .execute_text(
            "DELETE FROM reports WHERE case_id = $1",
            &case.id.to_string(),
        )
        .await;
    assert!(delete.is_err(), "a report was deleted: {delete:?}");

    let with_addendum = db
        .catalog
        .add_addendum(ctx, scope, me, case.id, &report_text("Biopsy not needed."))
        .await
        .expect("addendum");
    assert_eq!(with_addendum.addenda.len(), 1);
    assert_eq!(
        with_addendum.sha256, signed.sha256,
        "the report stays as signed"
    );
    let addendum = db
        .execute_text(
            "UPDATE report_addenda SET text = 'changed' WHERE case_id = $1",
            &case.id.to_string(),
        )
        .await;
    assert!(addendum.is_err(), "an addendum was changed: {addendum:?}");

    // The office is told twice, in the app and through both channels.
    let events: Vec<_> = db
        .catalog
        .notifications(office.office_id(), true)
        .await
        .expect("notifications")
        .into_iter()
        .map(|n| n.event)
        .collect();
    assert_eq!(events, vec!["addendum_signed", "report_signed"]);
    assert_eq!(db.jobs_of("deliver").await.len(), 2);
    assert_eq!(db.jobs_of("email").await.len(), 2);

    let acknowledged = db
        .catalog
        .acknowledge(&office.ctx, office.scope(), case.id)
        .await
        .expect("acknowledge");
    assert_eq!(acknowledged.status, CaseStatus::Acknowledged);
    // Every backend refuses with its own error; what matters is that it does.
    if db.backend == Backend::Postgres {
        let error = tamper.expect_err("refused").to_string();
        assert!(
            error.contains("a signed report cannot be changed"),
            "{error}"
        );
    }
}

async fn the_information_round_trip_keeps_the_place_in_line(db: &Db) {
    let office = db.office("North Clinic").await;
    let derm = db.specialist(Specialty::Dermatology).await;
    let case = db
        .submitted(&office, Specialty::Dermatology, "routine")
        .await;
    let (ctx, scope, me) = (&derm.ctx, derm.scope(), derm.user.id);
    db.catalog
        .claim_case(ctx, scope, me, case.id, LEASE)
        .await
        .expect("claim");
    let asked = db
        .catalog
        .request_info(
            ctx,
            scope,
            me,
            case.id,
            &report_text("How long has it been there?"),
        )
        .await
        .expect("ask");
    assert_eq!(
        (asked.status, asked.claimed_by),
        (CaseStatus::InfoRequested, None)
    );
    // While the office is asked, it may add an image.
    db.attach(&office, &case, b"a closer photo").await;
    let answered = db
        .catalog
        .answer_info(
            &office.ctx,
            office.scope(),
            office.user.id,
            case.id,
            &report_text("Three months."),
        )
        .await
        .expect("answer");
    assert_eq!(answered.status, CaseStatus::Submitted);
    assert_eq!(answered.queued_at, case.queued_at);
    let messages = db
        .catalog
        .case_messages(&office.ctx, office.scope(), case.id)
        .await
        .expect("messages");
    let kinds: Vec<_> = messages
        .iter()
        .map(|m| (m.kind.as_str(), m.author))
        .collect();
    assert_eq!(kinds, vec![("question", me), ("answer", office.user.id)]);
    let history = db
        .catalog
        .case_history(ctx, scope, case.id)
        .await
        .expect("history");
    let moves: Vec<_> = history.iter().map(|h| h.to_status.as_str()).collect();
    assert_eq!(
        moves,
        vec!["submitted", "in_review", "info_requested", "submitted"]
    );
}
