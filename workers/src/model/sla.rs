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
    /// Reads `"72h,24h,4h"`: routine, urgent and stat, as durations.
    pub fn parse_levels(text: &str) -> Result<[Duration; 3], super::InvalidValue> {
        let bad = || {
            super::InvalidValue::new(
                "service levels are three durations: routine,urgent,stat (e.g. 72h,24h,4h)",
            )
        };
        let parts: Vec<Duration> = text
            .split(',')
            .map(|p| humantime_like(p.trim()).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        <[Duration; 3]>::try_from(parts).map_err(|_| bad())
    }

    /// The text form [`Self::parse_levels`] reads, e.g. `72h,24h,4h`.
    pub fn levels_text(levels: &[Duration; 3]) -> String {
        levels
            .iter()
            .map(|d| match d.as_secs() {
                s if s % HOUR == 0 => format!("{}h", s / HOUR),
                s if s % 60 == 0 => format!("{}m", s / 60),
                s => format!("{s}s"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

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

/// `90m`, `4h`, `3d`: the units service levels are written in (and `s`,
/// for drills and tests that watch a case go overdue).
fn humantime_like(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok().filter(|n| *n > 0)?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => HOUR,
        "d" => 24 * HOUR,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(seconds)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_from_text() {
        let levels = SlaPolicy::parse_levels("48h, 8h, 90m").expect("valid");
        assert_eq!(levels.map(|d| d.as_secs()), [48 * HOUR, 8 * HOUR, 90 * 60]);
        assert_eq!(SlaPolicy::levels_text(&levels), "48h,8h,90m");
        let drill = SlaPolicy::parse_levels("2s,90s,1m").expect("valid");
        assert_eq!(SlaPolicy::levels_text(&drill), "2s,90s,1m");
        for bad in ["72h,24h", "72h,24h,4h,1h", "72,24,4", "0h,1h,1h", "x"] {
            assert!(SlaPolicy::parse_levels(bad).is_err(), "{bad}");
        }
    }

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
