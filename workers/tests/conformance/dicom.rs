//! The DICOM door's records: AE titles mapped to offices, and one draft
//! case per office and study, even when instances race.

use std::sync::Arc;

use relay_workers::audit::{AuditContext, AuditFilter};
use relay_workers::catalog::{Accounts, AuditLog, Cases, CatalogError, DicomAeTitles};
use relay_workers::model::{AeTitle, Case, CaseStatus, Specialty, Timestamp};

use super::fixture::{Db, Party, assert_kind};

on_every_backend!(
    an_ae_title_maps_to_one_office_and_acts_as_its_own_user,
    an_ae_title_needs_a_real_office_and_can_be_removed,
    a_study_opens_one_draft_case_per_office,
    a_study_whose_case_left_draft_opens_a_new_one,
    racing_instances_of_a_new_study_share_one_case,
    a_known_studys_draft_is_found_by_a_read,
);

fn ae(title: &str) -> AeTitle {
    AeTitle::parse(title).expect("ae title")
}

/// A new radiology draft of `office`'s, as the C-STORE door builds it.
fn dicom_draft(office: &Party) -> Case {
    let new = serde_json::from_value(serde_json::json!({
        "patient": {"name": "Anon", "birth_date": "1950-01-01", "sex": "other", "mrn": "PID-1"},
        "specialty": "radiology",
        "question": "DICOM study received; add the clinical question before submitting.",
    }))
    .expect("new case");
    Case::draft(new, office.office_id(), office.user.id, Timestamp::now())
}

async fn an_ae_title_maps_to_one_office_and_acts_as_its_own_user(db: &Db) {
    let north = db.office("North Clinic").await;
    let south = db.office("South Clinic").await;
    let op = AuditContext::operator();
    let mapped = db
        .catalog
        .set_ae_title(&op, &ae("NORTH_CT"), north.office_id())
        .await
        .expect("map");
    assert_eq!(mapped.office, north.office_id());
    assert_ne!(
        mapped.user, north.user.id,
        "the title acts as a user of its own"
    );
    // Again to the same office: the same mapping, no second user.
    let again = db
        .catalog
        .set_ae_title(&op, &ae("NORTH_CT"), north.office_id())
        .await
        .expect("idempotent");
    assert_eq!(again.user, mapped.user);
    assert_kind(
        db.catalog
            .set_ae_title(&op, &ae("NORTH_CT"), south.office_id())
            .await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "a title belongs to one office",
    );
    // Titles are exact: another spelling is another title.
    db.catalog
        .set_ae_title(&op, &ae("north_ct"), south.office_id())
        .await
        .expect("another title");
    let all = db.catalog.list_ae_titles().await.expect("list");
    let titles: Vec<_> = all.iter().map(|m| m.ae_title.as_str()).collect();
    assert_eq!(titles, ["NORTH_CT", "north_ct"]);
    let users = db
        .catalog
        .list_users(Some(north.office_id()))
        .await
        .expect("users");
    assert!(users.iter().any(|u| u.id == mapped.user));
    let events = db
        .catalog
        .list_audit(
            &op,
            &AuditFilter {
                action: Some("office.update".to_owned()),
                office_id: Some(north.office_id()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(events.len(), 1, "one mapping, one event");
}

async fn an_ae_title_needs_a_real_office_and_can_be_removed(db: &Db) {
    let north = db.office("North Clinic").await;
    let op = AuditContext::operator();
    let elsewhere = db.office("Elsewhere").await.office_id();
    db.catalog
        .set_ae_title(&op, &ae("MR1"), north.office_id())
        .await
        .expect("map");
    db.catalog
        .remove_ae_title(&op, &ae("MR1"))
        .await
        .expect("remove");
    assert!(db.catalog.list_ae_titles().await.expect("list").is_empty());
    assert_kind(
        db.catalog.remove_ae_title(&op, &ae("MR1")).await,
        CatalogError::is_not_found,
        "removed once",
    );
    // Once removed it may belong to another office.
    db.catalog
        .set_ae_title(&op, &ae("MR1"), elsewhere)
        .await
        .expect("remapped");
    let missing = relay_workers::model::OfficeId::generate();
    assert_kind(
        db.catalog.set_ae_title(&op, &ae("CT9"), missing).await,
        CatalogError::is_not_found,
        "no such office",
    );
}

async fn a_study_opens_one_draft_case_per_office(db: &Db) {
    let north = db.office("North Clinic").await;
    let south = db.office("South Clinic").await;
    let first = db
        .catalog
        .study_case(&north.ctx, "1.2.3.4", &dicom_draft(&north))
        .await
        .expect("first instance");
    assert!(first.created);
    let later = db
        .catalog
        .study_case(&north.ctx, "1.2.3.4", &dicom_draft(&north))
        .await
        .expect("later instance");
    assert_eq!(
        later,
        relay_workers::catalog::StudyCase {
            created: false,
            ..first
        }
    );
    // The same study from another office is that office's own case.
    let theirs = db
        .catalog
        .study_case(&south.ctx, "1.2.3.4", &dicom_draft(&south))
        .await
        .expect("other office");
    assert!(theirs.created);
    assert_ne!(theirs.case_id, first.case_id);
    let case = db
        .catalog
        .get_case(&north.ctx, north.scope(), first.case_id)
        .await
        .expect("in north's scope");
    assert_eq!(case.status, CaseStatus::Draft);
    assert_eq!(case.specialty, Specialty::Radiology);
    assert_kind(
        db.catalog
            .get_case(&south.ctx, south.scope(), first.case_id)
            .await,
        CatalogError::is_not_found,
        "not south's",
    );
    let created = db
        .catalog
        .list_audit(
            &AuditContext::operator(),
            &AuditFilter {
                action: Some("case.create".to_owned()),
                object_id: Some(first.case_id.to_string()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(created.len(), 1);
}

async fn a_study_whose_case_left_draft_opens_a_new_one(db: &Db) {
    let north = db.office("North Clinic").await;
    let first = db
        .catalog
        .study_case(&north.ctx, "1.2.3.5", &dicom_draft(&north))
        .await
        .expect("first");
    let case = db
        .catalog
        .get_case(&north.ctx, north.scope(), first.case_id)
        .await
        .expect("case");
    db.attach(&north, &case, b"one instance").await;
    db.catalog
        .submit_case(&north.ctx, north.scope(), first.case_id)
        .await
        .expect("submit");
    let next = db
        .catalog
        .study_case(&north.ctx, "1.2.3.5", &dicom_draft(&north))
        .await
        .expect("after submission");
    assert!(next.created);
    assert_ne!(next.case_id, first.case_id);
    let again = db
        .catalog
        .study_case(&north.ctx, "1.2.3.5", &dicom_draft(&north))
        .await
        .expect("joins the new draft");
    assert_eq!(again.case_id, next.case_id);
}

async fn racing_instances_of_a_new_study_share_one_case(db: &Db) {
    let north = Arc::new(db.office("North Clinic").await);
    let catalog = db.catalog.clone();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let catalog = catalog.clone();
            let north = north.clone();
            tokio::spawn(async move {
                catalog
                    .study_case(&north.ctx, "1.2.3.6", &dicom_draft(&north))
                    .await
            })
        })
        .collect();
    let mut cases = Vec::new();
    let mut created = 0;
    for task in tasks {
        let got = task.await.expect("task").expect("study case");
        created += usize::from(got.created);
        cases.push(got.case_id);
    }
    assert!(
        cases.iter().all(|c| *c == cases[0]),
        "one case for the study: {cases:?}"
    );
    assert_eq!(created, 1);
}

async fn a_known_studys_draft_is_found_by_a_read(db: &Db) {
    let north = db.office("North Clinic").await;
    let south = db.office("South Clinic").await;
    let study = "1.2.3.7";
    let found = |office: &Party| db.catalog.draft_study_case(office.office_id(), study);
    assert_eq!(found(&north).await.expect("read"), None, "a new study");
    let first = db
        .catalog
        .study_case(&north.ctx, study, &dicom_draft(&north))
        .await
        .expect("first instance");
    assert_eq!(found(&north).await.expect("read"), Some(first.case_id));
    assert_eq!(
        found(&south).await.expect("read"),
        None,
        "another office's study is not this one's"
    );
    let case = db
        .catalog
        .get_case(&north.ctx, north.scope(), first.case_id)
        .await
        .expect("case");
    db.attach(&north, &case, b"one instance").await;
    db.catalog
        .submit_case(&north.ctx, north.scope(), first.case_id)
        .await
        .expect("submit");
    assert_eq!(
        found(&north).await.expect("read"),
        None,
        "a submitted case takes no more instances"
    );
}
