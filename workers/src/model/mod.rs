//! The domain model: validated values and the records built from them.
//!
//! Values that carry a rule (a birth date is not in the future, a token id is
//! a UUID) are newtypes constructed only through `parse`/`TryFrom`, so a value
//! that exists is a value that is valid.

mod account;
mod ae_title;
mod case;
mod case_status;
mod derivative;
mod dicom_index;
mod digest;
mod ids;
mod image;
mod patient;
mod principal;
mod reminder;
mod report;
mod sla;
mod study;
mod text;
mod time;
mod worklist;

pub use account::{NewUser, Office, User};
pub use ae_title::{AeMapping, AeTitle};
pub use case::{Case, CasePatch, Clinical, ClinicalPatch, NewCase, PatientPatch, Priority};
pub use case_status::{CaseAction, CaseStatus, InvalidTransition};
pub use derivative::{Derivative, DeriveResult, DeriveState};
pub use dicom_index::{
    DateRange, DicomAccess, DicomIndex, DicomInstance, DicomQuery, NamePattern, QueryLevel,
};
pub use digest::{Sha256, Sha256Hasher};
pub use ids::{CaseId, ImageId, OfficeId, TokenId, UserId};
pub use image::{Image, MediaType};
pub use patient::{BirthDate, Mrn, Patient, PatientName, Sex};
pub use principal::{CaseScope, Principal, Role, Specialty};
pub use reminder::{Escalation, ReminderPolicy, ReminderSweep};
pub use report::{
    Addendum, CaseMessage, DiagnosisCode, InPersonVisit, Notification, Report, ReportDraft,
    ReportText, seal,
};
pub use sla::SlaPolicy;
pub use study::{Instance, Series, Study, group_studies};
pub use text::{CancelReason, ClinicalNote, Name, Question, ShortText};
pub use time::Timestamp;
pub use worklist::{WorklistItem, WorklistQuery};

/// A value that failed its rule. The message says what the rule is, so an API
/// can return it verbatim next to the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
