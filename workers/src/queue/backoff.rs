//! When a failed job runs again: exponentially later, with jitter so that a
//! burst of failures (a store went away) does not come back as a burst.

use std::time::Duration;

const BASE: Duration = Duration::from_secs(5);
const CAP: Duration = Duration::from_secs(60 * 60);

/// The delay before attempt `attempt + 1`, after `attempt` failures
/// (1-based). `jitter` in `[0, 1)` spreads it over 50–100 % of the
/// exponential value.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = BASE.saturating_mul(1u32 << exponent).min(CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A jitter value from the system's randomness.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_five_seconds_and_caps_at_an_hour() {
        let full = |n| backoff(n, 1.0 - f64::EPSILON).as_secs_f64().round() as u64;
        assert_eq!([full(1), full(2), full(3), full(4)], [5, 10, 20, 40]);
        assert_eq!(full(30), 3600);
    }

    #[test]
    fn jitter_spreads_over_half_to_full() {
        assert_eq!(backoff(3, 0.0), Duration::from_secs(10));
        assert!(backoff(3, 0.999) <= Duration::from_secs(20));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
