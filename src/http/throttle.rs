//! Slows down guessing of tokens and session cookies, per client address.
//!
//! Every failed token authentication (a bearer token, or a token typed on
//! the sign-in page, that is malformed, unknown, wrong, expired or revoked)
//! takes one cell from its address's bucket. While the bucket is empty,
//! every request from that address that presents credentials (a token or a
//! session cookie) is answered `429` with `Retry-After` *before* they are
//! checked, so a guesser learns nothing more until it waits. Other addresses (other
//! offices) are untouched: the buckets are per address, and a request
//! without credentials never counts.
//!
//! Behind a reverse proxy every client has the proxy's address; throttle
//! there, or give each site its own ingress address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many failures an address may make at once, and how fast it earns
/// another try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed in a burst; 0 turns throttling off.
    pub burst: u32,
    /// One more failure is allowed after each such interval.
    pub refill: Duration,
}

impl Default for ThrottlePolicy {
    /// Twenty mistakes in a row is more than any person makes; after that
    /// one try every three seconds makes guessing a 256-bit secret hopeless
    /// while a person who mistyped waits seconds.
    fn default() -> Self {
        ThrottlePolicy {
            burst: 20,
            refill: Duration::from_secs(3),
        }
    }
}

/// Addresses past their failure budget are refused until this long from
/// now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds for the `Retry-After` header, at least one.
    pub fn seconds(&self) -> u64 {
        self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0)
    }
}

/// The per-address failure budgets of one process.
pub struct AuthThrottle {
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    /// Addresses whose budget is spent, and when they may try again.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("enabled", &self.failures.is_some())
            .finish_non_exhaustive()
    }
}

/// Above this many blocked addresses, expired entries are dropped on the
/// next insert, so a scan from many addresses cannot grow the map forever.
const PRUNE_ABOVE: usize = 1024;

impl AuthThrottle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        let failures = NonZeroU32::new(policy.burst).and_then(|burst| {
            Quota::with_period(policy.refill)
                .map(|quota| RateLimiter::keyed(quota.allow_burst(burst)))
        });
        AuthThrottle {
            failures,
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` must wait before its credentials are even looked at.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), RetryAfter> {
        let Some(client) = client else { return Ok(()) };
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        match blocked.get(&client) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Err(RetryAfter(left)),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Counts one failed authentication from `client`; says how long it must
    /// now wait when this failure spent its budget.
    pub fn failed(&self, client: Option<IpAddr>) -> Option<RetryAfter> {
        let (Some(limiter), Some(client)) = (&self.failures, client) else {
            return None;
        };
        let not_until = limiter.check_key(&client).err()?;
        let wait = not_until.wait_time_from(self.clock.now());
        let now = Instant::now();
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        if blocked.len() >= PRUNE_ABOVE {
            blocked.retain(|_, until| *until > now);
            limiter.retain_recent();
        }
        blocked.insert(client, now + wait);
        tracing::warn!(
            client.addr = %client,
            retry_after_secs = wait.as_secs_f64(),
            "too many failed authentications from this address; refusing it for a while"
        );
        Some(RetryAfter(wait))
    }
}

/// The address a request came from (the TCP peer).
pub fn client_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn an_address_is_refused_after_its_burst_and_others_are_not() {
        let throttle = AuthThrottle::new(ThrottlePolicy {
            burst: 3,
            refill: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert_eq!(throttle.failed(client(1)), None);
            assert_eq!(throttle.check(client(1)), Ok(()));
        }
        let wait = throttle
            .failed(client(1))
            .expect("fourth failure is over budget");
        assert!(wait.0 > Duration::from_secs(50), "{wait:?}");
        assert!(throttle.check(client(1)).is_err());
        assert_eq!(throttle.check(client(2)), Ok(()));
        assert_eq!(throttle.failed(client(2)), None);
    }

    #[test]
    fn the_block_ends_when_a_cell_is_earned_back() {
        let throttle = AuthThrottle::new(ThrottlePolicy {
            burst: 1,
            refill: Duration::from_millis(50),
        });
        assert_eq!(throttle.failed(client(1)), None);
        assert!(throttle.failed(client(1)).is_some());
        assert!(throttle.check(client(1)).is_err());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(throttle.check(client(1)), Ok(()));
    }

    #[test]
    fn a_zero_burst_turns_it_off() {
        let throttle = AuthThrottle::new(ThrottlePolicy {
            burst: 0,
            refill: Duration::from_secs(1),
        });
        for _ in 0..100 {
            assert_eq!(throttle.failed(client(1)), None);
        }
        assert_eq!(throttle.check(client(1)), Ok(()));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_secs(3)).seconds(), 3);
        assert_eq!(RetryAfter(Duration::from_millis(3001)).seconds(), 4);
    }
}
