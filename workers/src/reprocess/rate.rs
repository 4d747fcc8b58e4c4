//! A run's speed limit, so a verify or a migration can share the disks and
//! the network with live traffic.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

/// Work per second: bytes (`50MB/s`, `1GiB/s`) or blobs (`200/s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rate {
    BytesPerSecond(u64),
    ItemsPerSecond(u64),
}

impl Rate {
    /// Reads `50MB/s`, `512KiB/s`, `2GB/s`, `200/s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a rate; write e.g. 50MB/s, 512KiB/s or 200/s");
        let per_second = text.trim().strip_suffix("/s").ok_or_else(bad)?;
        let split = per_second
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(per_second.len());
        let (number, unit) = per_second.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let scale: u64 = match unit {
            "" => return Ok(Rate::ItemsPerSecond(n)),
            "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(scale)
            .map(Rate::BytesPerSecond)
            .ok_or_else(bad)
    }
}

/// Paces work to a [`Rate`]: each piece of work reserves its share of time
/// after the previous reservation, and waits until its share begins.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            next: Mutex::new(None),
        }
    }

    /// Waits until a blob of `bytes` may be worked on.
    pub async fn acquire(&self, bytes: u64) {
        let cost = match self.rate {
            Rate::BytesPerSecond(per) => Duration::from_secs_f64(bytes as f64 / per as f64),
            Rate::ItemsPerSecond(per) => Duration::from_secs_f64(1.0 / per as f64),
        };
        let start = {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + cost);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_operators_write_them() {
        assert_eq!(Rate::parse("50MB/s"), Ok(Rate::BytesPerSecond(50_000_000)));
        assert_eq!(
            Rate::parse("512KiB/s"),
            Ok(Rate::BytesPerSecond(512 * 1024))
        );
        assert_eq!(Rate::parse("200/s"), Ok(Rate::ItemsPerSecond(200)));
        for bad in ["50MB", "0/s", "fast/s", "5TB/s", "/s", "99999999999999GB/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_paced_to_the_rate() {
        let limiter = RateLimiter::new(Rate::ItemsPerSecond(10));
        let started = Instant::now();
        for _ in 0..21 {
            limiter.acquire(0).await;
        }
        // 21 items at 10/s: the last may start 2 s after the first.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2100),
            "{elapsed:?}"
        );
    }
}
