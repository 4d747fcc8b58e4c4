//! Webhooks: how Relay tells an office's own system that a report is signed.
//!
//! An office may register a URL; when a specialist signs a report on one of
//! its cases, Relay POSTs a small notice there, so the office system can
//! fetch the report instead of polling. This module holds the pure pieces of
//! that delivery, with no I/O:
//!
//! - [`signature`]: every delivery is signed the Standard Webhooks way
//!   (HMAC-SHA256 over id, timestamp and body, with a per-office
//!   `whsec_` secret), so the office can trust that a notice came from Relay,
//!   unaltered and recent, and refuse forgeries and replays. [`verify`] is the
//!   receiver's side, used by Relay's own tests to prove deliveries.
//! - [`target`]: a webhook URL is chosen by a tenant, yet requested from
//!   inside Relay's network. It is validated when registered, and every
//!   address its host resolves to is checked again before connecting, so a
//!   tenant cannot use Relay to reach internal services (cloud metadata,
//!   databases, loopback admin ports).

pub mod signature;
pub mod target;

pub use signature::{
    DEFAULT_TOLERANCE_SECS, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, SecretError,
    SignatureError, WebhookSecret, headers, sign, verify,
};
pub use target::{
    AddressKind, MAX_URL_LEN, Scheme, TargetError, TargetHost, TargetPolicy, WebhookTarget,
    check_resolved,
};
