//! The specialist's answer: a report, signed once and then immutable, and
//! addenda for anything that must be said after.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256 as Hasher};

use super::text::{Lines, check_text};
use super::{CaseId, InvalidValue, OfficeId, Sha256, Timestamp, UserId};

/// Whether the patient needs to be seen in person, and how soon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InPersonVisit {
    #[default]
    NotNeeded,
    Routine,
    Urgent,
}

impl InPersonVisit {
    pub fn as_str(&self) -> &'static str {
        match self {
            InPersonVisit::NotNeeded => "not_needed",
            InPersonVisit::Routine => "routine",
            InPersonVisit::Urgent => "urgent",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "not_needed" => Ok(InPersonVisit::NotNeeded),
            "routine" => Ok(InPersonVisit::Routine),
            "urgent" => Ok(InPersonVisit::Urgent),
            _ => Err(InvalidValue::new(
                "in_person_visit must be not_needed, routine or urgent",
            )),
        }
    }
}

/// Report text: up to 20 000 characters, lines allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, max_length = 20000, pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$")]
pub struct ReportText(String);

impl ReportText {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<String> for ReportText {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        check_text(value, "report text", 0, 20_000, Lines::Many).map(Self)
    }
}

impl From<ReportText> for String {
    fn from(value: ReportText) -> String {
        value.0
    }
}

/// A diagnosis code (ICD-10 or similar): short, one token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, min_length = 1, max_length = 20, pattern = r"^[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$")]
pub struct DiagnosisCode(String);

impl TryFrom<String> for DiagnosisCode {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.chars().any(char::is_whitespace) {
            return Err(InvalidValue::new("a diagnosis code has no spaces"));
        }
        check_text(value, "diagnosis code", 1, 20, Lines::One).map(Self)
    }
}

impl From<DiagnosisCode> for String {
    fn from(value: DiagnosisCode) -> String {
        value.0
    }
}

/// What the specialist writes; saved as a draft until signed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportDraft {
    #[serde(default)]
    pub findings: ReportText,
    #[serde(default)]
    pub impression: ReportText,
    #[serde(default)]
    pub recommendation: ReportText,
    #[serde(default)]
    pub in_person_visit: InPersonVisit,
    #[serde(default)]
    pub diagnosis_codes: Vec<DiagnosisCode>,
}

impl ReportDraft {
    /// What signing requires beyond the field rules.
    pub fn ready_to_sign(&self) -> Result<(), InvalidValue> {
        if self.impression.is_empty() {
            return Err(InvalidValue::new(
                "the report needs an impression before it is signed",
            ));
        }
        if self.diagnosis_codes.len() > 20 {
            return Err(InvalidValue::new("at most 20 diagnosis codes"));
        }
        Ok(())
    }
}

/// A report as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub id: String,
    pub case_id: CaseId,
    pub author: UserId,
    #[serde(flatten)]
    #[schema(schema_with = flattened_draft)]
    pub content: ReportDraft,
    /// `draft` or `signed`.
    pub status: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub signed_at: Option<Timestamp>,
    /// The sha256 of the signed content: what was signed, provably.
    pub sha256: Option<Sha256>,
    pub addenda: Vec<Addendum>,
}

/// [`ReportDraft`]'s schema as a stored report carries it: among the
/// report's own fields, so without the `additionalProperties: false` that
/// refuses unknown fields in a draft sent (which would refuse every report).
fn flattened_draft() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let mut schema = <ReportDraft as utoipa::PartialSchema>::schema();
    if let RefOr::T(Schema::Object(object)) = &mut schema {
        object.additional_properties = None;
    }
    schema
}

/// A signed correction or addition to a signed report.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Addendum {
    pub id: String,
    pub author: UserId,
    pub text: String,
    pub signed_at: Timestamp,
    pub sha256: Sha256,
}

/// The digest that seals signed content: canonical JSON of who signed what
/// when, for which case.
pub fn seal(
    case: CaseId,
    author: UserId,
    signed_at: Timestamp,
    content: &serde_json::Value,
) -> Sha256 {
    let canonical = serde_json::json!([case, author, signed_at.as_millis(), content]);
    Sha256::from_bytes(Hasher::digest(canonical.to_string().as_bytes()).into())
}

/// A question from the specialist or an answer from the office.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseMessage {
    pub id: i64,
    /// `question` or `answer`.
    pub kind: String,
    pub author: UserId,
    pub text: String,
    pub created_at: Timestamp,
}

/// Something an office is told about one of its cases.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Notification {
    pub id: i64,
    pub office_id: OfficeId,
    pub case_id: CaseId,
    /// `report_signed`, `addendum_signed`, `info_requested`.
    pub event: String,
    pub created_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_needs_an_impression_to_be_signed() {
        let mut draft = ReportDraft::default();
        assert!(draft.ready_to_sign().is_err());
        draft.impression = ReportText::try_from("Benign naevus".to_owned()).expect("text");
        assert!(draft.ready_to_sign().is_ok());
    }

    #[test]
    fn diagnosis_codes_are_single_short_tokens() {
        assert!(DiagnosisCode::try_from("D22.5".to_owned()).is_ok());
        assert!(DiagnosisCode::try_from("D22 5".to_owned()).is_err());
        assert!(DiagnosisCode::try_from("x".repeat(21)).is_err());
    }

    #[test]
    fn the_seal_covers_content_author_and_time() {
        let (case, author, at) = (
            CaseId::generate(),
            UserId::generate(),
            Timestamp::from_millis(1),
        );
        let a = seal(
            case,
            author,
            at,
            &serde_json::json!({"impression": "benign"}),
        );
        assert_eq!(
            a,
            seal(
                case,
                author,
                at,
                &serde_json::json!({"impression": "benign"})
            )
        );
        assert_ne!(
            a,
            seal(
                case,
                author,
                at,
                &serde_json::json!({"impression": "malignant"})
            )
        );
        assert_ne!(
            a,
            seal(
                case,
                UserId::generate(),
                at,
                &serde_json::json!({"impression": "benign"})
            )
        );
        assert_ne!(
            a,
            seal(
                case,
                author,
                Timestamp::from_millis(2),
                &serde_json::json!({"impression": "benign"})
            )
        );
    }
}
