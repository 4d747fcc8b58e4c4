//! DICOM instances grouped the way a reader navigates them: study, then
//! series, then instance order — across however many uploads they came in.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{Image, ImageId, MediaType};

/// One study of a case.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Study {
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub series: Vec<Series>,
}

/// One series of a study.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Series {
    pub series_instance_uid: String,
    pub modality: Option<String>,
    pub series_description: Option<String>,
    pub body_part_examined: Option<String>,
    /// In Instance Number order.
    pub instances: Vec<Instance>,
}

/// One DICOM object of a series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Instance {
    pub image_id: ImageId,
    pub sop_instance_uid: Option<String>,
    pub instance_number: Option<i64>,
    pub frames: Option<u32>,
}

fn text(attributes: &Value, key: &str) -> Option<String> {
    attributes
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Groups a case's DICOM images by study and series. Uses the attributes
/// derive read, or the identifiers ingest checked when derive has not run.
pub fn group_studies(images: &[Image]) -> Vec<Study> {
    let mut studies: BTreeMap<String, Study> = BTreeMap::new();
    for image in images.iter().filter(|i| i.media_type == MediaType::Dicom) {
        let a = image.attributes.as_ref().unwrap_or(&image.metadata);
        let (Some(study_uid), Some(series_uid)) = (
            text(a, "study_instance_uid").or_else(|| text(&image.metadata, "study_instance_uid")),
            text(a, "series_instance_uid").or_else(|| text(&image.metadata, "series_instance_uid")),
        ) else {
            continue;
        };
        let study = studies.entry(study_uid.clone()).or_insert_with(|| Study {
            study_instance_uid: study_uid,
            study_date: text(a, "study_date"),
            series: Vec::new(),
        });
        let at = match study
            .series
            .iter()
            .position(|s| s.series_instance_uid == series_uid)
        {
            Some(at) => at,
            None => {
                study.series.push(Series {
                    series_instance_uid: series_uid,
                    modality: text(a, "modality"),
                    series_description: text(a, "series_description"),
                    body_part_examined: text(a, "body_part_examined"),
                    instances: Vec::new(),
                });
                study.series.len() - 1
            }
        };
        study.series[at].instances.push(Instance {
            image_id: image.id,
            sop_instance_uid: text(a, "sop_instance_uid"),
            instance_number: a.get("instance_number").and_then(Value::as_i64),
            frames: image.frames,
        });
    }
    let mut out: Vec<Study> = studies.into_values().collect();
    for study in &mut out {
        for series in &mut study.series {
            series
                .instances
                .sort_by_key(|i| (i.instance_number.is_none(), i.instance_number));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{CaseId, DeriveState, OfficeId, Sha256, Timestamp, UserId};

    fn dicom(study: &str, series: &str, number: Option<i64>) -> Image {
        let mut attributes =
            json!({"study_instance_uid": study, "series_instance_uid": series, "modality": "CT"});
        if let Some(n) = number {
            attributes["instance_number"] = json!(n);
        }
        Image {
            id: ImageId::generate(),
            case_id: CaseId::generate(),
            office_id: OfficeId::generate(),
            uploaded_by: UserId::generate(),
            filename: None,
            media_type: MediaType::Dicom,
            sha256: Sha256::of(b"x"),
            size: 1,
            stored_sha256: Sha256::of(b"x"),
            stored_size: 1,
            received_at: Timestamp::now(),
            metadata: json!({}),
            derive_state: DeriveState::Ready,
            derive_error: None,
            frames: Some(1),
            attributes: Some(attributes),
        }
    }

    #[test]
    fn groups_by_study_then_series_in_instance_order() {
        let images = vec![
            dicom("1.1", "1.1.2", Some(3)),
            dicom("1.1", "1.1.2", Some(1)),
            dicom("1.2", "1.2.1", None),
            dicom("1.1", "1.1.1", Some(7)),
            dicom("1.1", "1.1.2", None),
        ];
        let studies = group_studies(&images);
        assert_eq!(studies.len(), 2);
        let first = &studies[0];
        assert_eq!(first.study_instance_uid, "1.1");
        assert_eq!(first.series.len(), 2);
        let series = first
            .series
            .iter()
            .find(|s| s.series_instance_uid == "1.1.2")
            .expect("series");
        let order: Vec<Option<i64>> = series.instances.iter().map(|i| i.instance_number).collect();
        assert_eq!(
            order,
            vec![Some(1), Some(3), None],
            "numbered first, in order"
        );
    }

    #[test]
    fn photos_are_not_studies() {
        let mut photo = dicom("1.1", "1.1.1", Some(1));
        photo.media_type = MediaType::Jpeg;
        assert!(group_studies(&[photo]).is_empty());
    }
}
