//! Closing the loop after the fact: a signed report the office has not
//! acknowledged is notified again, and a case past its service level is
//! announced to its office and escalated to the site's administrators.

use std::time::Duration;

use serde::Serialize;

use super::{CaseId, OfficeId, Priority, Specialty, Timestamp};

/// When reminders and escalations fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderPolicy {
    /// How long a report may wait unacknowledged before the office is told
    /// again (and again, at this interval, up to `renotify_limit` times).
    pub renotify_after: Duration,
    /// How many reminders a report gets; 0 turns reminders off.
    pub renotify_limit: u32,
    /// How long past its due time a case waits before administrators are
    /// told (the office hears at the due time itself).
    pub escalate_after: Duration,
}

impl Default for ReminderPolicy {
    fn default() -> Self {
        Self {
            renotify_after: Duration::from_secs(24 * 60 * 60),
            renotify_limit: 3,
            escalate_after: Duration::ZERO,
        }
    }
}

/// A case past its due time, as administrators are told of it: ids and
/// timing only, never patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Escalation {
    pub case_id: CaseId,
    pub office_id: OfficeId,
    pub specialty: Specialty,
    pub priority: Priority,
    pub due_at: Timestamp,
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReminderSweep {
    /// Reports whose office was notified again.
    pub renotified: Vec<CaseId>,
    /// Cases whose office was told they are overdue.
    pub overdue: Vec<CaseId>,
    /// Overdue cases escalated to administrators.
    pub escalated: Vec<Escalation>,
}

impl ReminderSweep {
    pub fn is_empty(&self) -> bool {
        self.renotified.is_empty() && self.overdue.is_empty() && self.escalated.is_empty()
    }
}
