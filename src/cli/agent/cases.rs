//! A group's case: found in the journal, or created from its referral.
//!
//! The referral is the group's `case.json` sidecar — the same JSON as
//! `POST /api/v1/cases` and `relay upload --new-case`, plus one key of the
//! agent's own, `"submit": true` (see `submit.rs`). Without a sidecar the
//! `--referral-template` file is used; without either, the group's files
//! wait where they are (reported in the status) until a `case.json`
//! appears: a case without a referral would be a case without a patient.
//!
//! Creating a case is not idempotent on the server, so the journal records
//! the intent first. If the agent dies between the server's `201` and the
//! journal's `case` record, the next start looks among the office's draft
//! cases created since the intent for one with this referral's patient,
//! specialty and question, and adopts it instead of making a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::journal::Record;
use super::rules::GroupOf;
use super::{Shared, transient};
use crate::cli::upload::tus::UploadError;

/// Where a group stands with its case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseFor {
    Ready(String),
    /// Its files wait: no referral, or the server refused it.
    Waiting(String),
    /// The server cannot be reached now.
    Offline(String),
}

/// A referral as read from its file.
#[derive(Debug, Clone)]
struct Referral {
    body: Value,
    submit: bool,
    /// The sidecar it came from, relative to the watched folder.
    sidecar: Option<String>,
}

/// Referrals that were refused, by file and version, so a bad `case.json`
/// is not sent again until it changes.
#[derive(Debug, Default)]
pub struct Cases {
    refused: HashMap<(PathBuf, u64, i64), String>,
}

impl Cases {
    /// The case for `group`, creating it when its referral is there.
    pub async fn case_for(&mut self, shared: &Shared, group: &GroupOf) -> CaseFor {
        let known = shared.journal(|j| j.state().groups.get(&group.key).cloned());
        if let Some(case) = known.as_ref().and_then(|g| g.case.clone()) {
            return CaseFor::Ready(case);
        }
        let Some((path, sidecar)) = find_referral(&shared.root, group, &shared.template) else {
            return CaseFor::Waiting(format!(
                "no {} (and no --referral-template)",
                group.sidecars.first().map_or("case.json", String::as_str)
            ));
        };
        let version = std::fs::metadata(&path)
            .map(|m| (path.clone(), m.len(), super::scan::mtime_ns(&m)))
            .unwrap_or((path.clone(), 0, 0));
        if let Some(reason) = self.refused.get(&version) {
            return CaseFor::Waiting(reason.clone());
        }
        let referral = match read(&path, sidecar) {
            Ok(referral) => referral,
            Err(reason) => return self.refuse(version, reason),
        };
        if let Some(at) = known.and_then(|g| g.intent_at)
            && let Ok(drafts) = shared.tus.draft_cases().await
            && let Some(case) = adoptable(&drafts, &referral.body, at)
        {
            tracing::info!(case.id = %case, group = %group.key, "adopted the case an earlier run created");
            return self.record(shared, group, &referral, case);
        }
        let at = chrono::Utc::now().timestamp();
        if let Err(e) = shared.journal_append(Record::CaseIntent {
            group: group.key.clone(),
            at,
        }) {
            return CaseFor::Offline(e.to_string());
        }
        match shared.tus.create_case(&referral.body).await {
            Ok(answer) => match answer["id"].as_str() {
                Some(case) => {
                    tracing::info!(case.id = %case, group = %group.key, "case created");
                    self.record(shared, group, &referral, case.to_owned())
                }
                None => CaseFor::Offline("the server named no case".to_owned()),
            },
            Err(error) if transient(&error) => CaseFor::Offline(error.to_string()),
            Err(UploadError::Refused { message, .. }) => {
                self.refuse(version, format!("the referral was refused: {message}"))
            }
            Err(error) => CaseFor::Offline(error.to_string()),
        }
    }

    fn record(
        &mut self,
        shared: &Shared,
        group: &GroupOf,
        referral: &Referral,
        case: String,
    ) -> CaseFor {
        let record = Record::Case {
            group: group.key.clone(),
            case: case.clone(),
            submit: referral.submit,
            sidecar: referral.sidecar.clone(),
            done: 0,
            failed: 0,
        };
        match shared.journal_append(record) {
            Ok(()) => CaseFor::Ready(case),
            Err(e) => CaseFor::Offline(e.to_string()),
        }
    }

    fn refuse(&mut self, version: (PathBuf, u64, i64), reason: String) -> CaseFor {
        tracing::error!(referral = %version.0.display(), %reason, "the files of this case wait until its referral is fixed");
        self.refused.insert(version, reason.clone());
        CaseFor::Waiting(reason)
    }
}

/// The nearest sidecar that exists, else the template.
fn find_referral(
    root: &Path,
    group: &GroupOf,
    template: &Option<PathBuf>,
) -> Option<(PathBuf, Option<String>)> {
    for rel in &group.sidecars {
        let path = root.join(rel);
        if path.is_file() {
            return Some((path, Some(rel.clone())));
        }
    }
    template.as_ref().map(|t| (t.clone(), None))
}

fn read(path: &Path, sidecar: Option<String>) -> Result<Referral, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the referral: {e}"))?;
    let mut body: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the referral is not JSON: {e}"))?;
    let object = body
        .as_object_mut()
        .ok_or_else(|| "the referral is not a JSON object".to_owned())?;
    let submit = match object.remove("submit") {
        None => false,
        Some(Value::Bool(submit)) => submit,
        Some(_) => return Err("\"submit\" must be true or false".to_owned()),
    };
    Ok(Referral {
        body,
        submit,
        sidecar,
    })
}

/// The one draft created since `at` (Unix seconds, less a minute for clock
/// skew) for this referral's patient, specialty and question.
fn adoptable(drafts: &[Value], referral: &Value, at: i64) -> Option<String> {
    let words = |v: &Value| {
        v.as_str()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let same = |case: &Value, pointer: &str| {
        words(&case.pointer(pointer).cloned().unwrap_or(Value::Null))
            == words(&referral.pointer(pointer).cloned().unwrap_or(Value::Null))
    };
    let matching: Vec<&Value> = drafts
        .iter()
        .filter(|case| {
            case["created_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t.timestamp() >= at - 60)
        })
        .filter(|case| {
            [
                "/patient/name",
                "/patient/birth_date",
                "/specialty",
                "/question",
            ]
            .iter()
            .all(|p| same(case, p))
        })
        .collect();
    match matching.as_slice() {
        [one] => one["id"].as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_submit_key_is_the_agents_and_is_not_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("case.json");
        std::fs::write(&path, r#"{"specialty": "radiology", "submit": true}"#).expect("write");
        let referral = read(&path, None).expect("read");
        assert!(referral.submit);
        assert_eq!(referral.body, json!({"specialty": "radiology"}));
        std::fs::write(&path, r#"{"submit": "yes"}"#).expect("write");
        assert!(read(&path, None).is_err());
    }

    #[test]
    fn only_one_recent_draft_for_the_same_referral_is_adopted() {
        let referral = json!({"patient": {"name": "A  B", "birth_date": "1961-07-14"},
            "specialty": "radiology", "question": "Fracture?"});
        let draft = |id: &str, at: &str, question: &str| {
            json!({"id": id, "created_at": at, "specialty": "radiology", "question": question,
                "patient": {"name": "A B", "birth_date": "1961-07-14"}})
        };
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .expect("time")
            .timestamp();
        let recent = draft("c1", "2026-01-01T10:00:01.000Z", "Fracture?");
        let old = draft("c0", "2025-12-31T10:00:00.000Z", "Fracture?");
        let other = draft("c2", "2026-01-01T10:00:02.000Z", "Something else?");
        assert_eq!(
            adoptable(&[recent.clone(), old, other], &referral, at),
            Some("c1".to_owned())
        );
        assert_eq!(adoptable(&[recent.clone(), recent], &referral, at), None);
    }
}
