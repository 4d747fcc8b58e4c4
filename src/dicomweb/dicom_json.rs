//! The DICOM JSON model (PS3.18 Annex F): data sets as
//! `{"GGGGEEEE": {"vr": VR, "Value": [...]}}`, for search results, store
//! reports and instance metadata.
//!
//! Written here rather than with the `dicom-json` crate: that crate turns
//! on serde_json's `preserve_order` for the whole build (changing how every
//! JSON object in Relay serializes, including what the audit chain hashes)
//! and brings a second major version of `base64`.

use base64::Engine;
use dicom_core::header::Header;
use dicom_core::value::Value as DicomValue;
use dicom_core::{Tag, VR};
use dicom_object::InMemDicomObject;
use serde_json::{Map, Value, json};

/// Binary values up to this size are inlined (base64); larger ones (pixel
/// data above all) are left out of metadata and served as frames.
const INLINE_BINARY_LIMIT: usize = 4096;

/// A DICOM JSON data set under construction.
#[derive(Debug, Default, Clone)]
pub struct Dataset(Map<String, Value>);

/// The key of `tag`: eight upper-case hex digits.
pub fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

impl Dataset {
    pub fn new() -> Self {
        Self::default()
    }

    /// A text value (`None`: the attribute, empty).
    pub fn text(&mut self, tag: Tag, vr: &str, value: Option<&str>) -> &mut Self {
        self.put(tag, vr, value.map(|v| vec![json!(v)]))
    }

    /// Several text values (none: empty).
    pub fn texts(&mut self, tag: Tag, vr: &str, values: &[String]) -> &mut Self {
        let values = (!values.is_empty()).then(|| values.iter().map(|v| json!(v)).collect());
        self.put(tag, vr, values)
    }

    /// A person's name, in its alphabetic form.
    pub fn person(&mut self, tag: Tag, value: Option<&str>) -> &mut Self {
        self.put(tag, "PN", value.map(|v| vec![json!({ "Alphabetic": v })]))
    }

    /// A number (IS, US, UL…).
    pub fn number(&mut self, tag: Tag, vr: &str, value: Option<i64>) -> &mut Self {
        self.put(tag, vr, value.map(|v| vec![json!(v)]))
    }

    /// A sequence of items.
    pub fn sequence(&mut self, tag: Tag, items: Vec<Dataset>) -> &mut Self {
        let items =
            (!items.is_empty()).then(|| items.into_iter().map(Dataset::into_value).collect());
        self.put(tag, "SQ", items)
    }

    fn put(&mut self, tag: Tag, vr: &str, values: Option<Vec<Value>>) -> &mut Self {
        let mut attribute = Map::new();
        attribute.insert("vr".to_owned(), json!(vr));
        if let Some(values) = values {
            attribute.insert("Value".to_owned(), Value::Array(values));
        }
        self.0.insert(key(tag), Value::Object(attribute));
        self
    }

    /// Adds (or replaces) the attributes of `other`.
    pub fn merge(&mut self, other: Dataset) -> &mut Self {
        self.0.extend(other.0);
        self
    }

    /// Keeps only the attributes `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.0.retain(|k, _| keep(k));
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A whole data set as DICOM JSON: every element, sequences recursively,
/// numbers as numbers, names as `{"Alphabetic": …}`, small binary values
/// inline; large binary values and encapsulated pixel data are left out.
pub fn object(object: &InMemDicomObject) -> Value {
    let mut out = Map::new();
    for element in object {
        let tag = element.tag();
        if tag.group() == 0x0002 || tag.element() == 0x0000 {
            continue; // file meta and group lengths are not data
        }
        let vr = element.vr();
        let mut attribute = Map::new();
        attribute.insert("vr".to_owned(), json!(vr.to_string()));
        match element.value() {
            DicomValue::Sequence(sequence) => {
                let items: Vec<Value> = sequence.items().iter().map(self::object).collect();
                if !items.is_empty() {
                    attribute.insert("Value".to_owned(), Value::Array(items));
                }
            }
            DicomValue::PixelSequence(_) => continue,
            DicomValue::Primitive(_) => match values(vr, element.value()) {
                Some(Values::List(list)) if !list.is_empty() => {
                    attribute.insert("Value".to_owned(), Value::Array(list));
                }
                Some(Values::Inline(b64)) if !b64.is_empty() => {
                    attribute.insert("InlineBinary".to_owned(), json!(b64));
                }
                Some(_) => {}
                None => continue,
            },
        }
        out.insert(key(tag), Value::Object(attribute));
    }
    Value::Object(out)
}

enum Values {
    List(Vec<Value>),
    Inline(String),
}

/// The values of a primitive element of `vr`; `None` for binary data too
/// large to inline.
fn values(vr: VR, value: &DicomValue<InMemDicomObject>) -> Option<Values> {
    use VR::*;
    let list = match vr {
        OB | OD | OF | OL | OV | OW | UN => {
            let bytes = value.to_bytes().ok()?;
            if bytes.len() > INLINE_BINARY_LIMIT {
                return None;
            }
            return Some(Values::Inline(
                base64::engine::general_purpose::STANDARD.encode(&bytes),
            ));
        }
        PN => strings(value)
            .into_iter()
            .map(|s| json!({ "Alphabetic": s }))
            .collect(),
        IS | SS | US | SL | UL | SV | UV => match value.to_multi_int::<i64>() {
            Ok(numbers) => numbers.into_iter().map(Value::from).collect(),
            Err(_) => strings(value).into_iter().map(Value::from).collect(),
        },
        DS | FL | FD => match value.to_multi_float64() {
            Ok(numbers) => numbers
                .into_iter()
                .map(|n| serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
                .collect(),
            Err(_) => strings(value).into_iter().map(Value::from).collect(),
        },
        AT => strings(value).into_iter().map(Value::from).collect(),
        _ => strings(value)
            .into_iter()
            .map(|s| if s.is_empty() { Value::Null } else { json!(s) })
            .collect(),
    };
    Some(Values::List(list))
}

/// Text values trimmed of DICOM padding.
fn strings(value: &DicomValue<InMemDicomObject>) -> Vec<String> {
    value
        .to_multi_str()
        .map(|values| {
            values
                .iter()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use dicom_core::{DataElement, PrimitiveValue};
    use dicom_dictionary_std::tags;

    use super::*;

    #[test]
    fn elements_become_dicom_json() {
        let object = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("Doe^Jane")),
            DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from("7 ")),
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64_u16)),
            DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::Empty),
        ]);
        let json = super::object(&object);
        assert_eq!(
            json["00100010"],
            json!({"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]})
        );
        assert_eq!(json["00200013"], json!({"vr": "IS", "Value": [7]}));
        assert_eq!(json["00280010"], json!({"vr": "US", "Value": [64]}));
        assert_eq!(json["00080020"], json!({"vr": "DA"}));
    }

    #[test]
    fn built_attributes_have_their_vr_and_values() {
        let mut set = Dataset::new();
        set.text(tags::STUDY_INSTANCE_UID, "UI", Some("1.2"))
            .person(tags::PATIENT_NAME, None)
            .number(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, "IS", Some(3));
        let v = set.into_value();
        assert_eq!(v["0020000D"], json!({"vr": "UI", "Value": ["1.2"]}));
        assert_eq!(v["00100010"], json!({"vr": "PN"}));
        assert_eq!(v["00201208"]["Value"], json!([3]));
    }
}
