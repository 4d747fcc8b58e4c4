//! The consult loop in SQL. Every change goes through `begin_change` /
//! `finish_change` (one transaction: the case, its history row, its audit
//! event) and adds its own writes — report, message, notification, deliver
//! job — to that same transaction.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{AnyConnection, Row};

use super::SqlCatalog;
use super::audit::record;
use super::cases::scoped;
use super::rows::{self, case_columns};
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, Consult, HistoryEntry, Page};
use crate::model::{
    Addendum, Case, CaseAction, CaseId, CaseMessage, CaseScope, CaseStatus, InPersonVisit,
    Notification, OfficeId, Report, ReportDraft, ReportText, Specialty, Timestamp, UserId,
    WorklistItem, WorklistQuery, seal,
};

/// The caller must hold a live claim on the case.
fn require_claim(case: &Case, specialist: UserId, now: Timestamp) -> Result<(), CatalogError> {
    let held = case.status == CaseStatus::InReview
        && case.claimed_by == Some(specialist)
        && case.claim_until.is_some_and(|until| until >= now);
    if held {
        Ok(())
    } else {
        Err(CatalogError::ClaimRequired)
    }
}

fn release_claim(case: &mut Case) {
    case.claimed_by = None;
    case.claim_until = None;
}

pub(super) async fn notify(
    tx: &mut AnyConnection,
    case: &Case,
    event: &str,
    now: Timestamp,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO notifications (office_id, case_id, event, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(case.office_id.to_string())
    .bind(case.id.to_string())
    .bind(event.to_owned())
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Queues delivery of an event to the office's configured channels.
pub(super) async fn enqueue_delivery(
    tx: &mut AnyConnection,
    case: &Case,
    event: &str,
    now: Timestamp,
) -> Result<(), CatalogError> {
    // One job per channel, so a webhook and an e-mail retry independently.
    let payload = serde_json::json!({
        "delivery_id": format!("dlv_{}", uuid::Uuid::now_v7().simple()),
        "case_id": case.id,
        "office_id": case.office_id,
        "event": event,
        "occurred_at": now,
    })
    .to_string();
    sqlx::query(
        "INSERT INTO jobs (kind, payload, state, max_attempts, run_at, created_at, updated_at) \
         VALUES ('deliver', $1, 'queued', 10, $2, $2, $2), ('email', $1, 'queued', 10, $2, $2, $2)",
    )
    .bind(payload)
    .bind(now.as_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn add_message(
    tx: &mut AnyConnection,
    case: CaseId,
    kind: &str,
    author: UserId,
    text: &ReportText,
    now: Timestamp,
) -> Result<(), CatalogError> {
    sqlx::query("INSERT INTO case_messages (case_id, kind, author, text, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(case.to_string())
        .bind(kind.to_owned())
        .bind(author.to_string())
        .bind(text.as_str().to_owned())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn corrupt(e: impl std::fmt::Display) -> CatalogError {
    CatalogError::corrupt("report", e)
}

/// The report row of a case, with its addenda.
async fn load_report(
    conn: &mut AnyConnection,
    case: CaseId,
) -> Result<Option<Report>, CatalogError> {
    let Some(row) = sqlx::query(
        "SELECT id, case_id, author, findings, impression, recommendation, in_person_visit, diagnosis_codes, \
         status, created_at, updated_at, signed_at, sha256 FROM reports WHERE case_id = $1",
    )
    .bind(case.to_string())
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let text = |c: &str| -> Result<ReportText, CatalogError> {
        ReportText::try_from(row.try_get::<String, _>(c)?).map_err(corrupt)
    };
    let addenda = sqlx::query("SELECT id, author, text, signed_at, sha256 FROM report_addenda WHERE case_id = $1 ORDER BY signed_at, id")
        .bind(case.to_string())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|a| {
            Ok(Addendum {
                id: a.try_get("id")?,
                author: a.try_get::<String, _>("author")?.parse().map_err(corrupt)?,
                text: a.try_get("text")?,
                signed_at: Timestamp::from_millis(a.try_get("signed_at")?),
                sha256: a.try_get::<String, _>("sha256")?.parse().map_err(corrupt)?,
            })
        })
        .collect::<Result<Vec<_>, CatalogError>>()?;
    Ok(Some(Report {
        id: row.try_get("id")?,
        case_id: case,
        author: row
            .try_get::<String, _>("author")?
            .parse()
            .map_err(corrupt)?,
        content: ReportDraft {
            findings: text("findings")?,
            impression: text("impression")?,
            recommendation: text("recommendation")?,
            in_person_visit: InPersonVisit::parse(&row.try_get::<String, _>("in_person_visit")?)
                .map_err(corrupt)?,
            diagnosis_codes: serde_json::from_str(&row.try_get::<String, _>("diagnosis_codes")?)
                .map_err(corrupt)?,
        },
        status: row.try_get("status")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
        signed_at: row
            .try_get::<Option<i64>, _>("signed_at")?
            .map(Timestamp::from_millis),
        sha256: row
            .try_get::<Option<String>, _>("sha256")?
            .map(|s| s.parse())
            .transpose()
            .map_err(corrupt)?,
        addenda,
    }))
}

impl SqlCatalog {
    /// Rows about one case in scope (`$1` is the case id), with the
    /// `case.read` audit event, in one transaction.
    async fn read_for_case<T>(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        statement: &'static str,
        map: impl Fn(&sqlx::any::AnyRow) -> Result<T, CatalogError> + Send,
    ) -> Result<Vec<T>, CatalogError> {
        let c = self.begin_change(scope, id).await?;
        let office = c.case.office_id;
        let mut tx = c.tx;
        let rows = sqlx::query(statement)
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(&map)
            .collect::<Result<Vec<_>, CatalogError>>()?;
        record(
            &mut tx,
            ctx,
            AuditAction::CaseRead,
            Some(id.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        Ok(rows)
    }
}

#[async_trait]
impl Consult for SqlCatalog {
    async fn worklist(
        &self,
        ctx: &AuditContext,
        specialist: UserId,
        specialty: Specialty,
        query: &WorklistQuery,
    ) -> Result<Page<WorklistItem>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let now = self.db_now(&mut tx).await?;
        let filter = |q: sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>| {
            q.bind(specialty.as_str())
                .bind(now.as_millis())
                .bind(specialist.to_string())
                .bind(query.priority.map(|p| p.as_str()))
                .bind(query.office.map(|o| o.to_string()))
                .bind(i64::from(query.overdue_only))
                .bind(i64::from(query.mine))
        };
        macro_rules! worklist_where {
            () => {
                " FROM cases WHERE specialty = $1 \
                  AND (status = 'submitted' OR (status = 'in_review' AND (claim_until < $2 OR claimed_by = $3))) \
                  AND ($4 IS NULL OR priority = $4) AND ($5 IS NULL OR office_id = $5) \
                  AND ($6 = 0 OR due_at < $2) \
                  AND ($7 = 0 OR (status = 'in_review' AND claimed_by = $3 AND claim_until >= $2))"
            };
        }
        let total: i64 = filter(sqlx::query(concat!(
            "SELECT COUNT(*) AS n",
            worklist_where!()
        )))
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        let offset = i64::from(query.page.saturating_sub(1)) * i64::from(query.per_page);
        let rows = filter(sqlx::query(concat!(
            "SELECT ",
            case_columns!(),
            ", (SELECT COUNT(*) FROM images i WHERE i.case_id = cases.id) AS image_count",
            worklist_where!(),
            " ORDER BY CASE priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, \
              CASE WHEN due_at < $2 THEN 0 ELSE 1 END, queued_at, id LIMIT $8 OFFSET $9"
        )))
        .bind(i64::from(query.per_page))
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let case = rows::case(row)?;
            let images: i64 = row.try_get("image_count")?;
            record(
                &mut tx,
                ctx,
                AuditAction::CaseList,
                Some(case.id.to_string()),
                Some(case.office_id),
            )
            .await?;
            items.push(WorklistItem::of(
                &case,
                u64::try_from(images).unwrap_or_default(),
                now,
            ));
        }
        tx.commit().await?;
        Ok(Page {
            items,
            page: query.page,
            per_page: query.per_page,
            total: u64::try_from(total).unwrap_or_default(),
        })
    }

    async fn claim_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        lease: Duration,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        let now = c.now;
        let case = &mut c.case;
        match case.status {
            CaseStatus::Submitted => case.status = case.status.apply(CaseAction::Claim)?,
            CaseStatus::InReview if case.claimed_by == Some(specialist) => {}
            // The other specialist's lease ran out: the case was back in line.
            CaseStatus::InReview if case.claim_until.is_none_or(|until| until < now) => {}
            CaseStatus::InReview => return Err(CatalogError::AlreadyClaimed),
            other => {
                return Err(crate::model::InvalidTransition {
                    from: other,
                    action: CaseAction::Claim,
                }
                .into());
            }
        }
        case.claimed_by = Some(specialist);
        case.claim_until = Some(now.plus(lease));
        self.finish_change(c, ctx, AuditAction::CaseClaim, None)
            .await
    }

    async fn release_case(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        if c.case.status != CaseStatus::InReview || c.case.claimed_by != Some(specialist) {
            return Err(CatalogError::ClaimRequired);
        }
        c.case.status = c.case.status.apply(CaseAction::Release)?;
        release_claim(&mut c.case);
        self.finish_change(
            c,
            ctx,
            AuditAction::CaseRelease,
            Some("released".to_owned()),
        )
        .await
    }

    async fn save_report_draft(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        draft: &ReportDraft,
    ) -> Result<Report, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        require_claim(&c.case, specialist, c.now)?;
        let codes = serde_json::to_string(&draft.diagnosis_codes).map_err(corrupt)?;
        sqlx::query(
            "INSERT INTO reports (id, case_id, author, findings, impression, recommendation, in_person_visit, \
             diagnosis_codes, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, $9) \
             ON CONFLICT (case_id) DO UPDATE SET author = excluded.author, findings = excluded.findings, \
             impression = excluded.impression, recommendation = excluded.recommendation, \
             in_person_visit = excluded.in_person_visit, diagnosis_codes = excluded.diagnosis_codes, \
             updated_at = excluded.updated_at",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(id.to_string())
        .bind(specialist.to_string())
        .bind(draft.findings.as_str().to_owned())
        .bind(draft.impression.as_str().to_owned())
        .bind(draft.recommendation.as_str().to_owned())
        .bind(draft.in_person_visit.as_str())
        .bind(codes)
        .bind(c.now.as_millis())
        .execute(&mut *c.tx)
        .await?;
        let report = load_report(&mut c.tx, id)
            .await?
            .ok_or(CatalogError::NotFound { what: "report" })?;
        self.finish_change(c, ctx, AuditAction::ReportDraft, None)
            .await?;
        Ok(report)
    }

    async fn sign_report(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
    ) -> Result<Report, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        require_claim(&c.case, specialist, c.now)?;
        let draft = load_report(&mut c.tx, id).await?.ok_or_else(|| {
            CatalogError::Conflict("there is no draft report: save one first".to_owned())
        })?;
        draft
            .content
            .ready_to_sign()
            .map_err(|e| CatalogError::Conflict(e.to_string()))?;
        let content = serde_json::to_value(&draft.content).map_err(corrupt)?;
        let sha = seal(id, specialist, c.now, &content);
        sqlx::query("UPDATE reports SET status = 'signed', author = $2, signed_at = $3, sha256 = $4, updated_at = $3 WHERE case_id = $1 AND status = 'draft'")
            .bind(id.to_string())
            .bind(specialist.to_string())
            .bind(c.now.as_millis())
            .bind(sha.to_hex())
            .execute(&mut *c.tx)
            .await?;
        c.case.status = c.case.status.apply(CaseAction::Sign)?;
        c.case.reported_at = Some(c.now);
        release_claim(&mut c.case);
        notify(&mut c.tx, &c.case, "report_signed", c.now).await?;
        enqueue_delivery(&mut c.tx, &c.case, "report_signed", c.now).await?;
        let report = load_report(&mut c.tx, id)
            .await?
            .ok_or(CatalogError::NotFound { what: "report" })?;
        self.finish_change(c, ctx, AuditAction::ReportSign, None)
            .await?;
        Ok(report)
    }

    async fn add_addendum(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        text: &ReportText,
    ) -> Result<Report, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        if !matches!(
            c.case.status,
            CaseStatus::Reported | CaseStatus::Acknowledged
        ) {
            return Err(CatalogError::Conflict(
                "addenda follow a signed report".to_owned(),
            ));
        }
        if text.is_empty() {
            return Err(CatalogError::Conflict("an addendum needs text".to_owned()));
        }
        let report = load_report(&mut c.tx, id)
            .await?
            .ok_or(CatalogError::NotFound { what: "report" })?;
        let sha = seal(
            id,
            specialist,
            c.now,
            &serde_json::json!({ "addendum": text.as_str(), "report": report.id }),
        );
        sqlx::query("INSERT INTO report_addenda (id, case_id, report_id, author, text, signed_at, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(id.to_string())
            .bind(report.id.clone())
            .bind(specialist.to_string())
            .bind(text.as_str().to_owned())
            .bind(c.now.as_millis())
            .bind(sha.to_hex())
            .execute(&mut *c.tx)
            .await?;
        notify(&mut c.tx, &c.case, "addendum_signed", c.now).await?;
        enqueue_delivery(&mut c.tx, &c.case, "addendum_signed", c.now).await?;
        let report = load_report(&mut c.tx, id)
            .await?
            .ok_or(CatalogError::NotFound { what: "report" })?;
        self.finish_change(c, ctx, AuditAction::ReportAddendum, None)
            .await?;
        Ok(report)
    }

    async fn get_report(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
        include_draft: bool,
    ) -> Result<Report, CatalogError> {
        let mut tx = self.begin_write().await?;
        let office: Option<String> = sqlx::query_scalar(concat!(
            "SELECT office_id FROM cases WHERE id = $1 AND ",
            scoped!()
        ))
        .bind(id.to_string())
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
        .fetch_optional(&mut *tx)
        .await?;
        let office: OfficeId = office
            .ok_or(CatalogError::NotFound { what: "case" })?
            .parse()
            .map_err(corrupt)?;
        let report = load_report(&mut tx, id)
            .await?
            .filter(|r| include_draft || r.status == "signed")
            .ok_or(CatalogError::NotFound { what: "report" })?;
        record(
            &mut tx,
            ctx,
            AuditAction::ReportRead,
            Some(id.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    async fn request_info(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        specialist: UserId,
        id: CaseId,
        question: &ReportText,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        require_claim(&c.case, specialist, c.now)?;
        if question.is_empty() {
            return Err(CatalogError::Conflict("ask a question".to_owned()));
        }
        c.case.status = c.case.status.apply(CaseAction::RequestInfo)?;
        release_claim(&mut c.case);
        add_message(&mut c.tx, id, "question", specialist, question, c.now).await?;
        notify(&mut c.tx, &c.case, "info_requested", c.now).await?;
        enqueue_delivery(&mut c.tx, &c.case, "info_requested", c.now).await?;
        self.finish_change(c, ctx, AuditAction::CaseRequestInfo, None)
            .await
    }

    async fn answer_info(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        author: UserId,
        id: CaseId,
        answer: &ReportText,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        if answer.is_empty() {
            return Err(CatalogError::Conflict("write an answer".to_owned()));
        }
        // Back in line at its old place: queued_at is kept.
        c.case.status = c.case.status.apply(CaseAction::AnswerInfo)?;
        add_message(&mut c.tx, id, "answer", author, answer, c.now).await?;
        self.finish_change(c, ctx, AuditAction::CaseAnswerInfo, None)
            .await
    }

    async fn acknowledge(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Case, CatalogError> {
        let mut c = self.begin_change(scope, id).await?;
        c.case.status = c.case.status.apply(CaseAction::Acknowledge)?;
        c.case.acknowledged_at = Some(c.now);
        self.finish_change(c, ctx, AuditAction::CaseAcknowledge, None)
            .await
    }

    async fn case_messages(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Vec<CaseMessage>, CatalogError> {
        self.read_for_case(
            ctx,
            scope,
            id,
            "SELECT id, kind, author, text, created_at FROM case_messages WHERE case_id = $1 ORDER BY id",
            |r| {
                Ok(CaseMessage {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    author: r.try_get::<String, _>("author")?.parse().map_err(corrupt)?,
                    text: r.try_get("text")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at")?),
                })
            },
        )
        .await
    }

    async fn case_history(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        id: CaseId,
    ) -> Result<Vec<HistoryEntry>, CatalogError> {
        self.read_for_case(
            ctx,
            scope,
            id,
            "SELECT from_status, to_status, actor, at, note FROM case_history WHERE case_id = $1 ORDER BY id",
            |r| {
                Ok(HistoryEntry {
                    from_status: r.try_get("from_status")?,
                    to_status: r.try_get("to_status")?,
                    actor: r.try_get("actor")?,
                    at: Timestamp::from_millis(r.try_get("at")?),
                    note: r.try_get("note")?,
                })
            },
        )
        .await
    }

    async fn notifications(
        &self,
        office: OfficeId,
        unread_only: bool,
    ) -> Result<Vec<Notification>, CatalogError> {
        sqlx::query(
            "SELECT id, office_id, case_id, event, created_at, read_at FROM notifications \
             WHERE office_id = $1 AND ($2 = 0 OR read_at IS NULL) ORDER BY id DESC LIMIT 200",
        )
        .bind(office.to_string())
        .bind(i64::from(unread_only))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Notification {
                id: r.try_get("id")?,
                office_id: r
                    .try_get::<String, _>("office_id")?
                    .parse()
                    .map_err(corrupt)?,
                case_id: r
                    .try_get::<String, _>("case_id")?
                    .parse()
                    .map_err(corrupt)?,
                event: r.try_get("event")?,
                created_at: Timestamp::from_millis(r.try_get("created_at")?),
                read_at: r
                    .try_get::<Option<i64>, _>("read_at")?
                    .map(Timestamp::from_millis),
            })
        })
        .collect()
    }
}
