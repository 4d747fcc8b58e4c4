//! The attributes a viewer lists beside a DICOM image, as JSON.
//!
//! Only named attributes are copied (an allow-list, like photo metadata), as
//! plain JSON types: strings trimmed of DICOM padding, numbers as numbers,
//! dates as ISO 8601. An absent or empty attribute is left out rather than
//! written as null, so a reader can tell "not in the file" by the key alone.

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, Tag};
use serde_json::{Map, Value, json};

use super::layout::text;

/// Collects the attributes listed on [`super::derive_dicom`].
pub(super) fn collect(object: &DefaultDicomObject) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            out.insert(key.to_owned(), value);
        }
    };
    for (key, tag) in [
        ("patient_id", tags::PATIENT_ID),
        ("patient_name", tags::PATIENT_NAME),
    ] {
        put(key, text(object, tag).map(Value::from));
    }
    put("patient_birth_date", date(object, tags::PATIENT_BIRTH_DATE));
    put(
        "patient_sex",
        text(object, tags::PATIENT_SEX).map(Value::from),
    );
    for (key, tag) in [
        ("study_instance_uid", tags::STUDY_INSTANCE_UID),
        ("series_instance_uid", tags::SERIES_INSTANCE_UID),
        ("sop_instance_uid", tags::SOP_INSTANCE_UID),
        ("sop_class_uid", tags::SOP_CLASS_UID),
    ] {
        put(key, text(object, tag).map(Value::from));
    }
    put("study_date", date(object, tags::STUDY_DATE));
    for (key, tag) in [
        ("modality", tags::MODALITY),
        ("body_part_examined", tags::BODY_PART_EXAMINED),
        ("series_description", tags::SERIES_DESCRIPTION),
    ] {
        put(key, text(object, tag).map(Value::from));
    }
    put("instance_number", integer(object, tags::INSTANCE_NUMBER));
    put(
        "image_position_patient",
        functional(object, tags::PLANE_POSITION_SEQUENCE, |o| {
            numbers(o, tags::IMAGE_POSITION_PATIENT, 3)
        }),
    );
    put(
        "image_orientation_patient",
        functional(object, tags::PLANE_ORIENTATION_SEQUENCE, |o| {
            numbers(o, tags::IMAGE_ORIENTATION_PATIENT, 6)
        }),
    );
    for (key, tag) in [
        ("rows", tags::ROWS),
        ("columns", tags::COLUMNS),
        ("number_of_frames", tags::NUMBER_OF_FRAMES),
    ] {
        put(key, integer(object, tag));
    }
    put(
        "photometric_interpretation",
        text(object, tags::PHOTOMETRIC_INTERPRETATION).map(Value::from),
    );
    let ts = object
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' ']);
    put("transfer_syntax", (!ts.is_empty()).then(|| json!(ts)));
    for (key, tag, group) in [
        (
            "window_center",
            tags::WINDOW_CENTER,
            tags::FRAME_VOILUT_SEQUENCE,
        ),
        (
            "window_width",
            tags::WINDOW_WIDTH,
            tags::FRAME_VOILUT_SEQUENCE,
        ),
        (
            "rescale_slope",
            tags::RESCALE_SLOPE,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        ),
        (
            "rescale_intercept",
            tags::RESCALE_INTERCEPT,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        ),
    ] {
        put(key, functional(object, group, |o| first_number(o, tag)));
    }
    Value::Object(out)
}

/// `read` applied to the object's top level; failing that (an enhanced
/// multi-frame object keeps these in functional groups), to the `group`
/// macro of the shared functional groups, then of the first frame's.
fn functional(
    object: &InMemDicomObject,
    group: Tag,
    read: impl Fn(&InMemDicomObject) -> Option<Value>,
) -> Option<Value> {
    read(object).or_else(|| {
        [
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        ]
        .into_iter()
        .find_map(|sequence| {
            let frame = first_item(object, sequence)?;
            read(first_item(frame, group)?)
        })
    })
}

fn first_item(object: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    object.element(tag).ok()?.items()?.first()
}

fn first_number(object: &InMemDicomObject, tag: Tag) -> Option<Value> {
    let value = object.element(tag).ok()?.to_float64().ok()?;
    value.is_finite().then(|| json!(value))
}

/// Exactly `count` finite numbers, or nothing: a partial position would
/// mislead more than a missing one.
fn numbers(object: &InMemDicomObject, tag: Tag, count: usize) -> Option<Value> {
    let values = object.element(tag).ok()?.to_multi_float64().ok()?;
    (values.len() == count && values.iter().all(|v| v.is_finite())).then(|| json!(values))
}

fn integer(object: &InMemDicomObject, tag: Tag) -> Option<Value> {
    object
        .element(tag)
        .ok()?
        .to_int::<i64>()
        .ok()
        .map(Value::from)
}

/// A DA value (`YYYYMMDD`) as `YYYY-MM-DD`; any other text as it is (old
/// files use `YYYY.MM.DD`, some only a year).
fn date(object: &InMemDicomObject, tag: Tag) -> Option<Value> {
    let raw = object
        .element(tag)
        .ok()?
        .to_str()
        .ok()?
        .trim_end_matches(['\0', ' '])
        .trim()
        .to_owned();
    if raw.is_empty() {
        return None;
    }
    let iso = match raw.as_bytes() {
        digits @ [_, _, _, _, _, _, _, _] if digits.iter().all(u8::is_ascii_digit) => {
            format!("{}-{}-{}", &raw[0..4], &raw[4..6], &raw[6..8])
        }
        _ => raw,
    };
    Some(json!(iso))
}
