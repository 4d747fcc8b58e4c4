//! Whether and when the agent submits a case.
//!
//! By default it does not: the case stays a draft, and the clinic reviews
//! and submits it (web pages or API), since an export folder cannot say
//! when a case is complete. A referral with `"submit": true` asks the agent
//! to submit once the case's folder has been quiet for `--settle` (no file
//! appeared or changed, none waiting) and every file is in `done/`. A case
//! with a refused file is never submitted by the agent: a person decides
//! whether it can go without it. Once submitted, the group is closed in the
//! journal; with `--case-per subfolder` its `case.json` moves to `done/`
//! too, so the folder can be used again for the next patient.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::journal::Record;
use super::moves::{free_dest, move_file};
use super::scan::{DONE, Seen};
use super::{Shared, transient};
use crate::cli::upload::tus::UploadError;

/// The top folder a group's files are in, from its journal name and
/// sidecar (`""`: the whole watched folder).
fn folder_of(key: &str, sidecar: Option<&str>) -> String {
    if let Some(folder) = key.strip_prefix("folder:") {
        return if folder == "." {
            String::new()
        } else {
            folder.to_owned()
        };
    }
    sidecar
        .and_then(|s| s.split_once('/'))
        .map(|(top, _)| top.to_owned())
        .unwrap_or_default()
}

/// Whether `file` lies in `folder` (the top folder, `""` for all).
fn within(folder: &str, file: &str) -> bool {
    folder.is_empty() || file.starts_with(&format!("{folder}/"))
}

/// Submits every case that asked for it and is ready; returns the ids
/// submitted. `activity` is when each top folder last changed.
pub async fn submit_due(
    shared: &Shared,
    listing: &[Seen],
    activity: &HashMap<String, Instant>,
    started: Instant,
    settle: Duration,
) -> Vec<String> {
    let (groups, pending) = shared.journal(|j| {
        let pending: Vec<String> = j
            .state()
            .files
            .values()
            .map(|e| e.intent.group.clone())
            .collect();
        (j.state().groups.clone(), pending)
    });
    let mut submitted = Vec::new();
    for (key, group) in groups {
        let Some(case) = group.case.clone() else {
            continue;
        };
        if !group.submit || group.done == 0 || group.failed > 0 || pending.contains(&key) {
            continue;
        }
        let folder = folder_of(&key, group.sidecar.as_deref());
        let busy = listing.iter().any(|f| within(&folder, &f.rel));
        let last = activity
            .iter()
            .filter(|(top, _)| within(&folder, &format!("{top}/")))
            .map(|(_, at)| *at)
            .max()
            .unwrap_or(started)
            .max(started);
        if busy || last.elapsed() < settle {
            continue;
        }
        match shared.tus.submit_case(&case).await {
            Ok(_) => tracing::info!(case.id = %case, files = group.done, "case submitted"),
            Err(UploadError::Refused { status: 409, .. }) => {
                tracing::warn!(case.id = %case, "the case was no longer a draft (submitted or cancelled elsewhere)");
            }
            Err(e) if transient(&e) => {
                tracing::warn!(case.id = %case, error = %e, "cannot submit the case now; will try again");
                continue;
            }
            Err(e) => {
                tracing::error!(case.id = %case, error = %e, "the case's submission was refused; it stays a draft");
            }
        }
        if shared
            .journal_append(Record::CaseClosed { group: key.clone() })
            .is_err()
        {
            continue;
        }
        if key.starts_with("folder:")
            && let Some(sidecar) = &group.sidecar
        {
            let dest = free_dest(&shared.root, DONE, sidecar);
            if let Err(e) = move_file(&shared.root, sidecar, &dest) {
                tracing::warn!(error = %e, "cannot move the submitted case's case.json to done/");
            }
        }
        submitted.push(case);
    }
    submitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_folder_comes_from_its_name_or_its_sidecar() {
        assert_eq!(folder_of("folder:ct", None), "ct");
        assert_eq!(folder_of("folder:.", Some("case.json")), "");
        assert_eq!(folder_of("study:1.2.3", Some("ct/SE1/case.json")), "ct");
        assert_eq!(folder_of("study:1.2.3", None), "");
        assert!(within("ct", "ct/a.dcm"));
        assert!(!within("ct", "ctx/a.dcm"));
        assert!(within("", "anything"));
    }
}
