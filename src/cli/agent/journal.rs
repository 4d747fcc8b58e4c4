//! The agent's journal: what it meant to do and what it did, so a reboot at
//! any instant neither uploads a file twice nor loses one.
//!
//! It is a JSON Lines file, `journal.jsonl` in `--state-dir`, appended one
//! record at a time and fsynced before the agent acts on it. A file's life
//! is `intent` (its path, size, mtime and sha256, and the case) → `upload`
//! (the tus upload's URL, written before a byte is sent) → `receipt` (the
//! image, and where the file will be moved) or `failed` → `moved`. On
//! start the records are replayed into the live state; a record torn by a
//! crash can only be the last one, and is dropped. The journal is then
//! rewritten with only the live state (durably, see `durable.rs`), so it
//! stays small. Cases have their own records: `case_intent` before a case
//! is created, `case` once it exists, `case_closed` once it is submitted.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::durable;

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path} is damaged at line {line}; move it aside to start afresh")]
    Damaged { path: PathBuf, line: usize },
    #[error("another agent is using the state directory {0}")]
    Locked(PathBuf),
}

/// A file the agent has committed to upload: who it is, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIntent {
    /// Path relative to the watched folder, `/`-separated.
    pub file: String,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub sha256: String,
    pub group: String,
    pub case: String,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// About to create the case for `group` (Unix seconds).
    CaseIntent {
        group: String,
        at: i64,
    },
    /// The case for `group`; the counts are of files moved so far.
    Case {
        group: String,
        case: String,
        submit: bool,
        /// The sidecar it came from, relative to the watched folder.
        sidecar: Option<String>,
        #[serde(default)]
        done: u32,
        #[serde(default)]
        failed: u32,
    },
    /// The group's case is submitted: later files start a new one.
    CaseClosed {
        group: String,
    },
    Intent(FileIntent),
    Upload {
        file: String,
        url: String,
    },
    Receipt {
        file: String,
        image: String,
        /// Where the file goes, relative to the watched folder.
        dest: String,
    },
    Failed {
        file: String,
        code: String,
        /// The server's reason (it names no patient data).
        message: String,
        dest: String,
    },
    Moved {
        file: String,
    },
    /// The file changed or vanished before it went up: forget the intent
    /// (the next look at it starts afresh).
    Dropped {
        file: String,
    },
}

/// What became of a file, before it is moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        image: String,
        dest: String,
    },
    Failed {
        code: String,
        message: String,
        dest: String,
    },
}

/// A file between its intent and its move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub intent: FileIntent,
    pub url: Option<String>,
    pub outcome: Option<Outcome>,
}

/// A group's case as the journal knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// `None` while only the intent to create it is recorded.
    pub case: Option<String>,
    pub intent_at: Option<i64>,
    pub submit: bool,
    pub sidecar: Option<String>,
    pub done: u32,
    pub failed: u32,
}

/// The live state: open groups and unfinished files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    pub groups: BTreeMap<String, Group>,
    pub files: BTreeMap<String, Entry>,
}

impl State {
    fn apply(&mut self, record: &Record) {
        match record {
            Record::CaseIntent { group, at } => {
                self.groups.entry(group.clone()).or_default().intent_at = Some(*at);
            }
            Record::Case {
                group,
                case,
                submit,
                sidecar,
                done,
                failed,
            } => {
                self.groups.insert(
                    group.clone(),
                    Group {
                        case: Some(case.clone()),
                        intent_at: None,
                        submit: *submit,
                        sidecar: sidecar.clone(),
                        done: *done,
                        failed: *failed,
                    },
                );
            }
            Record::CaseClosed { group } => {
                self.groups.remove(group);
            }
            Record::Intent(intent) => {
                self.files.insert(
                    intent.file.clone(),
                    Entry {
                        intent: intent.clone(),
                        url: None,
                        outcome: None,
                    },
                );
            }
            Record::Upload { file, url } => {
                if let Some(entry) = self.files.get_mut(file) {
                    entry.url = Some(url.clone());
                }
            }
            Record::Receipt { file, image, dest } => {
                if let Some(entry) = self.files.get_mut(file) {
                    entry.outcome = Some(Outcome::Done {
                        image: image.clone(),
                        dest: dest.clone(),
                    });
                }
            }
            Record::Failed {
                file,
                code,
                message,
                dest,
            } => {
                if let Some(entry) = self.files.get_mut(file) {
                    entry.outcome = Some(Outcome::Failed {
                        code: code.clone(),
                        message: message.clone(),
                        dest: dest.clone(),
                    });
                }
            }
            Record::Dropped { file } => {
                self.files.remove(file);
            }
            Record::Moved { file } => {
                if let Some(entry) = self.files.remove(file)
                    && let Some(group) = self.groups.get_mut(&entry.intent.group)
                {
                    match entry.outcome {
                        Some(Outcome::Done { .. }) => group.done += 1,
                        Some(Outcome::Failed { .. }) => group.failed += 1,
                        None => {}
                    }
                }
            }
        }
    }

    /// The records that rebuild this state, and nothing more.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for (name, group) in &self.groups {
            match &group.case {
                Some(case) => out.push(Record::Case {
                    group: name.clone(),
                    case: case.clone(),
                    submit: group.submit,
                    sidecar: group.sidecar.clone(),
                    done: group.done,
                    failed: group.failed,
                }),
                None => {
                    if let Some(at) = group.intent_at {
                        out.push(Record::CaseIntent {
                            group: name.clone(),
                            at,
                        });
                    }
                }
            }
        }
        for entry in self.files.values() {
            let file = entry.intent.file.clone();
            out.push(Record::Intent(entry.intent.clone()));
            if let Some(url) = &entry.url {
                out.push(Record::Upload {
                    file: file.clone(),
                    url: url.clone(),
                });
            }
            match &entry.outcome {
                Some(Outcome::Done { image, dest }) => out.push(Record::Receipt {
                    file,
                    image: image.clone(),
                    dest: dest.clone(),
                }),
                Some(Outcome::Failed {
                    code,
                    message,
                    dest,
                }) => out.push(Record::Failed {
                    file,
                    code: code.clone(),
                    message: message.clone(),
                    dest: dest.clone(),
                }),
                None => {}
            }
        }
        out
    }
}

/// The open journal: the live state and the file records are appended to.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    state: State,
    /// Lines in the file, to know when to compact.
    lines: usize,
    /// Held for the agent's lifetime: one agent per state directory.
    _lock: File,
}

impl Journal {
    /// Opens (or starts) the journal in `dir`, replays it and compacts it.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("agent.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(JournalError::Locked(dir.to_owned()));
        }
        let path = dir.join("journal.jsonl");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        let state = replay(&text).map_err(|line| JournalError::Damaged {
            path: path.clone(),
            line,
        })?;
        let file = rewrite(&path, &state).map_err(io(&path))?;
        let lines = state.records().len();
        Ok(Self {
            path,
            file,
            state,
            lines,
            _lock: lock,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Appends `record` and makes it durable before returning.
    pub fn append(&mut self, record: Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(&record).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.state.apply(&record);
        self.lines += 1;
        Ok(())
    }

    /// Rewrites the journal with only the live state once most of its
    /// lines are history.
    pub fn compact_if_large(&mut self) -> Result<(), JournalError> {
        let live = self.state.records().len();
        if self.lines < 1000 || self.lines < live * 4 {
            return Ok(());
        }
        self.file = rewrite(&self.path, &self.state).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.lines = live;
        Ok(())
    }
}

/// The state the lines describe; `Err(line)` for a damaged line that is
/// not the torn last one.
fn replay(text: &str) -> Result<State, usize> {
    let mut state = State::default();
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => state.apply(&record),
            Err(_) if torn_tail && i + 1 == lines.len() => break,
            Err(_) => return Err(i + 1),
        }
    }
    Ok(state)
}

/// Replaces the journal with `state`'s records; returns it open for append.
fn rewrite(path: &Path, state: &State) -> std::io::Result<File> {
    let mut text = Vec::new();
    for record in state.records() {
        serde_json::to_writer(&mut text, &record)?;
        text.push(b'\n');
    }
    durable::replace(path, &text)?;
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(file: &str) -> FileIntent {
        FileIntent {
            file: file.to_owned(),
            size: 10,
            mtime_ns: 1,
            sha256: "ab".repeat(32),
            group: "sub:a".to_owned(),
            case: "c1".to_owned(),
        }
    }

    fn case() -> Record {
        Record::Case {
            group: "sub:a".to_owned(),
            case: "c1".to_owned(),
            submit: true,
            sidecar: Some("a/case.json".to_owned()),
            done: 0,
            failed: 0,
        }
    }

    #[test]
    fn a_reopened_journal_has_the_same_state_and_counts_moved_files_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        journal.append(case()).expect("case");
        for file in ["a/1.dcm", "a/2.dcm"] {
            journal
                .append(Record::Intent(intent(file)))
                .expect("intent");
            journal
                .append(Record::Upload {
                    file: file.to_owned(),
                    url: "/api/v1/uploads/u1".to_owned(),
                })
                .expect("upload");
        }
        journal
            .append(Record::Receipt {
                file: "a/1.dcm".to_owned(),
                image: "i1".to_owned(),
                dest: "done/a/1.dcm".to_owned(),
            })
            .expect("receipt");
        journal
            .append(Record::Moved {
                file: "a/1.dcm".to_owned(),
            })
            .expect("moved");
        let before = journal.state().clone();
        assert_eq!(before.groups["sub:a"].done, 1);
        assert_eq!(before.files.len(), 1);
        drop(journal);
        // Twice: the compacted journal replays to the same state.
        for _ in 0..2 {
            let journal = Journal::open(dir.path()).expect("reopen");
            assert_eq!(journal.state(), &before);
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_a_damaged_middle_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.jsonl");
        let good = serde_json::to_string(&case()).expect("json");
        std::fs::write(&path, format!("{good}\n{{\"kind\":\"inte")).expect("write");
        let journal = Journal::open(dir.path()).expect("a torn tail is a crash mid-write");
        assert_eq!(journal.state().groups.len(), 1);
        drop(journal);
        std::fs::write(&path, format!("garbage\n{good}\n")).expect("write");
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn one_agent_per_state_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Journal::open(dir.path()).expect("open");
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Locked(_))
        ));
    }
}
