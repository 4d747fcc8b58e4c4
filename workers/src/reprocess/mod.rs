//! Operators' batch reprocessing: walk every stored blob (or image) in key
//! order, in batches, doing one kind of work on each — `verify`,
//! `rederive`, `migrate`, `sweep` — with bounded concurrency and an
//! optional rate limit so it can run beside live traffic.
//!
//! Every run is recorded in the catalog with its options, counts and cursor
//! (the last key of the last finished batch). A run stopped by Ctrl-C, a
//! crash or a kill resumes from its cursor: the work of finished batches is
//! never redone, and at most one batch is done twice.

pub mod execute;
pub mod migrate;
pub mod rate;
pub mod rederive;
pub mod sweep;
pub mod verify;
pub mod walk;

use serde::{Deserialize, Serialize};

use crate::model::{CaseId, ImageId, Sha256, Timestamp};

pub use execute::{RunError, execute, planned_total};
pub use rate::{Rate, RateLimiter};
pub use walk::{ItemOutcome, Progress, Walkable, walk};

/// What a run does to each blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Re-hash every blob against its key and recorded size.
    Verify,
    /// Queue derive again for images whose renditions are missing or older
    /// than this build's derive version.
    Rederive,
    /// Copy every blob to another store, verify it there, then record it
    /// there (and, when asked, remove it from where it was).
    Migrate,
    /// Remove blobs the store holds that nothing refers to, once older than
    /// a grace period.
    Sweep,
}

impl RunKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunKind::Verify => "verify",
            RunKind::Rederive => "rederive",
            RunKind::Migrate => "migrate",
            RunKind::Sweep => "sweep",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            RunKind::Verify,
            RunKind::Rederive,
            RunKind::Migrate,
            RunKind::Sweep,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// Which blobs a run visits, and how hard it works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunOptions {
    /// Blobs worked on at once.
    pub concurrency: usize,
    /// Blobs fetched per batch; the cursor is saved after each batch.
    pub batch: u32,
    /// At most this much work per second (bytes or items).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<BlobFilter>,
    /// Report what would be done; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// `rederive`: every image, not only stale ones.
    #[serde(default)]
    pub all: bool,
    /// `migrate`: the URL of the store every blob moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `migrate`: remove each blob from its old store once it is verified
    /// on the new one and recorded there (never before).
    #[serde(default)]
    pub delete_source: bool,
    /// `verify`: the URL of a second store holding replicas, copied back
    /// (verified) over a missing or corrupt blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_from: Option<String>,
    /// `sweep`: seconds an unreferenced blob must have been stored before
    /// it is removed (default [`DEFAULT_SWEEP_GRACE`]), so an upload still
    /// in flight is never swept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
    /// One part of a run split across workers (blob kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Part `index` (from 0) of `of` parts of the blob key space: each part a
/// contiguous range of first key bytes, so its walk is a keyset walk too,
/// and parts run as separate runs on as many workers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shard {
    pub index: u32,
    pub of: u32,
}

impl Shard {
    /// The most parts a run may be split into.
    pub const MAX: u32 = 64;

    /// Keys of this part are above `lower` (a key prefix: every 64-digit
    /// key starting at or after it sorts after it) and below `upper`
    /// (none for the last part).
    pub fn bounds(&self) -> (String, Option<String>) {
        let at = |i: u32| 256 * i / self.of.max(1);
        let lower = match self.index {
            0 => String::new(),
            i => format!("{:02x}", at(i)),
        };
        let upper = (self.index + 1 < self.of).then(|| format!("{:02x}", at(self.index + 1)));
        (lower, upper)
    }

    /// Whether `key` (hex) falls below this part's upper bound.
    pub fn below_upper(&self, key: &str) -> bool {
        self.bounds().1.is_none_or(|upper| key < upper.as_str())
    }
}

/// `sweep`'s grace period unless told otherwise: one day.
pub const DEFAULT_SWEEP_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            batch: 256,
            rate: None,
            filter: None,
            dry_run: false,
            all: false,
            to: None,
            delete_source: false,
            repair_from: None,
            grace_secs: None,
            shard: None,
        }
    }
}

/// Narrows a run to some blobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobFilter {
    /// Stored at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Stored before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// Originals and renditions of one case's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<CaseId>,
    /// Originals of this media type (`image/jpeg`, `application/dicom`…)
    /// and their renditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

/// A blob as the walk sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub sha256: Sha256,
    pub size: u64,
}

/// A blob as a `sweep` walk sees it: what the store holds.
impl walk::Walkable for crate::blob::Listed {
    fn key(&self) -> String {
        self.key.to_hex()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// A blob as a `migrate` walk sees it: where it is now.
impl walk::Walkable for crate::catalog::PlacedBlob {
    fn key(&self) -> String {
        self.sha256.to_hex()
    }
    fn size(&self) -> u64 {
        self.size
    }
}

/// An image as a `rederive` walk sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageEntry {
    pub id: ImageId,
    pub size: u64,
}

/// What a run has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub scanned: u64,
    pub ok: u64,
    pub fixed: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.scanned += other.scanned;
        self.ok += other.ok;
        self.fixed += other.fixed;
        self.failed += other.failed;
        self.bytes += other.bytes;
    }
}

/// One item (a blob by its sha256, an image by its id) a run could not do
/// its work on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    pub key: String,
    pub reason: String,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Started and not finished: running now, or stopped and resumable.
    Running,
    Finished,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    pub id: String,
    pub kind: RunKind,
    pub options: RunOptions,
    pub state: RunState,
    pub started_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// The last key of the last finished batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    pub counts: Counts,
    /// The first failures (at most [`MAX_RECORDED_FAILURES`]).
    pub failures: Vec<Failure>,
}

/// Failures kept on the run record; the count goes on beyond them.
pub const MAX_RECORDED_FAILURES: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in [
            RunKind::Verify,
            RunKind::Rederive,
            RunKind::Migrate,
            RunKind::Sweep,
        ] {
            assert_eq!(RunKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(RunKind::parse("scrub"), None);
    }

    #[test]
    fn shards_cover_the_key_space_once() {
        let key = |first: u8| format!("{first:02x}{}", "0".repeat(62));
        for of in [1, 3, 4, 7] {
            for first in 0..=255u8 {
                let owners: Vec<u32> = (0..of)
                    .filter(|&index| {
                        let shard = Shard { index, of };
                        let (lower, _) = shard.bounds();
                        key(first) > lower && shard.below_upper(&key(first))
                    })
                    .collect();
                assert_eq!(owners.len(), 1, "key {first:02x} of {of} parts: {owners:?}");
            }
        }
        assert_eq!(
            Shard { index: 1, of: 4 }.bounds(),
            ("40".to_owned(), Some("80".to_owned()))
        );
    }

    #[test]
    fn counts_add_up() {
        let mut total = Counts::default();
        total.add(&Counts {
            scanned: 2,
            ok: 1,
            fixed: 0,
            failed: 1,
            bytes: 10,
        });
        total.add(&Counts {
            scanned: 1,
            ok: 1,
            fixed: 0,
            failed: 0,
            bytes: 5,
        });
        assert_eq!(
            (total.scanned, total.ok, total.failed, total.bytes),
            (3, 2, 1, 15)
        );
    }
}
