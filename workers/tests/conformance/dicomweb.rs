//! DICOMweb searches over `dicom_instances` (migration 0013): the index
//! row is written with its image, matching keys combine, pages count
//! studies, and nothing outside the caller's scope is found.

use relay_workers::audit::AuditFilter;
use relay_workers::catalog::{AuditLog, Cases, DicomWeb, Images};
use relay_workers::model::{
    Case, DateRange, DicomAccess, DicomIndex, DicomQuery, MediaType, NamePattern, QueryLevel,
    Specialty,
};

use super::fixture::{Db, Party};

on_every_backend!(
    instances_are_found_by_their_attributes_in_scope_only,
    study_pages_count_studies_and_carry_all_their_instances,
);

fn index(study: &str, series: &str, sop: &str, name: &str, date: &str) -> DicomIndex {
    DicomIndex {
        study_instance_uid: study.to_owned(),
        series_instance_uid: series.to_owned(),
        sop_instance_uid: sop.to_owned(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_owned(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_owned(),
        patient_id: Some("PID-7".to_owned()),
        patient_name: Some(name.to_owned()),
        study_date: Some(date.to_owned()),
        accession_number: Some(format!("ACC-{study}")),
        modality: Some("CT".to_owned()),
        instance_number: Some(1),
        ..DicomIndex::default()
    }
}

async fn store(db: &Db, office: &Party, case: &Case, index: &DicomIndex) {
    let mut image = db.image(office, case, index.sop_instance_uid.as_bytes());
    image.media_type = MediaType::Dicom;
    let (_, created) = db
        .catalog
        .add_image(&office.ctx, office.scope(), &image, Some(index))
        .await
        .expect("add a DICOM image");
    assert!(created);
}

async fn search(db: &Db, who: &Party, query: &DicomQuery) -> Vec<String> {
    db.catalog
        .dicom_instances(&who.ctx, who.scope(), query, DicomAccess::Search)
        .await
        .expect("search")
        .into_iter()
        .map(|i| i.index.sop_instance_uid)
        .collect()
}

async fn instances_are_found_by_their_attributes_in_scope_only(db: &Db) {
    let north = db.office("North Clinic").await;
    let south = db.office("South Clinic").await;
    let case = db.draft_of(&north, Specialty::Radiology, "routine").await;
    store(
        db,
        &north,
        &case,
        &index("1.1", "1.1.1", "1.1.1.1", "Doe^Jane", "20240105"),
    )
    .await;
    store(
        db,
        &north,
        &case,
        &index("1.2", "1.2.1", "1.2.1.1", "Roe^Rick", "20230610"),
    )
    .await;

    let all = DicomQuery::new(QueryLevel::Instance, 100);
    assert_eq!(search(db, &north, &all).await.len(), 2);
    let mut by_name = all.clone();
    by_name.patient_name = Some(NamePattern::parse("doe^*").expect("pattern"));
    assert_eq!(search(db, &north, &by_name).await, vec!["1.1.1.1"]);
    let mut by_date = all.clone();
    by_date.study_date = Some(DateRange::parse("20230101-20231231").expect("range"));
    assert_eq!(search(db, &north, &by_date).await, vec!["1.2.1.1"]);
    let mut combined = by_date.clone();
    combined.study_instance_uid = Some("1.1".to_owned());
    assert!(search(db, &north, &combined).await.is_empty());
    let mut by_accession = all.clone();
    by_accession.accession_number = Some("ACC-1.2".to_owned());
    by_accession.modality = Some("CT".to_owned());
    assert_eq!(search(db, &north, &by_accession).await, vec!["1.2.1.1"]);

    // Another office finds nothing; a specialist only once it is submitted.
    assert!(search(db, &south, &all).await.is_empty());
    let radiologist = db.specialist(Specialty::Radiology).await;
    assert!(search(db, &radiologist, &all).await.is_empty());
    db.catalog
        .submit_case(&north.ctx, north.scope(), case.id)
        .await
        .expect("submit");
    assert_eq!(search(db, &radiologist, &all).await.len(), 2);
    let dermatologist = db.specialist(Specialty::Dermatology).await;
    assert!(search(db, &dermatologist, &all).await.is_empty());

    // Each instance found is audited as listed, in the caller's name.
    let events = db
        .catalog
        .list_audit(
            &relay_workers::audit::AuditContext::operator(),
            &AuditFilter {
                actor: Some(radiologist.user.id.to_string()),
                action: Some("image.list".to_owned()),
                object_id: None,
                office_id: None,
                since: None,
                until: None,
                before_id: None,
                limit: 100,
            },
        )
        .await
        .expect("audit");
    assert_eq!(events.len(), 2);
}

async fn study_pages_count_studies_and_carry_all_their_instances(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db.draft_of(&office, Specialty::Radiology, "routine").await;
    for (study, sop) in [("2.1", "2.1.1.1"), ("2.1", "2.1.1.2"), ("2.2", "2.2.1.1")] {
        let mut i = index(study, &format!("{study}.1"), sop, "Doe^Jane", "20240105");
        if sop.ends_with(".2") {
            i.modality = Some("MR".to_owned());
        }
        store(db, &office, &case, &i).await;
    }
    let mut studies = DicomQuery::new(QueryLevel::Study, 1);
    let first = search(db, &office, &studies).await;
    assert_eq!(
        first,
        vec!["2.1.1.1", "2.1.1.2"],
        "one study, all its instances"
    );
    studies.offset = 1;
    assert_eq!(search(db, &office, &studies).await, vec!["2.2.1.1"]);
    // ModalitiesInStudy: a study with any MR instance, with every instance.
    let mut mr = DicomQuery::new(QueryLevel::Study, 10);
    mr.modality = Some("MR".to_owned());
    assert_eq!(search(db, &office, &mr).await.len(), 2);
    let series = DicomQuery::new(QueryLevel::Series, 10);
    assert_eq!(search(db, &office, &series).await.len(), 3);
    // Still listed under its case like any image.
    let listed = db
        .catalog
        .list_images(&office.ctx, office.scope(), case.id)
        .await
        .expect("list");
    assert_eq!(listed.len(), 3);
}
