//! `relay upload`: the office's command-line client. It walks files and
//! folders (a DICOMDIR's folder, loose files), uploads each into a case as a
//! resumable (tus) upload with its sha256, several at once, with a progress
//! bar, and checks every receipt's digest against the file's. A dropped
//! connection or a server fault is retried with backoff and resumed where
//! the server says it stands; an interrupted run, started again, goes on
//! with the uploads it began (a journal in `--state-dir`). A bad file is
//! reported and skipped; the summary has one line per file.

mod api;
pub(crate) mod tus;

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use self::tus::{Tus, UploadError};

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Relay's URL, e.g. https://relay.example.org
    #[arg(long, env = "RELAY_SERVER", value_name = "URL")]
    server: String,
    /// A file holding the office user's bearer token
    #[arg(long, env = "RELAY_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// The draft case to add the files to
    #[arg(long, value_name = "CASE_ID", conflicts_with = "new_case")]
    case: Option<String>,
    /// Create the case first from this referral (JSON, as POST /api/v1/cases takes)
    #[arg(long, value_name = "FILE")]
    new_case: Option<PathBuf>,
    /// Files uploaded at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// Where interrupted uploads are remembered, to go on with them next time
    #[arg(long, default_value = ".relay-upload", value_name = "DIR")]
    state_dir: PathBuf,
    /// Print the summary as JSON lines (one per file) on stdout
    #[arg(long)]
    json: bool,
    /// Files, or folders to walk
    #[arg(required = true, value_name = "FILES|DIRS")]
    paths: Vec<PathBuf>,
}

/// One file's outcome.
#[derive(Debug)]
struct Outcome {
    path: PathBuf,
    result: Result<(Value, bool), String>,
}

pub async fn run(args: UploadArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    relay_workers::tls::install_crypto_provider();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?
        .trim()
        .to_owned();
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("cannot make an HTTP client")?;
    let client = Tus::new(http, &args.server, token);
    let case = match (&args.case, &args.new_case) {
        (Some(case), _) => case.clone(),
        (None, Some(referral)) => create_case(&client, referral).await?,
        (None, None) => bail!("say which case: --case CASE_ID, or --new-case case.json"),
    };
    let files = walk(&args.paths)?;
    if files.is_empty() {
        bail!("no files to upload under the paths given");
    }
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot make the state directory {}",
            args.state_dir.display()
        )
    })?;
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = progress(files.len(), total);
    let shared = Arc::new((client, case, args.state_dir.clone(), bar.clone()));
    let outcomes: Vec<Outcome> = futures_util::stream::iter(files)
        .map(|path| {
            let shared = shared.clone();
            async move {
                let (client, case, state_dir, bar) = &*shared;
                let result = upload_one(client, case, state_dir, &path, bar)
                    .await
                    .map_err(|e| e.to_string());
                bar.set_message(format!("{} done", path.display()));
                Outcome { path, result }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    bar.finish_and_clear();
    summary(&outcomes, args.json)
}

async fn create_case(client: &Tus, referral: &Path) -> anyhow::Result<String> {
    let body: Value = serde_json::from_slice(
        &std::fs::read(referral)
            .with_context(|| format!("cannot read the referral {}", referral.display()))?,
    )
    .with_context(|| format!("{} is not JSON", referral.display()))?;
    let answer = match client.create_case(&body).await {
        Ok(answer) => answer,
        Err(UploadError::Refused {
            status, message, ..
        }) => bail!("the case was refused ({status}): {message}"),
        Err(error) => return Err(error).context("cannot reach the server"),
    };
    let id = answer["id"].as_str().context("the server named no case")?;
    eprintln!("created case {id}");
    Ok(id.to_owned())
}

/// Every file under `paths`, in order; hidden files and DICOMDIR indexes
/// (the files they index are uploaded) are left out.
fn walk(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
        if meta.is_file() {
            files.push(path.clone());
            continue;
        }
        let mut stack = vec![path.clone()];
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
            {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name.eq_ignore_ascii_case("DICOMDIR") {
                    continue;
                }
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(entry.path());
                } else if kind.is_file() {
                    found.push(entry.path());
                }
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// A file's type for the server (it checks the bytes itself).
pub(crate) fn media_type(path: &Path, head: &[u8]) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ if head.get(128..132) == Some(b"DICM") => "application/dicom",
        "dcm" | "dicom" | "" => "application/dicom",
        _ => "application/octet-stream",
    }
}

/// The file's sha256 (hex) and first bytes.
pub(crate) fn digest(path: &Path) -> std::io::Result<(String, Vec<u8>)> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if head.len() < 132 {
            head.extend_from_slice(&buf[..n.min(132 - head.len())]);
        }
        hasher.update(&buf[..n]);
    }
    Ok((hex::encode(hasher.finalize()), head))
}

/// Uploads one file (or goes on with its earlier upload); returns the
/// receipt and whether it resumed.
async fn upload_one(
    client: &Tus,
    case: &str,
    state_dir: &Path,
    path: &Path,
    bar: &ProgressBar,
) -> Result<(Value, bool), UploadError> {
    let size = std::fs::metadata(path)?.len();
    let (sha, head) = tokio::task::spawn_blocking({
        let path = path.to_owned();
        move || digest(&path)
    })
    .await
    .map_err(|e| UploadError::Read(std::io::Error::other(e)))??;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The journal names an upload by case and content: the same file in the
    // same case goes on with the upload it began.
    let journal = state_dir.join(format!("{case}-{sha}"));
    let mut resumed = None;
    if let Ok(upload) = std::fs::read_to_string(&journal)
        && let Some(standing) = client.standing(upload.trim()).await?
    {
        // Finished before the last run could note it: the image is there.
        if let Some(image) = standing.image {
            let receipt = client.receipt(&image).await?;
            let _ = std::fs::remove_file(&journal);
            return checked(receipt, &sha, true);
        }
        resumed = Some((upload.trim().to_owned(), standing.offset));
    }
    let (upload, offset, was_resumed) = match resumed {
        Some((upload, offset)) => (upload, offset, true),
        None => {
            let upload = client
                .create(case, &name, media_type(path, &head), size, &sha)
                .await?;
            std::fs::write(&journal, &upload)?;
            (upload, 0, false)
        }
    };
    bar.inc(offset);
    let receipt = client
        .send(&upload, path, size, offset, &|n| bar.inc(n))
        .await;
    let receipt = match receipt {
        Ok(receipt) => receipt,
        Err(error @ UploadError::Refused { .. }) => {
            let _ = std::fs::remove_file(&journal);
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let _ = std::fs::remove_file(&journal);
    checked(receipt, &sha, was_resumed)
}

/// The receipt names the bytes as received: they must be the file's.
fn checked(receipt: Value, sha: &str, resumed: bool) -> Result<(Value, bool), UploadError> {
    if receipt["sha256"].as_str() != Some(sha) {
        return Err(UploadError::GaveUp(format!(
            "the receipt's sha256 {} is not the file's {sha}",
            receipt["sha256"]
        )));
    }
    Ok((receipt, resumed))
}

fn progress(files: usize, bytes: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("{files} files"));
    bar
}

/// One line per file, then the totals; exit 1 when any file failed.
fn summary(outcomes: &[Outcome], as_json: bool) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    for outcome in outcomes {
        let path = outcome.path.display().to_string();
        match &outcome.result {
            Ok((receipt, resumed)) => {
                if as_json {
                    println!(
                        "{}",
                        json!({"file": path, "ok": true, "image": receipt["id"], "sha256": receipt["sha256"],
                               "stored_sha256": receipt["stored_sha256"], "resumed": resumed})
                    );
                } else {
                    println!(
                        "ok      {path}  image {}  sha256 {}{}",
                        receipt["id"].as_str().unwrap_or("?"),
                        receipt["sha256"].as_str().unwrap_or("?"),
                        if *resumed { "  (resumed)" } else { "" }
                    );
                }
            }
            Err(reason) => {
                failed += 1;
                if as_json {
                    println!("{}", json!({"file": path, "ok": false, "error": reason}));
                } else {
                    println!("failed  {path}  {reason}");
                }
            }
        }
    }
    eprintln!(
        "{} of {} files uploaded{}",
        outcomes.len() - failed,
        outcomes.len(),
        if failed > 0 {
            "; the failed ones are listed above with the reason"
        } else {
            ""
        }
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
