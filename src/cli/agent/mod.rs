//! `relay agent`: the edge agent for a clinic PC or a modality's export
//! folder. It watches a folder, takes each file once it is complete
//! (`scan.rs`), puts it into a case by a rule (`rules.rs`) whose referral
//! is a `case.json` sidecar (`cases.rs`), uploads it resumably and
//! verified (`deliver.rs`, over `relay upload`'s tus client), and moves it
//! to `done/` or `failed/` (`moves.rs`). A journal (`journal.rs`) makes a
//! reboot at any moment harmless: nothing is uploaded twice or lost. While
//! the server is unreachable files stay queued and the agent retries with
//! growing pauses; it never fails a file for a network fault. Cases stay
//! drafts unless their referral asks to be submitted (`submit.rs`).

mod cases;
mod deliver;
mod durable;
mod journal;
mod link;
mod moves;
mod rules;
mod scan;
mod status;
mod submit;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;

use self::cases::{CaseFor, Cases};
use self::deliver::{Delivered, deliver, finish};
use self::journal::{Journal, JournalError, Record};
use self::link::Link;
use self::rules::{CasePer, GroupOf};
use self::scan::{Seen, Stability, scan};
use self::status::{Line, Status};
use crate::cli::upload::tus::{Tus, UploadError};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Relay's URL, e.g. https://relay.example.org
    #[arg(long, env = "RELAY_SERVER", value_name = "URL")]
    server: String,
    /// A file holding the office user's bearer token
    #[arg(long, env = "RELAY_TOKEN_FILE", value_name = "FILE")]
    token_file: PathBuf,
    /// The folder to watch; files go from it to its done/ and failed/
    #[arg(long, value_name = "DIR")]
    watch: PathBuf,
    /// One case per folder under DIR, or per DICOM study
    #[arg(long, value_enum, default_value_t = CasePer::Subfolder)]
    case_per: CasePer,
    /// The referral for a case whose folder has no case.json [default: none: its files wait]
    #[arg(long, value_name = "FILE")]
    referral_template: Option<PathBuf>,
    /// Where the journal is kept (not inside DIR unless hidden)
    #[arg(long, default_value = ".relay-agent", value_name = "DIR")]
    state_dir: PathBuf,
    /// How often the folder is looked at
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// How long a file's size and mtime must stay put to count as complete [default: --poll]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stable_for: Option<Duration>,
    /// How long a case's folder must be quiet before a case.json with "submit": true is submitted
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// How often the status line is logged
    #[arg(long, default_value = "1m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    status_every: Duration,
    /// Longest pause between tries while the server is unreachable
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    max_backoff: Duration,
    /// Files uploaded at once
    #[arg(long, default_value_t = 2, value_name = "N")]
    concurrency: usize,
    /// Process what is there, then exit (1 if a file failed or waits for a referral)
    #[arg(long)]
    once: bool,
    /// With --once: print the summary as JSON lines
    #[arg(long)]
    json: bool,
}

/// What every part of the agent shares: the folder, the server, the
/// journal.
#[derive(Debug)]
pub struct Shared {
    root: PathBuf,
    tus: Tus,
    template: Option<PathBuf>,
    journal: Mutex<Journal>,
}

impl Shared {
    fn journal<T>(&self, read: impl FnOnce(&Journal) -> T) -> T {
        read(&self.journal.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Appends a record durably (fsync) before the caller acts on it.
    fn journal_append(&self, record: Record) -> Result<(), JournalError> {
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(record)
    }
}

/// Whether an error is worth trying again later rather than a verdict on
/// the file: network faults, server faults, and refusals of the token or
/// the case that a person must fix without the file being at fault.
fn transient(error: &UploadError) -> bool {
    match error {
        UploadError::GaveUp(_) => true,
        UploadError::Read(_) => false,
        UploadError::Refused { status, .. } => !matches!(status, 0 | 400 | 409 | 413 | 415 | 422),
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let root = args
        .watch
        .canonicalize()
        .with_context(|| format!("cannot watch {}", args.watch.display()))?;
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot make the state directory {}",
            args.state_dir.display()
        )
    })?;
    let state_dir = args.state_dir.canonicalize()?;
    if let Ok(inside) = state_dir.strip_prefix(&root)
        && !inside.to_string_lossy().starts_with('.')
    {
        bail!(
            "--state-dir must not be inside the watched folder (unless hidden, e.g. DIR/.relay-agent)"
        );
    }
    relay_workers::tls::install_crypto_provider();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("cannot read the token file {}", args.token_file.display()))?
        .trim()
        .to_owned();
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()
        .context("cannot make an HTTP client")?;
    let mut tus = Tus::new(http, &args.server, token);
    // A few quick tries per request; the agent's own backoff does the rest.
    tus.tries = 3;
    let journal = Journal::open(&state_dir)?;
    let shared = Arc::new(Shared {
        root,
        tus,
        template: args.referral_template.clone(),
        journal: Mutex::new(journal),
    });
    tracing::info!(watch = %shared.root.display(), case_per = ?args.case_per, "agent started");
    let status = Arc::new(Mutex::new(Status::default()));
    let ticker = status::ticker(status.clone(), args.status_every);
    let mut agent = Agent::new(shared, args, status);
    let code = tokio::select! {
        code = agent.run() => code,
        () = shutdown() => {
            tracing::info!("agent stopping; unfinished uploads resume next time");
            Ok(ExitCode::SUCCESS)
        }
    };
    ticker.abort();
    code
}

async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The loop's state.
#[derive(Debug)]
struct Agent {
    shared: Arc<Shared>,
    args: AgentArgs,
    status: Arc<Mutex<Status>>,
    stability: Stability,
    cases: Cases,
    groups: HashMap<(String, u64, i64), GroupOf>,
    /// When each top folder last saw a file appear or change.
    activity: HashMap<String, Instant>,
    /// Files waiting for a referral, and why; announced once per reason.
    waiting: HashMap<String, String>,
    announced: HashSet<(String, String)>,
    link: Link,
    started: Instant,
    lines: Vec<Line>,
}

impl Agent {
    fn new(shared: Arc<Shared>, args: AgentArgs, status: Arc<Mutex<Status>>) -> Self {
        let stable_for = args.stable_for.unwrap_or(args.poll);
        let link = Link::new(args.max_backoff);
        Self {
            shared,
            args,
            status,
            stability: Stability::new(stable_for),
            cases: Cases::default(),
            groups: HashMap::new(),
            activity: HashMap::new(),
            waiting: HashMap::new(),
            announced: HashSet::new(),
            link,
            started: Instant::now(),
            lines: Vec::new(),
        }
    }

    async fn run(&mut self) -> anyhow::Result<ExitCode> {
        loop {
            self.finish_moves();
            let listing = match scan(&self.shared.root) {
                Ok(listing) => listing,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the watched folder; will look again");
                    tokio::time::sleep(self.args.poll).await;
                    continue;
                }
            };
            if self.args.once && self.finished(&listing) {
                return Ok(self.summary());
            }
            self.cycle(&listing).await;
            if let Err(e) = self
                .shared
                .journal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .compact_if_large()
            {
                tracing::warn!(error = %e, "cannot compact the journal");
            }
            tokio::time::sleep(self.args.poll).await;
        }
    }

    /// Moves the files whose outcome an earlier run (or try) journaled.
    fn finish_moves(&self) {
        let unmoved: Vec<String> = self.shared.journal(|j| {
            j.state()
                .files
                .iter()
                .filter(|(_, e)| e.outcome.is_some())
                .map(|(rel, _)| rel.clone())
                .collect()
        });
        for rel in unmoved {
            if let Err(e) = finish(&self.shared, &rel) {
                tracing::error!(file = %rel, error = %e, "cannot move the file; will try again");
            }
        }
    }

    /// `--once`: nothing left but files waiting for a referral, and no
    /// case waiting to be submitted.
    fn finished(&self, listing: &[Seen]) -> bool {
        let all_waiting = listing.iter().all(|f| self.waiting.contains_key(&f.rel));
        let (open_files, to_submit) = self.shared.journal(|j| {
            (
                j.state().files.len(),
                j.state()
                    .groups
                    .values()
                    .any(|g| g.submit && g.case.is_some() && g.done > 0 && g.failed == 0),
            )
        });
        all_waiting && open_files == 0 && !to_submit
    }

    async fn cycle(&mut self, listing: &[Seen]) {
        let now = Instant::now();
        let complete = self.stability.observe(listing, now);
        let mut ready = Vec::new();
        for (file, complete) in listing.iter().zip(&complete) {
            if *complete {
                ready.push(file.clone());
            } else {
                self.activity.insert(top(&file.rel), now);
            }
        }
        self.waiting
            .retain(|rel, _| listing.iter().any(|f| &f.rel == rel));
        let incomplete = listing.len() - ready.len();
        let mut queued = ready.len();
        if !ready.is_empty() && self.link.usable(&self.shared.tus).await {
            let work = self.assign(ready).await;
            queued = work.len();
            {
                let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                status.incomplete = incomplete;
                status.queued = queued;
                status.waiting = self.waiting.len();
            }
            queued -= self.send(work).await;
        }
        if self.link.is_up() {
            let submitted = submit::submit_due(
                &self.shared,
                listing,
                &self.activity,
                self.started,
                self.args.settle,
            )
            .await;
            if !submitted.is_empty() {
                tracing::debug!(cases = submitted.len(), "cases submitted");
            }
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        status.incomplete = incomplete;
        status.queued = queued.saturating_sub(self.waiting.len());
        status.waiting = self.waiting.len();
        status.offline = self.link.down_because();
    }

    /// Each ready file with its group's case; files whose case cannot be
    /// had are noted as waiting (or everything stops, offline).
    async fn assign(&mut self, ready: Vec<Seen>) -> Vec<(Seen, String, String)> {
        let mut cases: HashMap<String, CaseFor> = HashMap::new();
        let mut work = Vec::new();
        for file in ready {
            let group = self.group_of(&file).await;
            let case = match cases.get(&group.key) {
                Some(case) => case.clone(),
                None => {
                    let case = self.cases.case_for(&self.shared, &group).await;
                    cases.insert(group.key.clone(), case.clone());
                    case
                }
            };
            match case {
                CaseFor::Ready(case) => {
                    self.waiting.remove(&file.rel);
                    work.push((file, group.key, case));
                }
                CaseFor::Waiting(reason) => {
                    if self.announced.insert((group.key.clone(), reason.clone())) {
                        tracing::warn!(group = %group.key, %reason, "files wait for their referral");
                    }
                    self.waiting.insert(file.rel.clone(), reason);
                }
                CaseFor::Offline(reason) => {
                    self.link.lost(reason);
                    break;
                }
            }
        }
        work
    }

    async fn group_of(&mut self, file: &Seen) -> GroupOf {
        let key = (file.rel.clone(), file.size, file.mtime_ns);
        if let Some(group) = self.groups.get(&key) {
            return group.clone();
        }
        let rule = self.args.case_per;
        let (rel, path) = (file.rel.clone(), file.path.clone());
        let group = tokio::task::spawn_blocking(move || rule.group_of(&rel, &path))
            .await
            .unwrap_or_else(|_| CasePer::Subfolder.group_of(&file.rel, &file.path));
        self.groups.retain(|(rel, _, _), _| rel != &file.rel);
        self.groups.insert(key, group.clone());
        group
    }

    /// Uploads the files, `--concurrency` at a time; returns how many
    /// reached done/ or failed/.
    async fn send(&mut self, work: Vec<(Seen, String, String)>) -> usize {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let mut results = futures_util::stream::iter(work)
            .map(|(file, group, case)| {
                let (shared, stop) = (shared.clone(), stop.clone());
                async move {
                    if stop.load(Ordering::SeqCst) {
                        return (
                            file,
                            case,
                            Delivered::Later("server unreachable".to_owned()),
                        );
                    }
                    let delivered = deliver(&shared, &file, &group, &case).await;
                    if matches!(delivered, Delivered::Later(_)) {
                        stop.store(true, Ordering::SeqCst);
                    }
                    (file, case, delivered)
                }
            })
            .buffer_unordered(self.args.concurrency);
        let mut ended = 0;
        // Each file is reported as it ends, not when the batch does.
        while let Some((file, case, delivered)) = results.next().await {
            match delivered {
                Delivered::Done {
                    image,
                    sha256,
                    resumed,
                } => {
                    tracing::info!(file = %file.rel, case.id = %case, image.id = %image, image.sha256 = %sha256, resumed, "file uploaded; moved to done/");
                    self.activity.insert(top(&file.rel), Instant::now());
                    self.lines.push(Line::Done {
                        file: file.rel,
                        case,
                        image,
                        sha256,
                    });
                    ended += 1;
                }
                Delivered::Failed { code, message } => {
                    tracing::warn!(file = %file.rel, case.id = %case, code = %code, reason = %message, "file refused; moved to failed/");
                    self.lines.push(Line::Failed {
                        file: file.rel,
                        code,
                        message,
                    });
                    ended += 1;
                }
                Delivered::Changed => {
                    tracing::info!(file = %file.rel, "file changed while being read; watching it again");
                    self.stability.forget(&file.rel);
                    ended += 1;
                }
                Delivered::Later(reason) => self.link.lost(reason),
            }
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.done = self
                .lines
                .iter()
                .filter(|l| matches!(l, Line::Done { .. }))
                .count();
            status.failed = self
                .lines
                .iter()
                .filter(|l| matches!(l, Line::Failed { .. }))
                .count();
            status.queued = status.queued.saturating_sub(1);
        }
        ended
    }

    fn summary(&mut self) -> ExitCode {
        let mut lines = std::mem::take(&mut self.lines);
        let mut waiting: Vec<_> = self.waiting.iter().collect();
        waiting.sort();
        for (file, reason) in waiting {
            lines.push(Line::Waiting {
                file: file.clone(),
                reason: reason.clone(),
            });
        }
        status::print_summary(&lines, self.args.json);
        let failed = lines.iter().any(|l| !matches!(l, Line::Done { .. }));
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The top folder of a relative path (`""` for a file in the root).
fn top(rel: &str) -> String {
    rel.split_once('/')
        .map(|(top, _)| top.to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_is_a_verdict_and_a_fault_is_not() {
        let refused = |status| UploadError::Refused {
            status,
            code: "x".to_owned(),
            message: "x".to_owned(),
        };
        for status in [400, 409, 413, 415, 422] {
            assert!(!transient(&refused(status)), "{status}");
        }
        for status in [401, 403, 404, 429, 500, 503, 507] {
            assert!(transient(&refused(status)), "{status}");
        }
        assert!(transient(&UploadError::GaveUp("down".to_owned())));
        assert_eq!(top("a/b/c.dcm"), "a");
        assert_eq!(top("c.dcm"), "");
    }
}
