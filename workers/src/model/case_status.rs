//! The one state machine that moves a case.
//!
//! Architecture Invariant: a case's `status` column changes only through
//! [`CaseStatus::apply`]; the catalog writes the result together with a row
//! in the case history and an audit event.
//!
//! ```text
//! draft ──submit──▶ submitted ──claim──▶ in_review ──sign──▶ reported ──acknowledge──▶ acknowledged
//!                     ▲    ▲                 │ │
//!                     │    └────release──────┘ │
//!                     │                        request_info
//!                     └──answer── info_requested ◀┘
//! draft | submitted | in_review | info_requested ──cancel──▶ cancelled
//! ```

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Draft,
    Submitted,
    InReview,
    InfoRequested,
    Reported,
    Acknowledged,
    Cancelled,
}

/// Something that happens to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseAction {
    Submit,
    Claim,
    Release,
    RequestInfo,
    AnswerInfo,
    Sign,
    Acknowledge,
    Cancel,
}

impl CaseAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            CaseAction::Submit => "submit",
            CaseAction::Claim => "claim",
            CaseAction::Release => "release",
            CaseAction::RequestInfo => "request_info",
            CaseAction::AnswerInfo => "answer_info",
            CaseAction::Sign => "sign",
            CaseAction::Acknowledge => "acknowledge",
            CaseAction::Cancel => "cancel",
        }
    }
}

/// An action that the case's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a case that is {}", action.as_str(), from.as_str())]
pub struct InvalidTransition {
    pub from: CaseStatus,
    pub action: CaseAction,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 7] = [
        CaseStatus::Draft,
        CaseStatus::Submitted,
        CaseStatus::InReview,
        CaseStatus::InfoRequested,
        CaseStatus::Reported,
        CaseStatus::Acknowledged,
        CaseStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CaseStatus::Draft => "draft",
            CaseStatus::Submitted => "submitted",
            CaseStatus::InReview => "in_review",
            CaseStatus::InfoRequested => "info_requested",
            CaseStatus::Reported => "reported",
            CaseStatus::Acknowledged => "acknowledged",
            CaseStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                InvalidValue::new(
                    "status must be one of draft, submitted, in_review, info_requested, reported, acknowledged, cancelled",
                )
            })
    }

    /// The state `action` leads to from this one.
    pub fn apply(self, action: CaseAction) -> Result<CaseStatus, InvalidTransition> {
        use CaseAction as A;
        use CaseStatus as S;
        let next = match (self, action) {
            (S::Draft, A::Submit) => S::Submitted,
            (S::Submitted, A::Claim) => S::InReview,
            (S::InReview, A::Release) => S::Submitted,
            (S::InReview, A::RequestInfo) => S::InfoRequested,
            (S::InfoRequested, A::AnswerInfo) => S::Submitted,
            (S::InReview, A::Sign) => S::Reported,
            (S::Reported, A::Acknowledge) => S::Acknowledged,
            (S::Draft | S::Submitted | S::InReview | S::InfoRequested, A::Cancel) => S::Cancelled,
            (from, action) => return Err(InvalidTransition { from, action }),
        };
        Ok(next)
    }

    /// Whether the referral itself (patient, question, history) may still be
    /// edited. Only a draft: once submitted, a specialist may be reading it.
    pub fn is_editable(&self) -> bool {
        matches!(self, CaseStatus::Draft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path_runs_from_draft_to_acknowledged() {
        let mut s = CaseStatus::Draft;
        for action in [
            CaseAction::Submit,
            CaseAction::Claim,
            CaseAction::RequestInfo,
            CaseAction::AnswerInfo,
            CaseAction::Claim,
            CaseAction::Sign,
            CaseAction::Acknowledge,
        ] {
            s = s.apply(action).expect("allowed");
        }
        assert_eq!(s, CaseStatus::Acknowledged);
    }

    #[test]
    fn reported_and_terminal_cases_cannot_be_cancelled() {
        for from in [
            CaseStatus::Reported,
            CaseStatus::Acknowledged,
            CaseStatus::Cancelled,
        ] {
            let err = from.apply(CaseAction::Cancel).expect_err("refused");
            assert_eq!(err.from, from);
        }
    }

    #[test]
    fn every_pair_is_decided_and_only_listed_pairs_succeed() {
        let actions = [
            CaseAction::Submit,
            CaseAction::Claim,
            CaseAction::Release,
            CaseAction::RequestInfo,
            CaseAction::AnswerInfo,
            CaseAction::Sign,
            CaseAction::Acknowledge,
            CaseAction::Cancel,
        ];
        let allowed = CaseStatus::ALL
            .iter()
            .flat_map(|s| actions.iter().map(move |a| (*s, *a)))
            .filter(|(s, a)| s.apply(*a).is_ok())
            .count();
        // 7 forward edges + cancel from 4 states.
        assert_eq!(allowed, 11);
    }

    #[test]
    fn status_text_round_trips() {
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.as_str()), Ok(s));
        }
        assert!(CaseStatus::parse("closed").is_err());
    }

    #[test]
    fn error_message_names_state_and_action() {
        let err = CaseStatus::Cancelled
            .apply(CaseAction::Submit)
            .expect_err("refused");
        assert_eq!(err.to_string(), "cannot submit a case that is cancelled");
    }
}
