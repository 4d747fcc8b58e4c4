//! DICOMweb searches in SQL, over `dicom_instances` (migration 0013): one
//! row per DICOM image with the attributes a search matches on, written
//! with the image. Every statement joins `cases` under the caller's scope,
//! the same rule as every image query.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlCatalog;
use super::audit::record;
use super::images::{image, image_columns};
use crate::audit::{AuditAction, AuditContext};
use crate::catalog::{CatalogError, DicomWeb};
use crate::model::{
    CaseScope, DicomAccess, DicomIndex, DicomInstance, DicomQuery, Image, QueryLevel,
};

/// The index columns, as `concat!` needs them.
macro_rules! index_columns {
    () => {
        "d.study_instance_uid, d.series_instance_uid, d.sop_instance_uid, d.sop_class_uid, \
         d.transfer_syntax_uid, d.patient_id, d.patient_name, d.patient_birth_date, d.patient_sex, \
         d.study_date, d.study_time, d.accession_number, d.study_id, d.study_description, \
         d.referring_physician_name, d.modality, d.series_number, d.series_description, \
         d.instance_number, d.pixel_rows, d.pixel_columns, d.number_of_frames"
    };
}

/// Rows of `dicom_instances d` joined with their image `i` and case `c`,
/// in the scope bound as `$1` (office) and `$2` (specialty).
macro_rules! scoped_instances {
    () => {
        " FROM dicom_instances d JOIN images i ON i.id = d.image_id JOIN cases c ON c.id = d.case_id \
         WHERE ($1 IS NULL OR c.office_id = $1) AND ($2 IS NULL OR (c.specialty = $2 AND c.status <> 'draft'))"
    };
}

/// The matching keys, bound as `$3` to `$11` by [`bind_keys`].
macro_rules! matching {
    () => {
        " AND ($3 IS NULL OR d.study_instance_uid = $3) AND ($4 IS NULL OR d.series_instance_uid = $4) \
         AND ($5 IS NULL OR d.sop_instance_uid = $5) AND ($6 IS NULL OR d.patient_id = $6) \
         AND ($7 IS NULL OR LOWER(d.patient_name) LIKE $7 ESCAPE '\\') \
         AND ($8 IS NULL OR d.accession_number = $8) AND ($9 IS NULL OR d.modality = $9) \
         AND ($10 IS NULL OR d.study_date >= $10) AND ($11 IS NULL OR d.study_date <= $11)"
    };
}

/// Instances in reading order.
macro_rules! reading_order {
    () => {
        " ORDER BY d.study_instance_uid, d.series_instance_uid, COALESCE(d.instance_number, 0), i.received_at, i.id"
    };
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

fn bind_scope(query: Query<'_>, scope: CaseScope) -> Query<'_> {
    query
        .bind(scope.office_filter())
        .bind(scope.specialty_filter())
}

fn bind_keys<'q>(query: Query<'q>, q: &'q DicomQuery) -> Query<'q> {
    let date = q.study_date.as_ref();
    query
        .bind(q.study_instance_uid.as_deref())
        .bind(q.series_instance_uid.as_deref())
        .bind(q.sop_instance_uid.as_deref())
        .bind(q.patient_id.as_deref())
        .bind(q.patient_name.as_ref().map(|p| p.as_like()))
        .bind(q.accession_number.as_deref())
        .bind(q.modality.as_deref())
        .bind(date.and_then(|d| d.from.as_deref()))
        .bind(date.and_then(|d| d.to.as_deref()))
}

/// Writes the index row of a DICOM image being added.
pub(super) async fn insert_index(
    tx: &mut sqlx::AnyConnection,
    image: &Image,
    index: &DicomIndex,
) -> Result<(), CatalogError> {
    sqlx::query(
        "INSERT INTO dicom_instances (image_id, case_id, study_instance_uid, series_instance_uid, \
         sop_instance_uid, sop_class_uid, transfer_syntax_uid, patient_id, patient_name, \
         patient_birth_date, patient_sex, study_date, study_time, accession_number, study_id, \
         study_description, referring_physician_name, modality, series_number, series_description, \
         instance_number, pixel_rows, pixel_columns, number_of_frames) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         $19, $20, $21, $22, $23, $24)",
    )
    .bind(image.id.to_string())
    .bind(image.case_id.to_string())
    .bind(index.study_instance_uid.as_str())
    .bind(index.series_instance_uid.as_str())
    .bind(index.sop_instance_uid.as_str())
    .bind(index.sop_class_uid.as_str())
    .bind(index.transfer_syntax_uid.as_str())
    .bind(index.patient_id.as_deref())
    .bind(index.patient_name.as_deref())
    .bind(index.patient_birth_date.as_deref())
    .bind(index.patient_sex.as_deref())
    .bind(index.study_date.as_deref())
    .bind(index.study_time.as_deref())
    .bind(index.accession_number.as_deref())
    .bind(index.study_id.as_deref())
    .bind(index.study_description.as_deref())
    .bind(index.referring_physician_name.as_deref())
    .bind(index.modality.as_deref())
    .bind(index.series_number)
    .bind(index.series_description.as_deref())
    .bind(index.instance_number)
    .bind(index.rows)
    .bind(index.columns)
    .bind(index.number_of_frames)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn instance(row: &AnyRow) -> Result<DicomInstance, CatalogError> {
    let text = |c: &str| row.try_get::<Option<String>, _>(c);
    let uid = |c: &str| row.try_get::<String, _>(c);
    let int = |c: &str| row.try_get::<Option<i64>, _>(c);
    Ok(DicomInstance {
        image: image(row)?,
        index: DicomIndex {
            study_instance_uid: uid("study_instance_uid")?,
            series_instance_uid: uid("series_instance_uid")?,
            sop_instance_uid: uid("sop_instance_uid")?,
            sop_class_uid: uid("sop_class_uid")?,
            transfer_syntax_uid: uid("transfer_syntax_uid")?,
            patient_id: text("patient_id")?,
            patient_name: text("patient_name")?,
            patient_birth_date: text("patient_birth_date")?,
            patient_sex: text("patient_sex")?,
            study_date: text("study_date")?,
            study_time: text("study_time")?,
            accession_number: text("accession_number")?,
            study_id: text("study_id")?,
            study_description: text("study_description")?,
            referring_physician_name: text("referring_physician_name")?,
            modality: text("modality")?,
            series_number: int("series_number")?,
            series_description: text("series_description")?,
            instance_number: int("instance_number")?,
            rows: int("pixel_rows")?,
            columns: int("pixel_columns")?,
            number_of_frames: int("number_of_frames")?,
        },
    })
}

#[async_trait]
impl DicomWeb for SqlCatalog {
    async fn dicom_instances(
        &self,
        ctx: &AuditContext,
        scope: CaseScope,
        query: &DicomQuery,
        access: DicomAccess,
    ) -> Result<Vec<DicomInstance>, CatalogError> {
        let limit = i64::from(query.limit);
        let offset = i64::from(query.offset);
        let mut tx = self.begin_write().await?;
        let rows: Vec<AnyRow> = match query.level {
            QueryLevel::Instance => {
                let q = sqlx::query(concat!(
                    "SELECT ",
                    image_columns!(),
                    ", ",
                    index_columns!(),
                    scoped_instances!(),
                    matching!(),
                    reading_order!(),
                    " LIMIT $12 OFFSET $13"
                ));
                bind_keys(bind_scope(q, scope), query)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await?
            }
            QueryLevel::Study => {
                let q = sqlx::query(concat!(
                    "SELECT d.study_instance_uid",
                    scoped_instances!(),
                    matching!(),
                    " GROUP BY d.study_instance_uid ORDER BY d.study_instance_uid LIMIT $12 OFFSET $13"
                ));
                let studies: Vec<String> = bind_keys(bind_scope(q, scope), query)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<_, _>>()?;
                let mut rows = Vec::new();
                for study in &studies {
                    let q = sqlx::query(concat!(
                        "SELECT ",
                        image_columns!(),
                        ", ",
                        index_columns!(),
                        scoped_instances!(),
                        " AND d.study_instance_uid = $3",
                        reading_order!()
                    ));
                    rows.extend(
                        bind_scope(q, scope)
                            .bind(study.as_str())
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                rows
            }
            QueryLevel::Series => {
                let q = sqlx::query(concat!(
                    "SELECT d.study_instance_uid, d.series_instance_uid",
                    scoped_instances!(),
                    matching!(),
                    " GROUP BY d.study_instance_uid, d.series_instance_uid \
                     ORDER BY d.study_instance_uid, d.series_instance_uid LIMIT $12 OFFSET $13"
                ));
                let series: Vec<(String, String)> = bind_keys(bind_scope(q, scope), query)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
                    .collect::<Result<_, sqlx::Error>>()?;
                let mut rows = Vec::new();
                for (study, series) in &series {
                    let q = sqlx::query(concat!(
                        "SELECT ",
                        image_columns!(),
                        ", ",
                        index_columns!(),
                        scoped_instances!(),
                        " AND d.study_instance_uid = $3 AND d.series_instance_uid = $4",
                        reading_order!()
                    ));
                    rows.extend(
                        bind_scope(q, scope)
                            .bind(study.as_str())
                            .bind(series.as_str())
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                rows
            }
        };
        let found = rows.iter().map(instance).collect::<Result<Vec<_>, _>>()?;
        let action = match access {
            DicomAccess::Search => AuditAction::ImageList,
            DicomAccess::Metadata => AuditAction::ImageRead,
            DicomAccess::Retrieve => AuditAction::ImageDownload,
        };
        for found in &found {
            record(
                &mut tx,
                ctx,
                action,
                Some(found.image.id.to_string()),
                Some(found.image.office_id),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(found)
    }
}
