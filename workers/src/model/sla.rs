//! Service levels: how soon a specialty answers a case of a given priority.
//! A case's due time is fixed when it is first submitted.

use std::time::Duration;

use super::{Priority, Specialty};

const HOUR: u64 = 60 * 60;

/// Hours to answer, per specialty and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaPolicy {
    pub dermatology: [Duration; 3],
    pub radiology: [Duration; 3],
}

impl Default for SlaPolicy {
    /// Dermatology eConsults answer in days; radiology STAT within the hour.
    fn default() -> Self {
        let h = |n: u64| Duration::from_secs(n * HOUR);
        Self {
            // routine, urgent, stat
            dermatology: [h(72), h(24), h(4)],
            radiology: [h(24), h(4), h(1)],
        }
    }
}

impl SlaPolicy {
    pub fn due_in(&self, specialty: Specialty, priority: Priority) -> Duration {
        let row = match specialty {
            Specialty::Dermatology => &self.dermatology,
            Specialty::Radiology => &self.radiology,
        };
        row[match priority {
            Priority::Routine => 0,
            Priority::Urgent => 1,
            Priority::Stat => 2,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_service_levels() {
        let p = SlaPolicy::default();
        let hours = |s, pr| p.due_in(s, pr).as_secs() / HOUR;
        assert_eq!(hours(Specialty::Dermatology, Priority::Routine), 72);
        assert_eq!(hours(Specialty::Dermatology, Priority::Urgent), 24);
        assert_eq!(hours(Specialty::Radiology, Priority::Routine), 24);
        assert_eq!(hours(Specialty::Radiology, Priority::Urgent), 4);
        assert_eq!(hours(Specialty::Radiology, Priority::Stat), 1);
    }
}
