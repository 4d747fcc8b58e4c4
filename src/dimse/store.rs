//! Storage (C-STORE): one received instance into its office's case.
//!
//! The spooled Part 10 file is checked by ingest once
//! (`Ingest::check_dicom_file`: hashed, sniffed, validated, everything
//! before Pixel Data parsed), so an instance ingest would refuse never
//! opens a case, and the door reads the study and patient from that same
//! parse. A study whose draft case exists is found with a read; only a
//! study's first instance takes the catalog's write lock, to open the case
//! exactly once (`DicomAeTitles::study_case`). The checked file then goes
//! through `Ingest::ingest_checked`, the same store and transaction as any
//! upload. The answer is success only once that returned.

use dicom_dictionary_std::tags;
use relay_workers::audit::AuditContext;
use relay_workers::ingest::CheckedDicom;
use relay_workers::model::{AeMapping, Case, CaseId, NewCase, Principal, Timestamp};
use serde_json::json;
use tempfile::NamedTempFile;

use super::command::Command;
use super::listener::DicomDoor;
use super::status::{self, SUCCESS};

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
    let dicom = match door.ingest.check_dicom_file(file).await {
        Ok(dicom) => dicom,
        Err(error) => {
            tracing::info!(%error, "instance refused");
            return (status::for_ingest(&error), Some(error.to_string()));
        }
    };
    let sop_instance = dicom.uid("sop_instance_uid").to_owned();
    let study = dicom.uid("study_instance_uid").to_owned();
    if request.affected_sop_class.as_deref() != Some(dicom.uid("sop_class_uid"))
        || request.affected_sop_instance.as_deref() != Some(sop_instance.as_str())
    {
        return (
            status::DATA_SET_MISMATCH,
            Some("the data set's SOP class or instance differs from the command's".to_owned()),
        );
    }
    let case = match study_case(door, caller, ctx, &study, &dicom).await {
        Ok(case) => case,
        Err(outcome) => return outcome,
    };
    let principal = Principal::Office {
        user: caller.user,
        office: caller.office,
    };
    match door
        .ingest
        .ingest_checked(
            ctx,
            caller.user,
            principal.case_scope(),
            case,
            Some(format!("{sop_instance}.dcm")),
            dicom,
        )
        .await
    {
        Ok(ingested) => {
            door.work_queued();
            tracing::info!(
                case.id = %case,
                image.id = %ingested.image.id,
                image.sha256 = %ingested.image.stored_sha256,
                study.uid = %study,
                instance.uid = %sop_instance,
                created = ingested.created,
                "instance stored"
            );
            (SUCCESS, None)
        }
        Err(error) => {
            let status = status::for_ingest(&error);
            if status == status::CANNOT_UNDERSTAND {
                tracing::info!(%error, instance.uid = %sop_instance, "instance refused");
                (status, Some(error.to_string()))
            } else {
                tracing::error!(%error, instance.uid = %sop_instance, "instance not stored");
                (
                    status,
                    Some("the instance could not be stored; retry later".to_owned()),
                )
            }
        }
    }
}

/// The office's draft case for the study: read when an earlier instance
/// opened it; otherwise opened from this instance's Patient module under
/// the catalog's write lock, where two instances racing to open it end in
/// one case.
async fn study_case(
    door: &DicomDoor,
    caller: &AeMapping,
    ctx: &AuditContext,
    study: &str,
    dicom: &CheckedDicom,
) -> Result<CaseId, Outcome> {
    let failed = |error: relay_workers::catalog::CatalogError| {
        tracing::error!(%error, study.uid = study, "cannot find or open the study's case");
        (
            status::for_catalog(&error),
            Some("the study's case could not be opened; retry later".to_owned()),
        )
    };
    if let Some(case) = door
        .catalog
        .draft_study_case(caller.office, study)
        .await
        .map_err(failed)?
    {
        return Ok(case);
    }
    let referral = referral(dicom).map_err(|message| (status::CANNOT_UNDERSTAND, Some(message)))?;
    let draft = Case::draft(referral, caller.office, caller.user, Timestamp::now());
    let case = door
        .catalog
        .study_case(ctx, study, &draft)
        .await
        .map_err(failed)?;
    if case.created {
        tracing::info!(case.id = %case.case_id, study.uid = study, "draft case opened for a study");
    }
    Ok(case.case_id)
}

/// The referral a study's first C-STORE instance opens.
fn referral(dicom: &CheckedDicom) -> Result<NewCase, String> {
    referral_via(dicom, "DICOM C-STORE")
}

/// The referral a study's first instance opens: the patient from the
/// Patient module, the modality and body part, and a question the office
/// replaces before it submits. Missing patient attributes get placeholders
/// the office corrects in the draft (the history says which). `door` names
/// how the study arrived (DICOMweb's STOW-RS opens cases the same way).
pub(crate) fn referral_via(dicom: &CheckedDicom, door: &str) -> Result<NewCase, String> {
    let text = |tag| {
        dicom
            .text(tag)
            .map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>()
                    .trim()
                    .to_owned()
            })
            .filter(|s| !s.is_empty())
    };
    let modality = text(tags::MODALITY);
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
