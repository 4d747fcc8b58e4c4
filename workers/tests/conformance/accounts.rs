//! Offices, users and tokens.

use relay_workers::audit::AuditContext;
use relay_workers::catalog::{Accounts, CatalogError, Images};
use relay_workers::model::{NewUser, OfficeId, Principal, Specialty, Timestamp, UserId};
use relay_workers::token::IssuedToken;

use super::fixture::{Db, assert_kind, text};

on_every_backend!(
    offices_and_users_are_listed_in_creation_order,
    a_user_of_a_missing_office_is_refused,
    tokens_store_a_digest_and_revoke_once,
    office_settings_are_kept,
);

async fn offices_and_users_are_listed_in_creation_order(db: &Db) {
    let a = db.office("North Clinic").await;
    let b = db.office("South Clinic").await;
    let reader = db.specialist(Specialty::Radiology).await;
    let offices = db.catalog.list_offices().await.expect("offices");
    assert_eq!(
        offices.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        vec!["North Clinic", "South Clinic"]
    );
    let of_a = db
        .catalog
        .list_users(Some(a.office_id()))
        .await
        .expect("users");
    assert_eq!(
        of_a.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![a.user.id]
    );
    let all = db.catalog.list_users(None).await.expect("users");
    assert_eq!(
        all.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![a.user.id, b.user.id, reader.user.id]
    );
    assert_eq!(all[2].specialty, Some(Specialty::Radiology));
    assert_eq!(all[2].office, None);
}

async fn a_user_of_a_missing_office_is_refused(db: &Db) {
    assert_kind(
        db.catalog
            .create_user(
                &AuditContext::operator(),
                NewUser::Office {
                    name: text("Nobody"),
                    office: OfficeId::generate(),
                },
            )
            .await,
        CatalogError::is_not_found,
        "user of a missing office",
    );
    let token = IssuedToken::generate().expect("token");
    assert_kind(
        db.catalog
            .create_token(&AuditContext::operator(), UserId::generate(), &token, None)
            .await,
        CatalogError::is_not_found,
        "token of a missing user",
    );
    assert!(db.catalog.list_users(None).await.expect("users").is_empty());
}

async fn tokens_store_a_digest_and_revoke_once(db: &Db) {
    let office = db.office("North Clinic").await;
    let reader = db.specialist(Specialty::Dermatology).await;
    let ctx = AuditContext::operator();
    let expires = Timestamp::from_millis(Timestamp::now().as_millis() + 86_400_000);
    let token = IssuedToken::generate().expect("token");
    let info = db
        .catalog
        .create_token(&ctx, office.user.id, &token, Some(expires))
        .await
        .expect("token");
    let other = IssuedToken::generate().expect("token");
    db.catalog
        .create_token(&ctx, reader.user.id, &other, None)
        .await
        .expect("token");

    let creds = db
        .catalog
        .token_credentials(token.id())
        .await
        .expect("credentials")
        .expect("known");
    assert_eq!(creds.digest.to_hex(), token.secret_digest().to_hex());
    assert_eq!(creds.expires_at, Some(expires));
    assert_eq!(creds.principal, office.principal);
    let reader_creds = db
        .catalog
        .token_credentials(other.id())
        .await
        .expect("credentials")
        .expect("known");
    assert_eq!(
        reader_creds.principal,
        Principal::Specialist {
            user: reader.user.id,
            specialty: Specialty::Dermatology
        }
    );
    let unknown = IssuedToken::generate().expect("token");
    assert!(
        db.catalog
            .token_credentials(unknown.id())
            .await
            .expect("credentials")
            .is_none()
    );

    let listed = db
        .catalog
        .list_tokens(Some(office.user.id))
        .await
        .expect("tokens");
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![info.id]
    );
    assert_eq!(db.catalog.list_tokens(None).await.expect("tokens").len(), 2);

    let first = db
        .catalog
        .revoke_token(&ctx, info.id)
        .await
        .expect("revoke");
    let revoked_at = first.revoked_at.expect("revoked");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = db
        .catalog
        .revoke_token(&ctx, info.id)
        .await
        .expect("revoke");
    assert_eq!(second.revoked_at, Some(revoked_at), "the first time stays");
    assert_kind(
        db.catalog.revoke_token(&ctx, unknown.id()).await,
        CatalogError::is_not_found,
        "revoke unknown",
    );
}

async fn office_settings_are_kept(db: &Db) {
    let office = db.office("North Clinic").await;
    let ctx = AuditContext::operator();
    let id = office.office_id();
    assert_eq!(
        db.catalog.office_notify_email(id).await.expect("email"),
        None
    );
    db.catalog
        .set_notify_email(&ctx, id, Some("desk@north.example".to_owned()))
        .await
        .expect("set email");
    assert_eq!(
        db.catalog
            .office_notify_email(id)
            .await
            .expect("email")
            .as_deref(),
        Some("desk@north.example")
    );
    db.catalog
        .set_notify_email(&ctx, id, None)
        .await
        .expect("clear email");
    assert_eq!(
        db.catalog.office_notify_email(id).await.expect("email"),
        None
    );

    // The location setting is read back with every upload target.
    let case = db.draft(&office).await;
    let target = |db: &Db| {
        let scope = office.scope();
        let catalog = db.catalog.clone();
        async move { catalog.upload_target(scope, case.id).await.expect("target") }
    };
    assert!(target(db).await.strip_location, "on by default");
    db.catalog
        .set_strip_location(&ctx, id, false)
        .await
        .expect("set strip");
    assert!(!target(db).await.strip_location);
    assert_eq!(target(db).await.office_id, id);

    let missing = OfficeId::generate();
    assert_kind(
        db.catalog.set_strip_location(&ctx, missing, true).await,
        CatalogError::is_not_found,
        "setting of a missing office",
    );
    assert_kind(
        db.catalog.set_notify_email(&ctx, missing, None).await,
        CatalogError::is_not_found,
        "setting of a missing office",
    );
}
