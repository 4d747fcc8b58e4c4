//! Storage (C-STORE): one received instance into its office's case.
//!
//! Ingest's DICOM check runs first, so an instance ingest would refuse
//! never opens a case; the instance's Study Instance UID then finds (or
//! opens) the office's draft radiology case for that study; then the file
//! goes through `Ingest::ingest` like any upload. The answer is success
//! only once ingest returned.

use dicom_dictionary_std::tags;
use dicom_object::{OpenFileOptions, Tag};
use relay_workers::audit::AuditContext;
use relay_workers::ingest::{Declared, Upload};
use relay_workers::model::{Case, MediaType, NewCase, Timestamp};
use serde_json::{Value, json};
use tempfile::NamedTempFile;

use super::command::Command;
use super::listener::DicomDoor;
use super::status::{self, SUCCESS};
use relay_workers::model::AeMapping;

/// The status for one stored instance and, for a failure, why.
pub type Outcome = (u16, Option<String>);

/// Stores the instance spooled in `file` for the office `caller` maps to.
pub async fn store(
    door: &DicomDoor,
    caller: &AeMapping,
    ctx: &AuditContext,
    request: &Command,
    file: NamedTempFile,
) -> Outcome {
    let metadata = match door.ingest.check_dicom(file.path()).await {
        Ok(metadata) => metadata,
        Err(error) => {
            tracing::info!(%error, "instance refused");
            return (status::for_ingest(&error), Some(error.to_string()));
        }
    };
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (sop_class, sop_instance, study) = (
        text("sop_class_uid"),
        text("sop_instance_uid"),
        text("study_instance_uid"),
    );
    if request.affected_sop_class.as_deref() != Some(sop_class)
        || request.affected_sop_instance.as_deref() != Some(sop_instance)
    {
        return (
            status::DATA_SET_MISMATCH,
            Some("the data set's SOP class or instance differs from the command's".to_owned()),
        );
    }
    let path = file.path().to_owned();
    let modality = metadata
        .get("modality")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let referral = match tokio::task::spawn_blocking(move || referral(&path, modality)).await {
        Ok(Ok(new)) => new,
        Ok(Err(message)) => return (status::CANNOT_UNDERSTAND, Some(message)),
        Err(_) => {
            return (
                status::PROCESSING_FAILURE,
                Some("the instance could not be read".to_owned()),
            );
        }
    };
    let draft = Case::draft(referral, caller.office, caller.user, Timestamp::now());
    let case = match door.catalog.study_case(ctx, study, &draft).await {
        Ok(case) => case,
        Err(error) => {
            tracing::error!(%error, study.uid = study, "cannot find or open the study's case");
            return (
                status::for_catalog(&error),
                Some("the study's case could not be opened; retry later".to_owned()),
            );
        }
    };
    if case.created {
        tracing::info!(case.id = %case.case_id, study.uid = study, "draft case opened for a study");
    }
    let body = match tokio::fs::File::open(file.path()).await {
        Ok(f) => tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024),
        Err(error) => {
            tracing::error!(%error, "cannot reopen the received instance");
            return (
                status::OUT_OF_RESOURCES,
                Some("the instance could not be stored; retry later".to_owned()),
            );
        }
    };
    let upload = Upload {
        declared: Declared::Media(MediaType::Dicom),
        filename: Some(format!("{sop_instance}.dcm")),
        client_digest: None,
        body,
    };
    let principal = relay_workers::model::Principal::Office {
        user: caller.user,
        office: caller.office,
    };
    match door
        .ingest
        .ingest(
            ctx,
            caller.user,
            principal.case_scope(),
            case.case_id,
            upload,
        )
        .await
    {
        Ok(ingested) => {
            door.work_queued();
            tracing::info!(
                case.id = %case.case_id,
                image.id = %ingested.image.id,
                image.sha256 = %ingested.image.stored_sha256,
                study.uid = study,
                instance.uid = sop_instance,
                created = ingested.created,
                "instance stored"
            );
            (SUCCESS, None)
        }
        Err(error) => {
            let status = status::for_ingest(&error);
            if status == status::CANNOT_UNDERSTAND {
                tracing::info!(%error, instance.uid = sop_instance, "instance refused");
                (status, Some(error.to_string()))
            } else {
                tracing::error!(%error, instance.uid = sop_instance, "instance not stored");
                (
                    status,
                    Some("the instance could not be stored; retry later".to_owned()),
                )
            }
        }
    }
}

/// The referral a study's first C-STORE instance opens.
fn referral(path: &std::path::Path, modality: Option<String>) -> Result<NewCase, String> {
    referral_via(path, modality, "DICOM C-STORE")
}

/// The referral a study's first instance opens: the patient from the
/// Patient module, the modality and body part, and a question the office
/// replaces before it submits. Missing patient attributes get placeholders
/// the office corrects in the draft (the history says which). `door` names
/// how the study arrived (DICOMweb's STOW-RS opens cases the same way).
pub(crate) fn referral_via(
    path: &std::path::Path,
    modality: Option<String>,
    door: &str,
) -> Result<NewCase, String> {
    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("the DICOM data set cannot be parsed: {e}"))?;
    let text = |tag: Tag| {
        object
            .element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| {
                s.trim_end_matches(['\0', ' '])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
    };
    let mut missing = Vec::new();
    let name = text(tags::PATIENT_NAME)
        .map(|pn| {
            // PN: Family^Given^Middle^Prefix^Suffix; people read "Given Family".
            let mut parts: Vec<&str> = pn
                .split('=')
                .next()
                .unwrap_or_default()
                .split('^')
                .collect();
            if parts.len() > 1 {
                parts.swap(0, 1);
            }
            parts
                .iter()
                .map(|p| p.trim())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(200).collect::<String>())
        .unwrap_or_else(|| {
            missing.push("name");
            "Unknown patient".to_owned()
        });
    let birth_date = text(tags::PATIENT_BIRTH_DATE)
        .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
        .map(|d| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
        .filter(|d| relay_workers::model::BirthDate::try_from(d.clone()).is_ok())
        .unwrap_or_else(|| {
            missing.push("birth date");
            "1900-01-01".to_owned()
        });
    let sex = match text(tags::PATIENT_SEX).as_deref() {
        Some("F") => "female",
        Some("M") => "male",
        Some(_) => "other",
        None => {
            missing.push("sex");
            "other"
        }
    };
    let mrn = text(tags::PATIENT_ID)
        .map(|id| id.chars().take(64).collect::<String>())
        .unwrap_or_else(|| {
            missing.push("patient ID");
            "unknown".to_owned()
        });
    let mut history = format!("Received over {door}.");
    if let Some(description) = text(tags::STUDY_DESCRIPTION) {
        history.push_str(&format!(" Study: {description}."));
    }
    if !missing.is_empty() {
        history.push_str(&format!(
            " Not in the DICOM data, to be completed: {}.",
            missing.join(", ")
        ));
    }
    let short = |s: Option<String>| s.map(|s| s.chars().take(100).collect::<String>());
    serde_json::from_value(json!({
        "patient": {"name": name, "birth_date": birth_date, "sex": sex, "mrn": mrn},
        "specialty": "radiology",
        "question": "Imaging study received over DICOM: replace this with the clinical question before submitting.",
        "history": history,
        "clinical": {"modality": short(modality), "body_part": short(text(tags::BODY_PART_EXAMINED))},
    }))
    .map_err(|e| format!("the patient attributes cannot be used: {e}"))
}
