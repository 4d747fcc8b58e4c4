//! Finding files in the watched folder and deciding when each is complete.
//!
//! The agent polls: it lists the folder every `--poll` and takes a file
//! once its size and modification time have not changed for `--stable-for`
//! across at least two looks. Polling, not change notification, because
//! export folders are often SMB or NFS shares written by another machine,
//! where inotify sees nothing or only some events; a listing always tells
//! the truth. A modality or a person copying files gives no other sign that
//! a file is finished.
//!
//! Left out: `done/` and `failed/` at the top (the agent's own), hidden
//! files and folders (exporters' temporary files often are), names ending
//! in `.tmp`, `.part` or `.partial`, `DICOMDIR` indexes (the files they
//! index are taken) and `case.json` sidecars (read, not uploaded).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The folders, under the watched one, that files are moved to.
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
/// The referral sidecar's name.
pub const SIDECAR: &str = "case.json";

/// A file as one listing saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Relative to the watched folder, `/`-separated.
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// Every candidate file under `root`, sorted by relative path.
pub fn scan(root: &Path) -> std::io::Result<Vec<Seen>> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // A folder removed between listing and reading is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if skipped(&name, prefix.is_empty()) {
                continue;
            }
            let rel = format!("{prefix}{name}");
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push((entry.path(), format!("{rel}/")));
            } else if meta.is_file() && name != SIDECAR {
                found.push(Seen {
                    rel,
                    path: entry.path(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                });
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

fn skipped(name: &str, top: bool) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || (top && (name == DONE || name == FAILED))
        || lower == "dicomdir"
        || [".tmp", ".part", ".partial"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
}

/// Nanoseconds since the Unix epoch (0 when the file system has no mtime).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

/// How a file looked, and since when.
#[derive(Debug)]
struct Look {
    size: u64,
    mtime_ns: i64,
    since: Instant,
    looks: u32,
}

/// Remembers each file's last look to tell growing files from complete ones.
#[derive(Debug)]
pub struct Stability {
    stable_for: Duration,
    looks: HashMap<String, Look>,
}

impl Stability {
    pub fn new(stable_for: Duration) -> Self {
        Self {
            stable_for,
            looks: HashMap::new(),
        }
    }

    /// Records a listing; returns, for each file, whether it is complete.
    /// Files no longer listed are forgotten.
    pub fn observe(&mut self, seen: &[Seen], now: Instant) -> Vec<bool> {
        self.looks
            .retain(|rel, _| seen.binary_search_by(|s| s.rel.as_str().cmp(rel)).is_ok());
        seen.iter()
            .map(|file| {
                let look = self.looks.entry(file.rel.clone()).or_insert(Look {
                    size: file.size,
                    mtime_ns: file.mtime_ns,
                    since: now,
                    looks: 0,
                });
                if look.size != file.size || look.mtime_ns != file.mtime_ns {
                    *look = Look {
                        size: file.size,
                        mtime_ns: file.mtime_ns,
                        since: now,
                        looks: 0,
                    };
                }
                look.looks += 1;
                look.looks >= 2 && now.duration_since(look.since) >= self.stable_for
            })
            .collect()
    }

    /// Starts a file's watch again (it changed while being read).
    pub fn forget(&mut self, rel: &str) {
        self.looks.remove(rel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(size: u64) -> Seen {
        Seen {
            rel: "a/x.dcm".to_owned(),
            path: PathBuf::from("a/x.dcm"),
            size,
            mtime_ns: 5,
        }
    }

    #[test]
    fn a_file_is_complete_only_once_unchanged_for_the_interval_over_two_looks() {
        let mut stability = Stability::new(Duration::from_secs(2));
        let t0 = Instant::now();
        assert_eq!(stability.observe(&[seen(10)], t0), [false]);
        assert_eq!(
            stability.observe(&[seen(20)], t0 + Duration::from_secs(3)),
            [false],
            "it grew"
        );
        assert_eq!(
            stability.observe(&[seen(20)], t0 + Duration::from_secs(4)),
            [false],
            "not yet for 2 s"
        );
        assert_eq!(
            stability.observe(&[seen(20)], t0 + Duration::from_secs(5)),
            [true]
        );
        assert!(
            stability
                .observe(&[], t0 + Duration::from_secs(6))
                .is_empty()
        );
        assert_eq!(
            stability.observe(&[seen(20)], t0 + Duration::from_secs(7)),
            [false],
            "a file that went away and came back is watched afresh"
        );
    }

    #[test]
    fn the_agents_own_folders_hidden_and_temporary_files_are_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for rel in [
            "study/1.dcm",
            "study/case.json",
            "study/.partial-copy",
            "study/2.dcm.tmp",
            "study/DICOMDIR",
            "done/old.dcm",
            "failed/bad.jpg",
            "sub/done/kept.jpg",
            ".hidden/x.jpg",
            "top.jpg",
        ] {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(&path, b"x").expect("write");
        }
        let rels: Vec<String> = scan(root)
            .expect("scan")
            .into_iter()
            .map(|s| s.rel)
            .collect();
        assert_eq!(rels, ["study/1.dcm", "sub/done/kept.jpg", "top.jpg"]);
    }
}
