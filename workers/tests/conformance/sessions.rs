//! Browser sessions: stored by digest, tied to their token, ended by
//! sign-out, purged once over.

use std::time::Duration;

use relay_workers::audit::{AuditContext, AuditFilter};
use relay_workers::catalog::{Accounts, AuditLog, CatalogError, WebSessions};
use relay_workers::model::{Principal, Timestamp, TokenId};
use relay_workers::session::{SessionPolicy, SessionSecret};
use relay_workers::token::IssuedToken;

use super::fixture::{Db, Party, assert_kind};

on_every_backend!(
    a_session_reads_back_with_its_account_and_never_its_secret,
    revoking_the_token_ends_the_session,
    sign_out_deletes_the_session_once,
    ended_sessions_are_purged,
    a_session_needs_a_real_token,
);

async fn token_of(db: &Db, party: &Party) -> TokenId {
    let token = IssuedToken::generate().expect("token");
    db.catalog
        .create_token(&AuditContext::operator(), party.user.id, &token, None)
        .await
        .expect("token")
        .id
}

async fn a_session_reads_back_with_its_account_and_never_its_secret(db: &Db) {
    let office = db.office("North Clinic").await;
    let token = token_of(db, &office).await;
    let secret = SessionSecret::generate().expect("rng");
    let expires = Timestamp::now().plus(Duration::from_secs(3600));
    db.catalog
        .create_session(&office.ctx, &secret.key(), token, expires)
        .await
        .expect("session");
    let stored = db
        .catalog
        .session(&secret.key())
        .await
        .expect("read")
        .expect("present");
    assert_eq!(stored.token_id, token);
    assert_eq!(stored.expires_at, expires);
    assert_eq!(stored.created_at, stored.last_seen_at);
    assert!(
        matches!(stored.principal, Principal::Office { office: o, .. } if o == office.office_id())
    );
    let live = SessionPolicy::default()
        .check(Some(stored.clone()), Timestamp::now())
        .expect("live");
    assert_eq!(live.principal, office.principal);
    // A later use moves last_seen_at forward, an earlier one never back.
    let later = stored.last_seen_at.plus(Duration::from_secs(90));
    db.catalog
        .touch_session(&secret.key(), later)
        .await
        .expect("touch");
    db.catalog
        .touch_session(&secret.key(), stored.last_seen_at)
        .await
        .expect("touch");
    let touched = db
        .catalog
        .session(&secret.key())
        .await
        .expect("read")
        .expect("present");
    assert_eq!(touched.last_seen_at, later);
    // Only the digest is kept: the secret is nowhere in the table.
    let found = db
        .execute_text(
            "UPDATE web_sessions SET created_at = created_at WHERE key_sha256 = $1",
            &secret.to_string(),
        )
        .await
        .expect("query");
    assert_eq!(found, 0);
    let other = SessionSecret::generate().expect("rng");
    assert!(
        db.catalog
            .session(&other.key())
            .await
            .expect("read")
            .is_none()
    );
    let events = db
        .catalog
        .list_audit(
            &AuditContext::operator(),
            &AuditFilter {
                action: Some("session.create".to_owned()),
                limit: 10,
                ..AuditFilter::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].object_id.as_deref(),
        Some(token.to_string().as_str())
    );
    assert_eq!(events[0].office_id, Some(office.office_id()));
}

async fn revoking_the_token_ends_the_session(db: &Db) {
    let office = db.office("North Clinic").await;
    let token = token_of(db, &office).await;
    let secret = SessionSecret::generate().expect("rng");
    let expires = Timestamp::now().plus(Duration::from_secs(3600));
    db.catalog
        .create_session(&office.ctx, &secret.key(), token, expires)
        .await
        .expect("session");
    db.catalog
        .revoke_token(&AuditContext::operator(), token)
        .await
        .expect("revoke");
    let stored = db.catalog.session(&secret.key()).await.expect("read");
    assert_eq!(
        SessionPolicy::default()
            .check(stored, Timestamp::now())
            .err(),
        Some(relay_workers::auth::AuthError::Revoked)
    );
}

async fn sign_out_deletes_the_session_once(db: &Db) {
    let office = db.office("North Clinic").await;
    let token = token_of(db, &office).await;
    let secret = SessionSecret::generate().expect("rng");
    let expires = Timestamp::now().plus(Duration::from_secs(3600));
    db.catalog
        .create_session(&office.ctx, &secret.key(), token, expires)
        .await
        .expect("session");
    assert!(
        db.catalog
            .end_session(&office.ctx, &secret.key())
            .await
            .expect("end")
    );
    assert!(
        !db.catalog
            .end_session(&office.ctx, &secret.key())
            .await
            .expect("end again")
    );
    assert!(
        db.catalog
            .session(&secret.key())
            .await
            .expect("read")
            .is_none()
    );
}

async fn ended_sessions_are_purged(db: &Db) {
    let office = db.office("North Clinic").await;
    let now = Timestamp::now();
    let hour = Duration::from_secs(3600);
    let live = SessionSecret::generate().expect("rng");
    let past_lifetime = SessionSecret::generate().expect("rng");
    let revoked = SessionSecret::generate().expect("rng");
    let token = token_of(db, &office).await;
    let doomed = token_of(db, &office).await;
    for (secret, token, expires) in [
        (&live, token, now.plus(hour)),
        (&past_lifetime, token, now),
        (&revoked, doomed, now.plus(hour)),
    ] {
        db.catalog
            .create_session(&office.ctx, &secret.key(), token, expires)
            .await
            .expect("session");
    }
    db.catalog
        .revoke_token(&AuditContext::operator(), doomed)
        .await
        .expect("revoke");
    let idle_before = Timestamp::from_millis(now.as_millis() - 60_000);
    let purged = db
        .catalog
        .purge_sessions(now, idle_before)
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    assert!(
        db.catalog
            .session(&live.key())
            .await
            .expect("read")
            .is_some()
    );
    for gone in [&past_lifetime, &revoked] {
        assert!(
            db.catalog
                .session(&gone.key())
                .await
                .expect("read")
                .is_none()
        );
    }
    // Idle: unused since before the cut.
    let later = now.plus(hour);
    assert_eq!(
        db.catalog
            .purge_sessions(now, later)
            .await
            .expect("purge idle"),
        1
    );
    assert_eq!(
        db.catalog.purge_sessions(now, later).await.expect("again"),
        0
    );
}

async fn a_session_needs_a_real_token(db: &Db) {
    let office = db.office("North Clinic").await;
    let secret = SessionSecret::generate().expect("rng");
    assert_kind(
        db.catalog
            .create_session(
                &office.ctx,
                &secret.key(),
                TokenId::generate(),
                Timestamp::now(),
            )
            .await,
        CatalogError::is_not_found,
        "a session of a missing token",
    );
}
