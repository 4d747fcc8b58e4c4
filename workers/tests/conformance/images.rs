//! Images and what derive makes of them.

use relay_workers::catalog::{Cases, CatalogError, Derivatives, Images};
use relay_workers::model::{
    Derivative, DeriveResult, DeriveState, ImageId, Sha256, Specialty, Timestamp,
};

use super::fixture::{Db, assert_kind};

on_every_backend!(
    the_same_bytes_in_one_case_are_one_image_with_one_derive_job,
    images_are_scoped_and_only_added_while_the_office_holds_the_case,
    derive_results_replace_renditions_of_the_same_kind_and_frame,
);

async fn the_same_bytes_in_one_case_are_one_image_with_one_derive_job(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db.draft(&office).await;
    let other_case = db.draft(&office).await;
    let first = db.attach(&office, &case, b"same bytes").await;
    // A retry: new id, same bytes, same case.
    let retry = db.image(&office, &case, b"same bytes");
    let (stored, created) = db
        .catalog
        .add_image(&office.ctx, office.scope(), &retry, None)
        .await
        .expect("retry");
    assert!(!created);
    assert_eq!(stored, first);
    // The same bytes in another case are another image of the same blob.
    let elsewhere = db.attach(&office, &other_case, b"same bytes").await;
    assert_ne!(elsewhere.id, first.id);
    assert_eq!(elsewhere.stored_sha256, first.stored_sha256);

    let listed = db
        .catalog
        .list_images(&office.ctx, office.scope(), case.id)
        .await
        .expect("list");
    assert_eq!(listed, vec![first.clone()]);
    let jobs = db.jobs_of("derive").await;
    let for_images: Vec<_> = jobs
        .iter()
        .map(|j| {
            j.payload["image_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        for_images,
        vec![first.id.to_string(), elsewhere.id.to_string()]
    );
    assert!(jobs.iter().all(|j| j.max_attempts == 5 && j.attempts == 0));
    // Ready by the database clock: claimable at once.
    let now = Timestamp::now().as_millis();
    assert!(
        jobs.iter()
            .all(|j| (j.run_at.as_millis() - now).abs() < 5_000)
    );
}

async fn images_are_scoped_and_only_added_while_the_office_holds_the_case(db: &Db) {
    let office = db.office("North Clinic").await;
    let stranger = db.office("South Clinic").await;
    let derm = db.specialist(Specialty::Dermatology).await;
    let case = db.draft(&office).await;
    let image = db.attach(&office, &case, b"photo").await;

    let not_found = CatalogError::is_not_found;
    assert_kind(
        db.catalog.upload_target(stranger.scope(), case.id).await,
        not_found,
        "upload into another office's case",
    );
    let foreign = db.image(&stranger, &case, b"intruder");
    assert_kind(
        db.catalog
            .add_image(&stranger.ctx, stranger.scope(), &foreign, None)
            .await,
        not_found,
        "add into another office's case",
    );
    assert_kind(
        db.catalog
            .get_image(&stranger.ctx, stranger.scope(), image.id, false)
            .await,
        not_found,
        "another office's image",
    );
    assert_kind(
        db.catalog
            .list_images(&stranger.ctx, stranger.scope(), case.id)
            .await,
        not_found,
        "another office's images",
    );
    assert_kind(
        db.catalog
            .get_image(&derm.ctx, derm.scope(), image.id, false)
            .await,
        not_found,
        "an image of a draft, to a specialist",
    );
    assert_kind(
        db.catalog
            .get_image(&office.ctx, office.scope(), ImageId::generate(), true)
            .await,
        not_found,
        "a missing image",
    );

    db.catalog
        .submit_case(&office.ctx, office.scope(), case.id)
        .await
        .expect("submit");
    let got = db
        .catalog
        .get_image(&derm.ctx, derm.scope(), image.id, true)
        .await
        .expect("the specialist sees it once submitted");
    assert_eq!(got, image);
    assert_kind(
        db.catalog.upload_target(office.scope(), case.id).await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "upload target of a submitted case",
    );
    let late = db.image(&office, &case, b"late photo");
    assert_kind(
        db.catalog
            .add_image(&office.ctx, office.scope(), &late, None)
            .await,
        |e| matches!(e, CatalogError::Conflict(_)),
        "add to a submitted case",
    );
}

fn rendition(image: ImageId, kind: &str, frame: u32, bytes: &[u8], version: u32) -> Derivative {
    Derivative {
        image_id: image,
        kind: kind.to_owned(),
        frame,
        voi: String::new(),
        derive_version: version,
        sha256: Sha256::of(bytes),
        size: u64::try_from(bytes.len()).expect("size"),
        media_type: "image/webp".to_owned(),
        width: 256,
        height: 192,
        created_at: Timestamp::now(),
    }
}

async fn derive_results_replace_renditions_of_the_same_kind_and_frame(db: &Db) {
    let office = db.office("North Clinic").await;
    let case = db.draft(&office).await;
    let image = db.attach(&office, &case, b"photo").await;
    let twin = db.attach(&office, &case, b"another photo").await;
    assert_eq!(
        db.catalog
            .image_for_job(image.id)
            .await
            .expect("image")
            .derive_state,
        DeriveState::Pending
    );
    // Both images' thumbnails are the same bytes: one blob, two renditions.
    let first = DeriveResult {
        version: 1,
        attributes: serde_json::json!({ "study_instance_uid": "1.2.3", "camera": "X" }),
        frames: 1,
        renditions: vec![
            rendition(image.id, "thumbnail", 0, b"thumb", 1),
            rendition(image.id, "preview", 0, b"preview v1", 1),
        ],
    };
    db.catalog
        .record_derive(image.id, &first)
        .await
        .expect("derive");
    db.catalog
        .record_derive(
            twin.id,
            &DeriveResult {
                renditions: vec![rendition(twin.id, "thumbnail", 0, b"thumb", 1)],
                ..first.clone()
            },
        )
        .await
        .expect("derive twin");
    // Derive runs again (at least once): the newer result wins, no duplicate.
    let second = DeriveResult {
        version: 2,
        renditions: vec![rendition(image.id, "preview", 0, b"preview v2", 2)],
        ..first.clone()
    };
    db.catalog
        .record_derive(image.id, &second)
        .await
        .expect("derive again");

    let preview = db
        .catalog
        .rendition(image.id, "preview", 0, "")
        .await
        .expect("rendition")
        .expect("a preview");
    assert_eq!(preview, second.renditions[0]);
    let thumb = db
        .catalog
        .rendition(image.id, "thumbnail", 0, "")
        .await
        .expect("rendition")
        .expect("a thumbnail");
    assert_eq!(thumb.derive_version, 1);
    assert!(
        db.catalog
            .rendition(image.id, "frame", 0, "")
            .await
            .expect("rendition")
            .is_none()
    );
    let derived = db.catalog.image_for_job(image.id).await.expect("image");
    assert_eq!(derived.derive_state, DeriveState::Ready);
    assert_eq!(derived.frames, Some(1));
    assert_eq!(derived.attributes, Some(first.attributes.clone()));

    // A frame with a requested window, made on demand.
    let frame = Derivative {
        voi: "40,400".to_owned(),
        ..rendition(image.id, "frame", 0, b"frame", 2)
    };
    db.catalog
        .record_rendition(&frame)
        .await
        .expect("rendition");
    db.catalog
        .record_rendition(&frame)
        .await
        .expect("idempotent");
    assert_eq!(
        db.catalog
            .rendition(image.id, "frame", 0, "40,400")
            .await
            .expect("rendition"),
        Some(frame)
    );

    db.catalog
        .record_derive_failure(twin.id, DeriveState::Unsupported, "JPEG-LS", 2)
        .await
        .expect("failure");
    let failed = db.catalog.image_for_job(twin.id).await.expect("image");
    assert_eq!(
        (failed.derive_state, failed.derive_error.as_deref()),
        (DeriveState::Unsupported, Some("JPEG-LS"))
    );
    assert_kind(
        db.catalog.image_for_job(ImageId::generate()).await,
        CatalogError::is_not_found,
        "a missing image",
    );
}
