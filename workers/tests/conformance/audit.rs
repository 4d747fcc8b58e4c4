//! The audit trail: written with every read and change, append-only in the
//! database itself, sealed into a chain that verification walks.

use relay_workers::audit::{AuditFilter, seal_all};
use relay_workers::catalog::{AuditLog, Cases};

use super::fixture::Db;

on_every_backend!(
    reads_and_changes_are_audited_and_filtered,
    events_are_append_only_and_sealed_into_a_verified_chain,
);

fn filter() -> AuditFilter {
    AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    }
}

async fn reads_and_changes_are_audited_and_filtered(db: &Db) {
    let office = db.office("North Clinic").await;
    let other = db.office("South Clinic").await;
    let case = db.draft(&office).await;
    db.catalog
        .get_case(&office.ctx, office.scope(), case.id)
        .await
        .expect("read");
    db.draft(&other).await;

    let on_case = db
        .catalog
        .list_audit(
            &office.ctx,
            &AuditFilter {
                object_id: Some(case.id.to_string()),
                ..filter()
            },
        )
        .await
        .expect("audit");
    let actions: Vec<_> = on_case.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["case.read", "case.create"], "newest first");
    let read = &on_case[0];
    assert_eq!(read.actor, office.user.id.to_string());
    assert_eq!(read.actor_role, "office");
    assert_eq!(read.office_id, Some(office.office_id()));
    assert_eq!(read.remote_addr, "127.0.0.1");
    assert_eq!(read.request_id, office.ctx.request_id);
    assert_eq!(read.seq, None, "not sealed yet");

    let case_events = db
        .catalog
        .list_audit(
            &office.ctx,
            &AuditFilter {
                action: Some("case.".to_owned()),
                ..filter()
            },
        )
        .await
        .expect("audit");
    assert_eq!(case_events.len(), 3, "two creates and a read");
    assert!(case_events.iter().all(|e| e.action.starts_with("case.")));
    let exact = db
        .catalog
        .list_audit(
            &office.ctx,
            &AuditFilter {
                action: Some("case.create".to_owned()),
                office_id: Some(other.office_id()),
                ..filter()
            },
        )
        .await
        .expect("audit");
    assert_eq!(exact.len(), 1);
    let page = db
        .catalog
        .list_audit(
            &office.ctx,
            &AuditFilter {
                before_id: Some(on_case[0].id),
                limit: 1,
                ..filter()
            },
        )
        .await
        .expect("audit");
    assert_eq!(page.len(), 1);
    assert!(page[0].id < on_case[0].id);
    // Listing the audit trail is itself audited.
    let reads = db
        .catalog
        .list_audit(
            &office.ctx,
            &AuditFilter {
                action: Some("audit.read".to_owned()),
                ..filter()
            },
        )
        .await
        .expect("audit");
    assert_eq!(reads.len(), 4);
}

async fn events_are_append_only_and_sealed_into_a_verified_chain(db: &Db) {
    let office = db.office("North Clinic").await;
    db.draft(&office).await;
    let report = db.catalog.verify_chain().await.expect("verify");
    assert_eq!((report.verified, report.broken), (0, None));
    let pending = report.unsealed;
    assert_eq!(pending, 3, "office, user and case created");

    assert_eq!(db.catalog.seal_pending(2).await.expect("seal"), 2);
    let sealed = seal_all(db.catalog.as_ref()).await.expect("seal all");
    assert_eq!(sealed + 2, pending);
    assert_eq!(db.catalog.seal_pending(10).await.expect("seal"), 0);
    let report = db.catalog.verify_chain().await.expect("verify");
    assert_eq!(
        (report.verified, report.unsealed, report.broken),
        (pending, 0, None)
    );
    assert_eq!(u64::try_from(report.head.seq).ok(), Some(pending));

    // The database refuses to change, reseal or remove an event.
    for (what, sql) in [
        (
            "change",
            "UPDATE audit_events SET actor = 'someone else' WHERE id = $1",
        ),
        (
            "reseal",
            "UPDATE audit_events SET seq = seq + 1000 WHERE id = $1",
        ),
        ("remove", "DELETE FROM audit_events WHERE id = $1"),
    ] {
        let refused = db.execute(sql, 1).await;
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    let unsealed_change = {
        db.draft(&office).await;
        db.execute(
            "UPDATE audit_events SET action = 'case.nothing' WHERE seq IS NULL AND id > $1",
            0,
        )
        .await
    };
    assert!(unsealed_change.is_err(), "{unsealed_change:?}");
    let report = db.catalog.verify_chain().await.expect("verify");
    assert_eq!(
        (report.verified, report.unsealed, report.broken),
        (pending, 1, None)
    );
}
