//! Consult cases in SQL. Every statement is scoped: the scope's office and
//! specialty are bound into the WHERE clause, so a case outside the scope is
//! never read, never written, and answers `NotFound` like a missing one.

use async_trait::async_trait;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

use super::SqlCatalog;
use super::audit::record;
use super::rows::{self, case_columns};
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CaseQuery, Cases, CatalogError, Page};
use crate::model::{CancelReason, Case, CaseAction, CaseId, CasePatch, CaseScope, Timestamp};

/// The scope condition shared by every case statement: `$2` is the office
/// filter, `$3` the specialty filter (a specialist never sees drafts).
macro_rules! scoped {
    () => {
        "($2 IS NULL OR office_id = $2) AND ($3 IS NULL OR (specialty = $3 AND status <> 'draft'))"
    };
}
pub(super) use scoped;

/// Inserts a new case row (its audit event is the caller's).
pub(super) async fn insert_case(conn: &mut AnyConnection, case: &Case) -> Result<(), CatalogError> {
    bind_case(
        sqlx::query(concat!(
            "INSERT INTO cases (",
            case_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"
        )),
        case,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Binds every column of `cases` in the order of `case_columns!`.
fn bind_case(
    query: Query<'static, Any, AnyArguments>,
    case: &Case,
) -> Query<'static, Any, AnyArguments> {
    let c = &case.clinical;
    let opt = |v: Option<&dyn ToString>| v.map(|v| v.to_string());
    query
        .bind(case.id.to_string())
        .bind(case.office_id.to_string())
        .bind(case.created_by.to_string())
        .bind(case.status.as_str())
        .bind(case.specialty.as_str())
        .bind(case.priority.as_str())
        .bind(case.patient.name.as_str().to_owned())
        .bind(String::from(case.patient.birth_date))
        .bind(case.patient.sex.as_str())
        .bind(case.patient.mrn.as_str().to_owned())
        .bind(case.question.to_string())
        .bind(case.history.to_string())
        .bind(opt(c.body_site.as_ref().map(|v| v as _)))
        .bind(opt(c.duration.as_ref().map(|v| v as _)))
        .bind(opt(c.medications.as_ref().map(|v| v as _)))
        .bind(opt(c.allergies.as_ref().map(|v| v as _)))
        .bind(opt(c.modality.as_ref().map(|v| v as _)))
        .bind(opt(c.body_part.as_ref().map(|v| v as _)))
        .bind(opt(case.cancel_reason.as_ref().map(|v| v as _)))
        .bind(case.created_at.as_millis())
        .bind(case.updated_at.as_millis())
        .bind(case.submitted_at.map(|t| t.as_millis()))
        .bind(case.cancelled_at.map(|t| t.as_millis()))
        .bind(case.queued_at.map(|t| t.as_millis()))
        .bind(case.due_at.map(|t| t.as_millis()))
        .bind(case.claimed_by.map(|u| u.to_string()))
        .bind(case.claim_until.map(|t| t.as_millis()))
        .bind(case.reported_at.map(|t| t.as_millis()))
        .bind(case.acknowledged_at.map(|t| t.as_millis()))
}

/// A case being changed inside a write transaction.
pub(super) struct Change {
    pub(super) tx: super::WriteTx,
    pub(super) case: Case,
    /// The database clock at the start of the change.
    pub(super) now: Timestamp,
    before: crate::model::CaseStatus,
}

impl SqlCatalog {
    /// Opens a write transaction, loads the case in scope, locked for the
    /// rest of the transaction, and reads the database clock.
    ///
    /// The clock is read after the lock is granted: on PostgreSQL a change
    /// may wait for another one to the same case, and a claim's lease or a
    /// check that a claim is still live must be timed from when the waiting
    /// ended.
    pub(super) async fn begin_change(
        &self,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Change, CatalogError> {
        let mut tx = self.begin_write().await?;
        let case = fetch_scoped(&mut tx, self.dialect.select_case_for_update, scope, id).await?;
        let now = self.db_now(&mut tx).await?;
        Ok(Change {
            tx,
            before: case.status,
            case,
            now,
        })
    }

    /// Writes the changed case back with its history row (when the status
    /// moved) and its audit event, and commits.
    pub(super) async fn finish_change(
        &self,
        mut change: Change,
        ctx: &AuditContext,
        action: AuditAction,
        note: Option<String>,
    ) -> Result<Case, CatalogError> {
        let tx = &mut change.tx;
        let case = &mut change.case;
        case.updated_at = change.now;
        bind_case(
            sqlx::query(
                "UPDATE cases SET office_id = $2, created_by = $3, status = $4, specialty = $5, \
                 priority = $6, patient_name = $7, patient_birth_date = $8, patient_sex = $9, \
                 patient_mrn = $10, question = $11, history = $12, body_site = $13, duration = $14, \
                 medications = $15, allergies = $16, modality = $17, body_part = $18, \
                 cancel_reason = $19, created_at = $20, updated_at = $21, submitted_at = $22, \
                 cancelled_at = $23, queued_at = $24, due_at = $25, claimed_by = $26, claim_until = $27, \
                 reported_at = $28, acknowledged_at = $29 WHERE id = $1",
            ),
            case,
        )
        .execute(&mut **tx)
        .await?;
        if case.status != change.before {
            sqlx::query(
                "INSERT INTO case_history (case_id, from_status, to_status, actor, at, note) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(case.id.to_string())
            .bind(change.before.as_str())
            .bind(case.status.as_str())
            .bind(ctx.actor.id())
            .bind(case.updated_at.as_millis())
            .bind(note)
            .execute(&mut **tx)
            .await?;
        }
        record(
            tx,
            ctx,
            action,
            Some(case.id.to_string()),
            Some(case.office_id),
        )
        .await?;
        change.tx.commit().await?;
        Ok(change.case)
    }

    /// Loads a case in scope, lets `change` edit it (given the database
    /// clock), and writes it back with history and audit, in one transaction.
    async fn change_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        action: AuditAction,
        note: Option<String>,
        change: impl FnOnce(&mut Case, Timestamp) -> Result<(), CatalogError> + Send,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        change(&mut c.case, c.now)?;
        self.finish_change(c, ctx, action, note).await
    }
}

/// Loads a case in scope with `statement` (`$1` id, then the scope's two
/// filters); `NotFound` outside the scope.
pub(super) async fn fetch_scoped(
    conn: &mut AnyConnection,
    statement: &'static str,
    scope: CaseScope,
    id: CaseId,
) -> Result<Case, CatalogError> {
    let row = sqlx::query(statement)
        .bind(id.to_string())
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(CatalogError::NotFound { what: "case" })?;
    rows::case(&row)
}

const SELECT_SCOPED: &str = concat!(
    "SELECT ",
    case_columns!(),
    " FROM cases WHERE id = $1 AND ",
    scoped!()
);

#[async_trait]
impl Cases for SqlCatalog {
    async fn create_case(&self, ctx: &AuditContext, case: &Case) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        insert_case(&mut tx, case).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::CaseCreate,
            Some(case.id.to_string()),
            Some(case.office_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError> {
        let mut tx = self.begin_write().await?;
        let case = fetch_scoped(&mut tx, SELECT_SCOPED, scope, id).await?;
        record(
            &mut tx,
            ctx,
            AuditAction::CaseRead,
            Some(case.id.to_string()),
            Some(case.office_id),
        )
        .await?;
        tx.commit().await?;
        Ok(case)
    }

    async fn list_cases(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        query: &CaseQuery,
    ) -> Result<Page<Case>, CatalogError> {
        let status = query.status.map(|s| s.as_str());
        let offset = i64::from(query.page.saturating_sub(1)) * i64::from(query.per_page);
        let mut tx = self.begin_write().await?;
        let total: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM cases WHERE ($1 IS NULL OR status = $1) AND ",
            scoped!()
        ))
        .bind(status)
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_one(&mut *tx)
        .await?;
        let items = sqlx::query(concat!(
            "SELECT ",
            case_columns!(),
            " FROM cases WHERE ($1 IS NULL OR status = $1) AND ",
            scoped!(),
            " ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(status)
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .bind(i64::from(query.per_page))
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(rows::case)
        .collect::<Result<Vec<_>, _>>()?;
        // One event per patient shown: "who saw this patient" is one query.
        for case in &items {
            record(
                &mut tx,
                ctx,
                AuditAction::CaseList,
                Some(case.id.to_string()),
                Some(case.office_id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Page {
            items,
            page: query.page,
            per_page: query.per_page,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn update_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        patch: CasePatch,
    ) -> Result<Case, CatalogError> {
        self.change_case(ctx, scope, id, AuditAction::CaseUpdate, None, |case, _| {
            if !case.status.is_editable() {
                return Err(CatalogError::Conflict(format!(
                    "case is {}: only a draft can be edited",
                    case.status.as_str()
                )));
            }
            case.apply_patch(patch);
            Ok(())
        })
        .await
    }

    async fn submit_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        let next = c.case.status.apply(CaseAction::Submit)?;
        // Counted under the case's lock: an image is added only under the
        // same lock, while the case is still a draft (see `add_image`).
        let images: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM images WHERE case_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *c.tx)
            .await?;
        if images == 0 {
            return Err(CatalogError::Conflict(
                "the case has no images: attach at least one before submitting".to_owned(),
            ));
        }
        let now = c.now;
        let case = &mut c.case;
        case.status = next;
        case.submitted_at = Some(now);
        case.queued_at = Some(now);
        case.due_at = Some(now.plus(self.sla.due_in(case.specialty, case.priority)));
        self.finish_change(c, ctx, AuditAction::CaseSubmit, None)
            .await
    }

    async fn cancel_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        reason: CancelReason,
    ) -> Result<Case, CatalogError> {
        let note = Some(reason.to_string());
        self.change_case(
            ctx,
            scope,
            id,
            AuditAction::CaseCancel,
            note,
            |case, now| {
                case.status = case.status.apply(CaseAction::Cancel)?;
                case.cancelled_at = Some(now);
                case.claimed_by = None;
                case.claim_until = None;
                case.cancel_reason = Some(reason);
                Ok(())
            },
        )
        .await
    }
}
