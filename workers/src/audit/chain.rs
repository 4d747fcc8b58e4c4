//! The hash chain that makes the audit log tamper-evident.
//!
//! Each sealed event has a sequence number and `hash = sha256(canonical(event,
//! seq, prev_hash))`, where `prev_hash` is the hash of the event sealed just
//! before it. The chain head (last `seq` and `hash`) is kept in its own row.
//! Changing, removing or inserting a sealed event, or cutting the tail, breaks
//! a link that [`ChainVerifier`] finds while walking the events in `seq`
//! order. Order is the order of sealing, not of insertion, so concurrent
//! writers never wait on each other; PostgreSQL's out-of-order commits of
//! sequence values are harmless.

use sha2::{Digest, Sha256};

use super::AuditEvent;

/// The `prev_hash` of the first sealed event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last sealed event: where the next seal continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// The hash that seals `event` at position `seq` after `prev_hash`.
///
/// The canonical form is a JSON array in a fixed field order: unambiguous
/// (strings are quoted and escaped) and stable across serde versions.
pub fn seal_hash(event: &AuditEvent, seq: i64, prev_hash: &str) -> String {
    let canonical = serde_json::json!([
        seq,
        event.id,
        event.occurred_at.as_millis(),
        event.actor,
        event.actor_role,
        event.action,
        event.object_id,
        event.office_id.map(|o| o.to_string()),
        event.remote_addr,
        event.request_id,
        prev_hash,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("audit event {event_id} (seq {seq}) was changed after it was sealed")]
    Changed { event_id: i64, seq: i64 },
    #[error(
        "audit events with seq {expected_seq} to {} are missing (removed before event {event_id})",
        found_seq - 1
    )]
    Missing {
        expected_seq: i64,
        found_seq: i64,
        event_id: i64,
    },
    #[error(
        "audit event {event_id} (seq {seq}) does not follow the event sealed before it (an event was inserted, removed or changed)"
    )]
    Relinked { event_id: i64, seq: i64 },
    #[error("audit event {event_id} is not sealed but sits inside the sealed chain")]
    Unsealed { event_id: i64 },
    #[error(
        "the chain ends at seq {last_seq} but its head records seq {head_seq}: events at the end were removed"
    )]
    Truncated { last_seq: i64, head_seq: i64 },
    #[error(
        "the chain head does not match the last sealed event (seq {seq}): the head was altered"
    )]
    HeadMismatch { seq: i64 },
}

impl ChainBreak {
    /// The id of the first event found wrong, when one can be named.
    pub fn event_id(&self) -> Option<i64> {
        match self {
            ChainBreak::Changed { event_id, .. }
            | ChainBreak::Missing { event_id, .. }
            | ChainBreak::Relinked { event_id, .. }
            | ChainBreak::Unsealed { event_id } => Some(*event_id),
            ChainBreak::Truncated { .. } | ChainBreak::HeadMismatch { .. } => None,
        }
    }
}

/// Walks sealed events in `seq` order and stops at the first break.
#[derive(Debug)]
pub struct ChainVerifier {
    last: ChainHead,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            last: ChainHead::genesis(),
            checked: 0,
        }
    }

    /// Checks the next event in `seq` order.
    pub fn check(&mut self, event: &AuditEvent) -> Result<(), ChainBreak> {
        let (Some(seq), Some(prev_hash), Some(hash)) = (event.seq, &event.prev_hash, &event.hash)
        else {
            return Err(ChainBreak::Unsealed { event_id: event.id });
        };
        let expected_seq = self.last.seq + 1;
        if seq != expected_seq {
            return Err(ChainBreak::Missing {
                expected_seq,
                found_seq: seq,
                event_id: event.id,
            });
        }
        if *prev_hash != self.last.hash {
            return Err(ChainBreak::Relinked {
                event_id: event.id,
                seq,
            });
        }
        if seal_hash(event, seq, prev_hash) != *hash {
            return Err(ChainBreak::Changed {
                event_id: event.id,
                seq,
            });
        }
        self.last = ChainHead {
            seq,
            hash: hash.clone(),
        };
        self.checked += 1;
        Ok(())
    }

    /// Ends the walk against the recorded head; returns how many events were
    /// verified.
    pub fn finish(self, head: &ChainHead) -> Result<u64, ChainBreak> {
        if self.last.seq < head.seq {
            return Err(ChainBreak::Truncated {
                last_seq: self.last.seq,
                head_seq: head.seq,
            });
        }
        if self.last != *head {
            return Err(ChainBreak::HeadMismatch { seq: self.last.seq });
        }
        Ok(self.checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn event(id: i64) -> AuditEvent {
        AuditEvent {
            id,
            occurred_at: Timestamp::from_millis(1_700_000_000_000 + id),
            actor: "u1".into(),
            actor_role: "office".into(),
            action: "case.read".into(),
            object_id: Some(format!("case-{id}")),
            office_id: None,
            remote_addr: "127.0.0.1".into(),
            request_id: Some(format!("req-{id}")),
            seq: None,
            prev_hash: None,
            hash: None,
        }
    }

    /// Seals events the way the sealer does.
    fn sealed(n: i64) -> (Vec<AuditEvent>, ChainHead) {
        let mut head = ChainHead::genesis();
        let mut out = Vec::new();
        for id in 1..=n {
            let mut e = event(id * 10);
            let seq = head.seq + 1;
            let hash = seal_hash(&e, seq, &head.hash);
            e.seq = Some(seq);
            e.prev_hash = Some(head.hash.clone());
            e.hash = Some(hash.clone());
            head = ChainHead { seq, hash };
            out.push(e);
        }
        (out, head)
    }

    fn verify(events: &[AuditEvent], head: &ChainHead) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for e in events {
            v.check(e)?;
        }
        v.finish(head)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (events, head) = sealed(5);
        assert_eq!(verify(&events, &head), Ok(5));
        assert_eq!(verify(&[], &ChainHead::genesis()), Ok(0));
    }

    #[test]
    fn an_edited_field_is_found_at_its_event() {
        let (mut events, head) = sealed(5);
        events[2].object_id = Some("someone-else".into());
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::Changed {
                event_id: 30,
                seq: 3
            })
        );
    }

    #[test]
    fn a_removed_event_is_found_after_the_gap() {
        let (mut events, head) = sealed(5);
        events.remove(1);
        let err = verify(&events, &head).expect_err("broken");
        assert_eq!(
            err,
            ChainBreak::Missing {
                expected_seq: 2,
                found_seq: 3,
                event_id: 30
            }
        );
        assert_eq!(err.event_id(), Some(30));
    }

    #[test]
    fn a_resequenced_forgery_breaks_the_link() {
        // Remove event 2 and renumber the rest to hide the gap: the links and
        // hashes no longer fit.
        let (mut events, head) = sealed(4);
        events.remove(1);
        for (i, e) in events.iter_mut().enumerate() {
            e.seq = Some(i as i64 + 1);
        }
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::Relinked {
                event_id: 30,
                seq: 2
            })
        );
    }

    #[test]
    fn a_cut_tail_is_found_against_the_head() {
        let (mut events, head) = sealed(5);
        events.truncate(3);
        assert_eq!(
            verify(&events, &head),
            Err(ChainBreak::Truncated {
                last_seq: 3,
                head_seq: 5
            })
        );
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = event(1);
        let h = seal_hash(&base, 1, GENESIS);
        let mut variants = vec![base.clone(); 8];
        variants[0].actor = "u2".into();
        variants[1].actor_role = "admin".into();
        variants[2].action = "case.update".into();
        variants[3].object_id = None;
        variants[4].remote_addr = "10.0.0.1".into();
        variants[5].request_id = None;
        variants[6].occurred_at = Timestamp::from_millis(0);
        variants[7].id = 2;
        for v in &variants {
            assert_ne!(seal_hash(v, 1, GENESIS), h);
        }
        assert_ne!(seal_hash(&base, 2, GENESIS), h);
    }
}
