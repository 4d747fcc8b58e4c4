//! What the agent is doing, for the periodic status line and the `--once`
//! summary. The loop updates it; a timer logs it, so the status keeps
//! coming while a large file is on its way.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;

/// Counts of the last look plus this run's totals.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// Files still being written (not yet complete).
    pub incomplete: usize,
    /// Complete files waiting for their turn or for the server.
    pub queued: usize,
    /// Files waiting for a referral.
    pub waiting: usize,
    pub done: usize,
    pub failed: usize,
    /// Why the server is not being used right now, if it is not.
    pub offline: Option<String>,
}

/// One file's end in this run, for the summary.
#[derive(Debug, Clone)]
pub enum Line {
    Done {
        file: String,
        case: String,
        image: String,
        sha256: String,
    },
    Failed {
        file: String,
        code: String,
        message: String,
    },
    Waiting {
        file: String,
        reason: String,
    },
}

/// Logs the status every `every` until the handle is dropped.
pub fn ticker(status: Arc<Mutex<Status>>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.tick().await;
        loop {
            interval.tick().await;
            let s = status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            match &s.offline {
                Some(reason) => tracing::warn!(
                    incomplete = s.incomplete, queued = s.queued, waiting_for_referral = s.waiting,
                    done = s.done, failed = s.failed, %reason,
                    "status: server unreachable; files stay queued"
                ),
                None => tracing::info!(
                    incomplete = s.incomplete,
                    queued = s.queued,
                    waiting_for_referral = s.waiting,
                    done = s.done,
                    failed = s.failed,
                    "status"
                ),
            }
        }
    })
}

/// Prints the `--once` summary: one line per file (JSON lines with
/// `--json`).
pub fn print_summary(lines: &[Line], as_json: bool) {
    for line in lines {
        let text = match (line, as_json) {
            (
                Line::Done {
                    file,
                    case,
                    image,
                    sha256,
                },
                true,
            ) => json!({"file": file, "state": "done", "case": case, "image": image, "sha256": sha256})
                .to_string(),
            (
                Line::Done {
                    file,
                    case,
                    image,
                    sha256,
                },
                false,
            ) => format!("done     {file}  case {case}  image {image}  sha256 {sha256}"),
            (Line::Failed { file, code, message }, true) => {
                json!({"file": file, "state": "failed", "code": code, "message": message})
                    .to_string()
            }
            (Line::Failed { file, code, message }, false) => {
                format!("failed   {file}  {code}: {message}")
            }
            (Line::Waiting { file, reason }, true) => {
                json!({"file": file, "state": "waiting", "reason": reason}).to_string()
            }
            (Line::Waiting { file, reason }, false) => format!("waiting  {file}  {reason}"),
        };
        println!("{text}");
    }
}
