//! Reminders, overdue notices and escalations in SQL.
//!
//! Each notice is claimed by one conditional `UPDATE … RETURNING` that sets
//! its marker column; the condition is repeated outside the batch subselect
//! so that when two processes sweep at once, the second re-checks the row
//! after the first commits (PostgreSQL re-evaluates the WHERE clause of an
//! UPDATE on a row changed under it; SQLite has one writer) and finds
//! nothing left to send. The notices themselves — in-app notification,
//! deliver and e-mail jobs, escalation job, audit event — are written in the
//! same transaction as the marker, so a notice is never marked sent without
//! being queued, nor queued twice.

use async_trait::async_trait;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use super::audit::record;
use super::consult::{enqueue_delivery, notify};
use super::rows::{self, case_columns};
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, Notices};
use crate::model::{
    Case, CaseId, Escalation, OfficeId, PatientName, ReminderPolicy, ReminderSweep, Specialty,
    Timestamp,
};

/// How many notices of each kind one sweep sends; the next sweep goes on.
const BATCH: i64 = 200;

/// Statuses in which a case waits on the specialist side, so its service
/// level runs. (While information is requested, it waits on the office.)
macro_rules! waiting_on_specialist {
    () => {
        "status IN ('submitted', 'in_review')"
    };
}

/// `$1` now, `$2` cutoff (now − renotify_after), `$3` most reminders per report, `$4` batch.
const RENOTIFY: &str = concat!(
    "UPDATE cases SET reminders_sent = reminders_sent + 1, reminded_at = $1 \
     WHERE id IN (SELECT id FROM cases WHERE status = 'reported' AND reminders_sent < $3 \
       AND COALESCE(reminded_at, reported_at) <= $2 ORDER BY reported_at, id LIMIT $4) \
     AND status = 'reported' AND reminders_sent < $3 AND COALESCE(reminded_at, reported_at) <= $2 \
     RETURNING ",
    case_columns!()
);

/// `$1` now, `$2` limit.
const OVERDUE: &str = concat!(
    "UPDATE cases SET overdue_noticed_at = $1 \
     WHERE id IN (SELECT id FROM cases WHERE ",
    waiting_on_specialist!(),
    " AND overdue_noticed_at IS NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2) \
     AND overdue_noticed_at IS NULL AND due_at <= $1 AND ",
    waiting_on_specialist!(),
    " RETURNING ",
    case_columns!()
);

/// `$1` now, `$2` cutoff (now − escalate_after), `$3` limit.
const ESCALATE: &str = concat!(
    "UPDATE cases SET escalated_at = $1 \
     WHERE id IN (SELECT id FROM cases WHERE ",
    waiting_on_specialist!(),
    " AND escalated_at IS NULL AND due_at <= $2 ORDER BY due_at, id LIMIT $3) \
     AND escalated_at IS NULL AND due_at <= $2 AND ",
    waiting_on_specialist!(),
    " RETURNING ",
    case_columns!()
);

const OVERDUE_COUNTS: &str = concat!(
    "SELECT specialty, COUNT(*) AS n FROM cases WHERE ",
    waiting_on_specialist!(),
    " AND due_at <= $1 GROUP BY specialty ORDER BY specialty"
);

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn cases(rows: &[AnyRow]) -> Result<Vec<Case>, CatalogError> {
    rows.iter().map(rows::case).collect()
}

/// Tells a case's office of `event` on every channel (in the app, webhook,
/// e-mail) and audits it as Relay's act.
async fn tell_office(
    tx: &mut AnyConnection,
    ctx: &AuditContext,
    case: &Case,
    (event, action): (&str, AuditAction),
    now: Timestamp,
) -> Result<(), CatalogError> {
    notify(tx, case, event, now).await?;
    enqueue_delivery(tx, case, event, now).await?;
    record(
        tx,
        ctx,
        action,
        Some(case.id.to_string()),
        Some(case.office_id),
    )
    .await
}

async fn enqueue_escalation(
    tx: &mut AnyConnection,
    escalation: &Escalation,
    now: Timestamp,
) -> Result<(), CatalogError> {
    let payload =
        serde_json::to_string(escalation).map_err(|e| CatalogError::corrupt("escalation", e))?;
    sqlx::query(
        "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, updated_at) \
         VALUES ('escalate', $1, 'queued', 10, $2, $2, $2)",
    )
    .bind(payload)
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Notices for SqlCatalog {
    async fn sweep_reminders(
        &self,
        policy: &ReminderPolicy,
    ) -> Result<ReminderSweep, CatalogError> {
        let ctx = AuditContext::system("reminders");
        let mut tx = self.begin_write().await?;
        let now = Timestamp::from_millis(
            sqlx::query_scalar(self.dialect.select_now)
                .fetch_one(&mut *tx)
                .await?,
        );
        let mut sweep = ReminderSweep::default();

        let reminded = sqlx::query(RENOTIFY)
            .bind(now.as_millis())
            .bind(
                now.as_millis()
                    .saturating_sub(millis(policy.renotify_after)),
            )
            .bind(i64::from(policy.renotify_limit))
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for case in cases(&reminded)? {
            let event = ("report_unacknowledged", AuditAction::CaseRemind);
            tell_office(&mut tx, &ctx, &case, event, now).await?;
            sweep.renotified.push(case.id);
        }

        let overdue = sqlx::query(OVERDUE)
            .bind(now.as_millis())
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for case in cases(&overdue)? {
            let event = ("case_overdue", AuditAction::CaseOverdue);
            tell_office(&mut tx, &ctx, &case, event, now).await?;
            sweep.overdue.push(case.id);
        }

        let escalated = sqlx::query(ESCALATE)
            .bind(now.as_millis())
            .bind(
                now.as_millis()
                    .saturating_sub(millis(policy.escalate_after)),
            )
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        for case in cases(&escalated)? {
            let Some(due_at) = case.due_at else { continue };
            let escalation = Escalation {
                case_id: case.id,
                office_id: case.office_id,
                specialty: case.specialty,
                priority: case.priority,
                due_at,
            };
            enqueue_escalation(&mut tx, &escalation, now).await?;
            record(
                &mut tx,
                &ctx,
                AuditAction::CaseEscalate,
                Some(case.id.to_string()),
                Some(case.office_id),
            )
            .await?;
            sweep.escalated.push(escalation);
        }

        tx.commit().await?;
        Ok(sweep)
    }

    async fn overdue_counts(&self) -> Result<Vec<(Specialty, u64)>, CatalogError> {
        let mut conn = self.pool.acquire().await?;
        let now: i64 = sqlx::query_scalar(self.dialect.select_now)
            .fetch_one(&mut *conn)
            .await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(OVERDUE_COUNTS)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
        rows.into_iter()
            .map(|(specialty, n)| {
                let specialty =
                    Specialty::parse(&specialty).map_err(|e| CatalogError::corrupt("case", e))?;
                Ok((specialty, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn patient_name_for_delivery(
        &self,
        case: CaseId,
        office: OfficeId,
        delivery_id: &str,
    ) -> Result<PatientName, CatalogError> {
        let mut tx = self.begin_write().await?;
        let name: Option<String> =
            sqlx::query_scalar("SELECT patient_name FROM cases WHERE id = $1 AND office_id = $2")
                .bind(case.to_string())
                .bind(office.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let name = name.ok_or(CatalogError::NotFound { what: "case" })?;
        record(
            &mut tx,
            &AuditContext::system(delivery_id),
            AuditAction::CaseRead,
            Some(case.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        PatientName::try_from(name).map_err(|e| CatalogError::corrupt("case", e))
    }
}
