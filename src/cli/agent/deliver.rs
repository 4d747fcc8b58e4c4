//! One complete file into its case, exactly once.
//!
//! The order is what makes a crash at any point harmless: the journal gets
//! the file's identity (path, size, mtime, sha256) and case before
//! anything is sent, the tus upload's URL before its first byte, and the
//! receipt (with where the file will go) before the file is moved. A
//! restart asks the server where a journaled upload stands (`HEAD`): a
//! finished one names its image, an unfinished one goes on from its
//! offset, one the server no longer has is started again. Behind that, the
//! server keeps one image per case for the same bytes, so even an upload
//! begun twice ends as one image.

use serde_json::Value;

use super::journal::{FileIntent, Outcome, Record};
use super::moves::{free_dest, move_file, write_reason};
use super::scan::{DONE, FAILED, Seen};
use super::{Shared, transient};
use crate::cli::upload::tus::UploadError;
use crate::cli::upload::{digest, media_type};

/// What became of one try at a file.
#[derive(Debug)]
pub enum Delivered {
    Done {
        image: String,
        sha256: String,
        resumed: bool,
    },
    Failed {
        code: String,
        message: String,
    },
    /// It changed (or vanished) while being read: watch it again.
    Changed,
    /// Not now (server unreachable, token refused…): it stays queued.
    Later(String),
}

/// Uploads `file` into `case` (or goes on with its journaled upload),
/// then moves it.
pub async fn deliver(shared: &Shared, file: &Seen, group: &str, case: &str) -> Delivered {
    let entry = shared.journal(|j| j.state().files.get(&file.rel).cloned());
    let (intent, url) = match entry {
        Some(entry)
            if entry.intent.size == file.size
                && entry.intent.mtime_ns == file.mtime_ns
                && entry.intent.case == case =>
        {
            (entry.intent, entry.url)
        }
        _ => match commit(shared, file, group, case).await {
            Ok(intent) => (intent, None),
            Err(delivered) => return delivered,
        },
    };
    let result = send(shared, file, &intent, url).await;
    let (image, resumed) = match result {
        Ok(done) => done,
        Err(error) => return refused(shared, file, error),
    };
    let dest = free_dest(&shared.root, DONE, &file.rel);
    if let Err(e) = shared.journal_append(Record::Receipt {
        file: file.rel.clone(),
        image: image.clone(),
        dest,
    }) {
        return Delivered::Later(e.to_string());
    }
    if let Err(e) = finish(shared, &file.rel) {
        tracing::error!(file = %file.rel, error = %e, "uploaded, but cannot move the file; will try again");
    }
    Delivered::Done {
        image,
        sha256: intent.sha256,
        resumed,
    }
}

/// Hashes the file and journals the intent; `Changed` if it moved under us.
async fn commit(
    shared: &Shared,
    file: &Seen,
    group: &str,
    case: &str,
) -> Result<FileIntent, Delivered> {
    let path = file.path.clone();
    let hashed = tokio::task::spawn_blocking(move || digest(&path)).await;
    let Ok(Ok((sha256, _))) = hashed else {
        return Err(Delivered::Changed);
    };
    let now = std::fs::metadata(&file.path);
    if !now.is_ok_and(|m| m.len() == file.size && super::scan::mtime_ns(&m) == file.mtime_ns) {
        return Err(Delivered::Changed);
    }
    let intent = FileIntent {
        file: file.rel.clone(),
        size: file.size,
        mtime_ns: file.mtime_ns,
        sha256,
        group: group.to_owned(),
        case: case.to_owned(),
    };
    shared
        .journal_append(Record::Intent(intent.clone()))
        .map_err(|e| Delivered::Later(e.to_string()))?;
    Ok(intent)
}

/// Sends the bytes; returns the image and whether an earlier upload was
/// taken up again.
async fn send(
    shared: &Shared,
    file: &Seen,
    intent: &FileIntent,
    url: Option<String>,
) -> Result<(String, bool), UploadError> {
    let tus = &shared.tus;
    let mut resume = None;
    if let Some(url) = url
        && let Some(standing) = tus.standing(&url).await?
    {
        if let Some(image) = standing.image {
            let receipt = tus.receipt(&image).await?;
            return checked(&receipt, intent).map(|image| (image, true));
        }
        resume = Some((url, standing.offset));
    }
    let resumed = resume.is_some();
    let (url, offset) = match resume {
        Some(resume) => resume,
        None => {
            let head = std::fs::File::open(&file.path)
                .and_then(|f| {
                    use std::io::Read;
                    let mut head = Vec::with_capacity(132);
                    f.take(132).read_to_end(&mut head).map(|_| head)
                })
                .map_err(UploadError::Read)?;
            let name = file.rel.rsplit('/').next().unwrap_or(&file.rel);
            let url = tus
                .create(
                    &intent.case,
                    name,
                    media_type(&file.path, &head),
                    intent.size,
                    &intent.sha256,
                )
                .await?;
            shared
                .journal_append(Record::Upload {
                    file: file.rel.clone(),
                    url: url.clone(),
                })
                .map_err(|e| UploadError::GaveUp(e.to_string()))?;
            (url, 0)
        }
    };
    if resumed {
        tracing::info!(file = %file.rel, offset, "going on with the upload an earlier run began");
    }
    let receipt = tus
        .send(&url, &file.path, intent.size, offset, &|_| {})
        .await?;
    checked(&receipt, intent).map(|image| (image, resumed))
}

/// The receipt's image id, once its sha256 is proven to be the file's.
fn checked(receipt: &Value, intent: &FileIntent) -> Result<String, UploadError> {
    if receipt["sha256"].as_str() != Some(intent.sha256.as_str()) {
        return Err(UploadError::Refused {
            status: 0,
            code: "receipt_mismatch".to_owned(),
            message: format!(
                "the receipt's sha256 {} is not the file's {}",
                receipt["sha256"], intent.sha256
            ),
        });
    }
    receipt["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| UploadError::GaveUp("the receipt names no image".to_owned()))
}

/// Sorts an error: the file is bad (to `failed/`), it changed, or later.
fn refused(shared: &Shared, file: &Seen, error: UploadError) -> Delivered {
    match error {
        UploadError::Read(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let _ = shared.journal_append(Record::Dropped {
                file: file.rel.clone(),
            });
            Delivered::Changed
        }
        UploadError::Refused { ref code, .. }
            if code == "digest_mismatch" || code == "incomplete_body" =>
        {
            // The bytes sent were not the ones hashed: it is being written.
            let _ = shared.journal_append(Record::Dropped {
                file: file.rel.clone(),
            });
            Delivered::Changed
        }
        ref e if transient(e) => Delivered::Later(error.to_string()),
        UploadError::Read(e) => Delivered::Later(format!("cannot read the file: {e}")),
        UploadError::Refused { code, message, .. } => {
            let dest = free_dest(&shared.root, FAILED, &file.rel);
            if let Err(e) = shared.journal_append(Record::Failed {
                file: file.rel.clone(),
                code: code.clone(),
                message: message.clone(),
                dest,
            }) {
                return Delivered::Later(e.to_string());
            }
            if let Err(e) = finish(shared, &file.rel) {
                tracing::error!(file = %file.rel, error = %e, "cannot move the refused file; will try again");
            }
            Delivered::Failed { code, message }
        }
        UploadError::GaveUp(reason) => Delivered::Later(reason),
    }
}

/// Moves a file whose outcome is journaled (writing the reason file beside
/// a refused one first), and journals the move.
pub fn finish(shared: &Shared, rel: &str) -> std::io::Result<()> {
    let Some(entry) = shared.journal(|j| j.state().files.get(rel).cloned()) else {
        return Ok(());
    };
    let dest = match &entry.outcome {
        Some(Outcome::Done { dest, .. }) => dest,
        Some(Outcome::Failed {
            code,
            message,
            dest,
        }) => {
            let intent = &entry.intent;
            let reason = [
                ("refused", code.as_str()),
                ("reason", message.as_str()),
                ("case", intent.case.as_str()),
                ("sha256", intent.sha256.as_str()),
                ("size", &intent.size.to_string()),
                ("at", &chrono::Utc::now().to_rfc3339()),
            ];
            write_reason(&shared.root, dest, &reason)?;
            dest
        }
        None => return Ok(()),
    };
    move_file(&shared.root, rel, dest)?;
    shared
        .journal_append(Record::Moved {
            file: rel.to_owned(),
        })
        .map_err(std::io::Error::other)
}
