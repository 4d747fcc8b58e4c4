//! What a specialist triages by.

use serde::Serialize;

use super::{Case, CaseId, CaseStatus, OfficeId, Priority, Sex, Specialty, Timestamp, UserId};

/// One line of a worklist: enough to choose, no more (no name, no MRN).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorklistItem {
    pub case_id: CaseId,
    pub office_id: OfficeId,
    pub specialty: Specialty,
    pub priority: Priority,
    pub status: CaseStatus,
    pub patient_age: u32,
    pub patient_sex: Sex,
    pub question: String,
    pub image_count: u64,
    /// In line since (first submission).
    pub queued_at: Option<Timestamp>,
    pub due_at: Option<Timestamp>,
    pub overdue: bool,
    /// Set when the caller holds the claim.
    pub claimed_by: Option<UserId>,
    pub claim_until: Option<Timestamp>,
}

impl WorklistItem {
    pub fn of(case: &Case, image_count: u64, now: Timestamp) -> Self {
        Self {
            case_id: case.id,
            office_id: case.office_id,
            specialty: case.specialty,
            priority: case.priority,
            status: case.status,
            patient_age: case
                .patient
                .birth_date
                .age_on(now.to_datetime().date_naive()),
            patient_sex: case.patient.sex,
            question: case.question.to_string(),
            image_count,
            queued_at: case.queued_at,
            due_at: case.due_at,
            overdue: case.is_overdue(now),
            claimed_by: case.claimed_by,
            claim_until: case.claim_until,
        }
    }
}

/// Filters for a worklist.
#[derive(Debug, Clone, Default)]
pub struct WorklistQuery {
    pub priority: Option<Priority>,
    pub office: Option<OfficeId>,
    /// Only cases past their service level.
    pub overdue_only: bool,
    /// Only cases the caller holds a claim on.
    pub mine: bool,
    pub page: u32,
    pub per_page: u32,
}
