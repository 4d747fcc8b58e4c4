//! The DICOM C-STORE door's records in SQL: calling AE titles mapped to
//! offices, and the draft case each office's study goes into.
//!
//! Two instances of one new study can arrive at once (two associations, or
//! two Relay processes). The study's row is claimed with a conditional
//! insert or update; the loser rolls back its case and takes the winner's,
//! so a study never opens two cases, on either backend. Once the study's
//! draft exists, its later instances find it with a plain read
//! (`draft_study_case`) and never take the write lock.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use super::audit::record;
use super::cases::insert_case;
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, DicomAeTitles, StudyCase};
use crate::model::{AeMapping, AeTitle, Case, CaseId, Name, OfficeId, Timestamp, UserId};

/// How often a lost race for a study's row is retried before giving up.
const STUDY_ATTEMPTS: usize = 3;

fn mapping(row: &AnyRow) -> Result<AeMapping, CatalogError> {
    const W: &str = "dicom ae title";
    Ok(AeMapping {
        ae_title: AeTitle::parse(&row.try_get::<String, _>("ae_title")?)
            .map_err(|e| CatalogError::corrupt(W, e))?,
        office: row
            .try_get::<String, _>("office_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        user: row
            .try_get::<String, _>("user_id")?
            .parse()
            .map_err(|e| CatalogError::corrupt(W, e))?,
        created_at: Timestamp::from_millis(row.try_get::<i64, _>("created_at")?),
    })
}

#[async_trait]
impl DicomAeTitles for SqlCatalog {
    async fn set_ae_title(
        &self,
        ctx: &AuditContext,
        ae_title: &AeTitle,
        office: OfficeId,
    ) -> Result<AeMapping, CatalogError> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT ae_title, office_id, user_id, created_at FROM dicom_ae_titles \
             WHERE ae_title = $1",
        )
        .bind(ae_title.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .as_ref()
        .map(mapping)
        .transpose()?;
        if let Some(existing) = existing {
            if existing.office == office {
                return Ok(existing);
            }
            return Err(CatalogError::Conflict(format!(
                "AE title {ae_title} belongs to another office; remove it first"
            )));
        }
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM offices WHERE id = $1")
            .bind(office.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(CatalogError::NotFound { what: "office" });
        }
        let now = Timestamp::now();
        let user = UserId::generate();
        let name = Name::try_from(format!("DICOM AE {ae_title}"))
            .map_err(|e| CatalogError::Conflict(e.to_string()))?;
        sqlx::query(
            "INSERT INTO users (id, name, role, office_id, specialty, created_at) \
             VALUES ($1, $2, 'office', $3, NULL, $4)",
        )
        .bind(user.to_string())
        .bind(name.to_string())
        .bind(office.to_string())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            ctx,
            AuditAction::UserCreate,
            Some(user.to_string()),
            Some(office),
        )
        .await?;
        sqlx::query(
            "INSERT INTO dicom_ae_titles (ae_title, office_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(ae_title.as_str())
        .bind(office.to_string())
        .bind(user.to_string())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        record(
            &mut tx,
            ctx,
            AuditAction::OfficeUpdate,
            Some(office.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        Ok(AeMapping {
            ae_title: ae_title.clone(),
            office,
            user,
            created_at: now,
        })
    }

    async fn remove_ae_title(
        &self,
        ctx: &AuditContext,
        ae_title: &AeTitle,
    ) -> Result<(), CatalogError> {
        let mut tx = self.begin_write().await?;
        let office: Option<String> = sqlx::query_scalar(
            "DELETE FROM dicom_ae_titles WHERE ae_title = $1 RETURNING office_id",
        )
        .bind(ae_title.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(office) = office else {
            return Err(CatalogError::NotFound { what: "AE title" });
        };
        let office: OfficeId = office
            .parse()
            .map_err(|e| CatalogError::corrupt("dicom ae title", e))?;
        record(
            &mut tx,
            ctx,
            AuditAction::OfficeUpdate,
            Some(office.to_string()),
            Some(office),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_ae_titles(&self) -> Result<Vec<AeMapping>, CatalogError> {
        sqlx::query(
            "SELECT ae_title, office_id, user_id, created_at FROM dicom_ae_titles \
             ORDER BY ae_title",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mapping)
        .collect()
    }

    async fn draft_study_case(
        &self,
        office: OfficeId,
        study_instance_uid: &str,
    ) -> Result<Option<CaseId>, CatalogError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT s.case_id FROM dicom_study_cases s \
             JOIN cases c ON c.id = s.case_id \
             WHERE s.office_id = $1 AND s.study_instance_uid = $2 AND c.status = 'draft'",
        )
        .bind(office.to_string())
        .bind(study_instance_uid)
        .fetch_optional(&self.pool)
        .await?;
        found
            .map(|id| {
                id.parse()
                    .map_err(|e| CatalogError::corrupt("dicom study case", e))
            })
            .transpose()
    }

    async fn study_case(
        &self,
        ctx: &AuditContext,
        study_instance_uid: &str,
        draft: &Case,
    ) -> Result<StudyCase, CatalogError> {
        let office = draft.office_id.to_string();
        for _ in 0..STUDY_ATTEMPTS {
            let mut tx = self.begin_write().await?;
            let current = sqlx::query(
                "SELECT s.case_id, c.status FROM dicom_study_cases s \
                 JOIN cases c ON c.id = s.case_id \
                 WHERE s.office_id = $1 AND s.study_instance_uid = $2",
            )
            .bind(&office)
            .bind(study_instance_uid)
            .fetch_optional(&mut *tx)
            .await?;
            let current = match current {
                Some(row) => {
                    let id: CaseId = row
                        .try_get::<String, _>("case_id")?
                        .parse()
                        .map_err(|e| CatalogError::corrupt("dicom study case", e))?;
                    if row.try_get::<String, _>("status")? == "draft" {
                        tx.rollback().await?;
                        return Ok(StudyCase {
                            case_id: id,
                            created: false,
                        });
                    }
                    Some(id)
                }
                None => None,
            };
            insert_case(&mut tx, draft).await?;
            let claimed = match current {
                None => sqlx::query(
                    "INSERT INTO dicom_study_cases (office_id, study_instance_uid, case_id) \
                     VALUES ($1, $2, $3) ON CONFLICT (office_id, study_instance_uid) DO NOTHING",
                )
                .bind(&office)
                .bind(study_instance_uid)
                .bind(draft.id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Some(previous) => sqlx::query(
                    "UPDATE dicom_study_cases SET case_id = $3 \
                     WHERE office_id = $1 AND study_instance_uid = $2 AND case_id = $4",
                )
                .bind(&office)
                .bind(study_instance_uid)
                .bind(draft.id.to_string())
                .bind(previous.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if claimed == 0 {
                // Another instance of the study claimed its row first.
                tx.rollback().await?;
                continue;
            }
            record(
                &mut tx,
                ctx,
                AuditAction::CaseCreate,
                Some(draft.id.to_string()),
                Some(draft.office_id),
            )
            .await?;
            tx.commit().await?;
            return Ok(StudyCase {
                case_id: draft.id,
                created: true,
            });
        }
        Err(CatalogError::Conflict(
            "the study's case changed during every attempt; retry".to_owned(),
        ))
    }
}
