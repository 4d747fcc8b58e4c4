//! The consult case: a referral from an office to a specialty.

use serde::{Deserialize, Deserializer, Serialize};

use super::InvalidValue;
use super::{
    BirthDate, CancelReason, CaseId, CaseStatus, ClinicalNote, Mrn, OfficeId, Patient, PatientName,
    Question, Sex, ShortText, Specialty, Timestamp, UserId,
};

/// How soon the office needs an answer. Drives worklist order and due times.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Routine,
    Urgent,
    Stat,
}

impl Priority {
    pub fn as_str(&self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Urgent => "urgent",
            Priority::Stat => "stat",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        match text {
            "routine" => Ok(Priority::Routine),
            "urgent" => Ok(Priority::Urgent),
            "stat" => Ok(Priority::Stat),
            _ => Err(InvalidValue::new(
                "priority must be routine, urgent or stat",
            )),
        }
    }
}

/// The clinical details a referral carries beyond the question. Dermatology
/// referrals use body site and duration; radiology ones modality and body
/// part; medications and allergies matter to both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Clinical {
    /// Where on the body the lesion is (dermatology).
    pub body_site: Option<ShortText>,
    /// How long the problem has been present, as the office describes it.
    pub duration: Option<ShortText>,
    pub medications: Option<ClinicalNote>,
    pub allergies: Option<ClinicalNote>,
    /// The imaging modality requested or performed (radiology), e.g. CT.
    pub modality: Option<ShortText>,
    /// The body part examined (radiology).
    pub body_part: Option<ShortText>,
}

/// A case as an office creates it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub patient: Patient,
    pub specialty: Specialty,
    pub question: Question,
    #[serde(default = "empty_note")]
    pub history: ClinicalNote,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub clinical: Clinical,
}

fn empty_note() -> ClinicalNote {
    // An empty note is within bounds by construction.
    ClinicalNote::try_from(String::new()).unwrap_or_else(|_| unreachable!("empty note is valid"))
}

/// A consult case as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Case {
    pub id: CaseId,
    pub office_id: OfficeId,
    /// The office user who created the referral.
    pub created_by: UserId,
    pub status: CaseStatus,
    pub specialty: Specialty,
    pub priority: Priority,
    pub patient: Patient,
    pub question: Question,
    pub history: ClinicalNote,
    pub clinical: Clinical,
    pub cancel_reason: Option<CancelReason>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub submitted_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    /// Its place in the worklist: the first submission, kept when the case
    /// comes back from an information request.
    pub queued_at: Option<Timestamp>,
    /// When the specialty's service level says it must be answered.
    pub due_at: Option<Timestamp>,
    /// The specialist holding the claim, and until when (a lease).
    pub claimed_by: Option<UserId>,
    pub claim_until: Option<Timestamp>,
    pub reported_at: Option<Timestamp>,
    pub acknowledged_at: Option<Timestamp>,
}

impl Case {
    /// Whether the service level has passed with no report.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        use super::CaseStatus as S;
        matches!(self.status, S::Submitted | S::InReview | S::InfoRequested)
            && self.due_at.is_some_and(|due| due < now)
    }

    /// A new draft from an office's referral.
    pub fn draft(new: NewCase, office_id: OfficeId, created_by: UserId, now: Timestamp) -> Self {
        Case {
            id: CaseId::generate(),
            office_id,
            created_by,
            status: CaseStatus::Draft,
            specialty: new.specialty,
            priority: new.priority,
            patient: new.patient,
            question: new.question,
            history: new.history,
            clinical: new.clinical,
            cancel_reason: None,
            created_at: now,
            updated_at: now,
            submitted_at: None,
            cancelled_at: None,
            queued_at: None,
            due_at: None,
            claimed_by: None,
            claim_until: None,
            reported_at: None,
            acknowledged_at: None,
        }
    }

    /// Applies an office's edit. Only the fields present in `patch` change; a
    /// clinical field sent as `null` is cleared.
    pub fn apply_patch(&mut self, patch: CasePatch) {
        if let Some(p) = patch.patient {
            if let Some(name) = p.name {
                self.patient.name = name;
            }
            if let Some(birth_date) = p.birth_date {
                self.patient.birth_date = birth_date;
            }
            if let Some(sex) = p.sex {
                self.patient.sex = sex;
            }
            if let Some(mrn) = p.mrn {
                self.patient.mrn = mrn;
            }
        }
        if let Some(specialty) = patch.specialty {
            self.specialty = specialty;
        }
        if let Some(priority) = patch.priority {
            self.priority = priority;
        }
        if let Some(question) = patch.question {
            self.question = question;
        }
        if let Some(history) = patch.history {
            self.history = history;
        }
        if let Some(c) = patch.clinical {
            let target = &mut self.clinical;
            set_field(&mut target.body_site, c.body_site);
            set_field(&mut target.duration, c.duration);
            set_field(&mut target.medications, c.medications);
            set_field(&mut target.allergies, c.allergies);
            set_field(&mut target.modality, c.modality);
            set_field(&mut target.body_part, c.body_part);
        }
    }
}

fn set_field<T>(target: &mut Option<T>, patch: Option<Option<T>>) {
    if let Some(value) = patch {
        *target = value;
    }
}

/// An edit to a draft case. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CasePatch {
    pub patient: Option<PatientPatch>,
    pub specialty: Option<Specialty>,
    pub priority: Option<Priority>,
    pub question: Option<Question>,
    pub history: Option<ClinicalNote>,
    pub clinical: Option<ClinicalPatch>,
}

/// An edit to the patient block.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientPatch {
    pub name: Option<PatientName>,
    pub birth_date: Option<BirthDate>,
    pub sex: Option<Sex>,
    pub mrn: Option<Mrn>,
}

/// An edit to the clinical details: a field sent as `null` is cleared, an
/// absent field is kept.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClinicalPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ShortText>)]
    pub body_site: Option<Option<ShortText>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ShortText>)]
    pub duration: Option<Option<ShortText>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ClinicalNote>)]
    pub medications: Option<Option<ClinicalNote>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ClinicalNote>)]
    pub allergies: Option<Option<ClinicalNote>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ShortText>)]
    pub modality: Option<Option<ShortText>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<ShortText>)]
    pub body_part: Option<Option<ShortText>>,
}

/// Marks a field as present (`Some`), whether its value is `null` or not.
fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referral() -> NewCase {
        serde_json::from_value(serde_json::json!({
            "patient": {"name": "Jane Roe", "birth_date": "1970-01-02", "sex": "female", "mrn": "A1"},
            "specialty": "dermatology",
            "question": "Melanoma?",
            "clinical": {"body_site": "left forearm", "duration": "3 months"}
        }))
        .expect("valid referral")
    }

    #[test]
    fn defaults_priority_and_history() {
        let new = referral();
        assert_eq!(new.priority, Priority::Routine);
        assert_eq!(new.history.as_str(), "");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_value::<NewCase>(serde_json::json!({
            "patient": {"name": "J", "birth_date": "1970-01-02", "sex": "female", "mrn": "A1"},
            "specialty": "dermatology", "question": "Q", "colour": "red"
        }))
        .expect_err("refused");
        assert!(err.to_string().contains("colour"));
    }

    #[test]
    fn patch_changes_only_what_it_names_and_null_clears() {
        let mut case = Case::draft(
            referral(),
            OfficeId::generate(),
            UserId::generate(),
            Timestamp::now(),
        );
        let patch: CasePatch = serde_json::from_value(serde_json::json!({
            "priority": "urgent",
            "patient": {"mrn": "B2"},
            "clinical": {"duration": null, "modality": "dermoscopy"}
        }))
        .expect("valid patch");
        case.apply_patch(patch);
        assert_eq!(case.priority, Priority::Urgent);
        assert_eq!(case.patient.mrn.as_str(), "B2");
        assert_eq!(case.patient.name.as_str(), "Jane Roe");
        assert_eq!(case.clinical.duration, None);
        assert_eq!(
            case.clinical.body_site.as_ref().map(|s| s.as_str()),
            Some("left forearm")
        );
        assert_eq!(
            case.clinical.modality.as_ref().map(|s| s.as_str()),
            Some("dermoscopy")
        );
    }
}
