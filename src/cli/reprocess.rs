//! `relay reprocess`: operators' batch runs over every stored blob —
//! recorded, checkpointed after every batch, resumable, throttled, and
//! visible (a progress bar on a terminal, log lines otherwise).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use relay_workers::blob::BlobStore;
use relay_workers::catalog::{Catalog, Reprocessing};
use relay_workers::model::{CaseId, Timestamp};
use relay_workers::reprocess::{
    BlobFilter, Progress, Rate, RunKind, RunOptions, RunRecord, RunState, execute, planned_total,
};
use tokio_util::sync::CancellationToken;

use crate::backends::{open_blobs, open_catalog};
use crate::cli::output::json_lines;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ReprocessCommand {
    /// Re-hash every blob (originals and renditions) against its key and size.
    Verify {
        #[command(flatten)]
        run: RunArgs,
        /// A second store holding replicas (its URL): a missing or corrupt
        /// blob is replaced by its verified copy from there.
        #[arg(long, value_name = "STORE_URL")]
        repair_from: Option<String>,
    },
    /// Derive again the images whose renditions are missing or older than this
    /// build's derive version (`--all`: every image); the jobs run on the queue.
    Rederive {
        #[command(flatten)]
        run: RunArgs,
        /// Every image, not only stale ones.
        #[arg(long)]
        all: bool,
    },
    /// Move every blob to another store (file://DIR or s3://bucket/prefix?…),
    /// verifying each there before the catalog records it there, while
    /// servers keep serving. Afterwards, point `blobs` at the new store.
    Migrate {
        #[command(flatten)]
        run: RunArgs,
        /// The store to move blobs to.
        #[arg(long, value_name = "STORE_URL")]
        to: String,
        /// Remove each blob from its old store once it is verified and
        /// recorded in the new one (never before).
        #[arg(long)]
        delete_source: bool,
    },
    /// Remove blobs the store holds that nothing refers to (and stale upload
    /// spool files), once older than the grace period.
    Sweep {
        #[command(flatten)]
        run: RunArgs,
        /// How old an unreferenced blob must be, e.g. 24h, 7d. Shorter than
        /// the longest upload risks nothing (an upload that finds its bytes
        /// swept stores them again) but wastes its work.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,
    },
    /// Continue a run that was stopped (Ctrl-C, a crash, a kill) where it stopped.
    Resume {
        run_id: String,
        /// Write the final run record as JSON here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// List recent runs as JSON lines, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one run: options, counts, cursor, failures.
    Show { run_id: String },
}

/// Options every run kind takes.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Blobs worked on at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// At most this much per second, e.g. 50MB/s or 200/s (blobs).
    #[arg(long, value_name = "RATE", value_parser = Rate::parse)]
    rate: Option<Rate>,
    /// Only blobs stored at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only blobs stored before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only one case's images and their renditions.
    #[arg(long, value_name = "CASE_ID")]
    case: Option<String>,
    /// Only images of this media type (and their renditions), e.g. application/dicom.
    #[arg(long, value_name = "TYPE")]
    media_type: Option<String>,
    /// Blobs fetched per batch (the run's progress is saved after each).
    #[arg(long, default_value_t = 256, value_name = "N")]
    batch: u32,
    /// Say what would be done; change and read nothing.
    #[arg(long)]
    dry_run: bool,
    /// Write the final run record as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

impl RunArgs {
    fn options(&self) -> anyhow::Result<RunOptions> {
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let case = self
            .case
            .as_deref()
            .map(|c| c.parse::<CaseId>())
            .transpose()
            .context("invalid --case")?;
        let filter = BlobFilter {
            since: self.since.map(Timestamp::from),
            until: self.until.map(Timestamp::from),
            case,
            media_type: self.media_type.clone(),
        };
        Ok(RunOptions {
            concurrency: self.concurrency,
            batch: self.batch.max(1),
            rate: self.rate,
            filter: (filter != BlobFilter::default()).then_some(filter),
            dry_run: self.dry_run,
            ..RunOptions::default()
        })
    }
}

pub async fn run(config: &Config, command: ReprocessCommand) -> anyhow::Result<ExitCode> {
    let catalog = open_catalog(config).await?;
    match command {
        ReprocessCommand::List { limit } => {
            json_lines(catalog.list_runs(limit).await?)?;
            Ok(ExitCode::SUCCESS)
        }
        ReprocessCommand::Show { run_id } => {
            let record = catalog.get_run(&run_id).await.with_context(|| {
                format!("no run {run_id}; list them with 'relay reprocess list'")
            })?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(ExitCode::SUCCESS)
        }
        ReprocessCommand::Verify { run, repair_from } => {
            let options = RunOptions {
                repair_from,
                ..run.options()?
            };
            start(config, catalog, RunKind::Verify, options, &run).await
        }
        ReprocessCommand::Rederive { run, all } => {
            let options = RunOptions {
                all,
                ..run.options()?
            };
            start(config, catalog, RunKind::Rederive, options, &run).await
        }
        ReprocessCommand::Migrate {
            run,
            to,
            delete_source,
        } => {
            let options = RunOptions {
                to: Some(to),
                delete_source,
                ..run.options()?
            };
            start(config, catalog, RunKind::Migrate, options, &run).await
        }
        ReprocessCommand::Sweep { run, grace } => {
            let options = RunOptions {
                grace_secs: Some(grace.as_secs()),
                ..run.options()?
            };
            start(config, catalog, RunKind::Sweep, options, &run).await
        }
        ReprocessCommand::Resume { run_id, report } => {
            let record = catalog.get_run(&run_id).await.with_context(|| {
                format!("no run {run_id}; list them with 'relay reprocess list'")
            })?;
            if record.state == RunState::Finished {
                eprintln!("run {run_id} has already finished");
                return summary(&record, report.as_deref());
            }
            let blobs = open_blobs(config, &catalog).await?;
            eprintln!(
                "resuming run {run_id} after {} blobs",
                record.counts.scanned
            );
            drive(catalog, blobs, record, report.as_deref()).await
        }
    }
}

/// Records a new run and drives it.
async fn start(
    config: &Config,
    catalog: Arc<relay_workers::catalog::SqlCatalog>,
    kind: RunKind,
    options: RunOptions,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let blobs = open_blobs(config, &catalog).await?;
    let record = catalog.start_run(kind, &options).await?;
    eprintln!(
        "run {} started; if it stops, continue with: relay reprocess resume {}",
        record.id, record.id
    );
    drive(catalog, blobs, record, args.report.as_deref()).await
}

/// Walks the run to its end (or to Ctrl-C), showing progress, then
/// summarises.
async fn drive(
    catalog: Arc<relay_workers::catalog::SqlCatalog>,
    blobs: Arc<dyn BlobStore>,
    record: RunRecord,
    report: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let dyn_catalog: Arc<dyn Catalog> = catalog.clone();
    let total = planned_total(dyn_catalog.as_ref(), blobs.as_ref(), &record).await?;
    let display = Display::new(total, record.counts.scanned);
    let stop = CancellationToken::new();
    let ctrl_c = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("stopping after the current batch…");
                stop.cancel();
            }
        })
    };
    let finished = execute(
        dyn_catalog,
        blobs,
        record,
        |progress| display.show(progress),
        stop.clone(),
    )
    .await?;
    ctrl_c.abort();
    display.finish();
    if finished.state == RunState::Running {
        eprintln!(
            "run {} stopped after {} blobs; continue with: relay reprocess resume {}",
            finished.id, finished.counts.scanned, finished.id
        );
    }
    summary(&finished, report)
}

/// Prints the summary (and writes the report); success only when the run
/// finished and nothing failed.
fn summary(record: &RunRecord, report: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    let c = record.counts;
    let dry = record.options.dry_run;
    let (verb, what, fixed) = match record.kind {
        RunKind::Verify => ("checked", "blobs", "repaired"),
        RunKind::Rederive => ("looked at", "images", "derive queued"),
        RunKind::Migrate => ("looked at", "blobs", "moved"),
        RunKind::Sweep => ("listed", "blobs", "removed"),
    };
    let (verb, fixed) = match dry {
        true => ("would look at", format!("would be {fixed}")),
        false => (verb, fixed.to_owned()),
    };
    eprintln!(
        "{} {}: {verb} {} {what} ({}), ok {}, {fixed} {}, failed {}",
        record.kind.as_str(),
        record.id,
        c.scanned,
        human_bytes(c.bytes),
        c.ok,
        c.fixed,
        c.failed
    );
    for failure in record.failures.iter().take(20) {
        eprintln!("  {}  {}", failure.key, failure.reason);
    }
    if record.failures.len() > 20 || c.failed > record.failures.len() as u64 {
        eprintln!(
            "  … the full list is in the run record: relay reprocess show {}",
            record.id
        );
    }
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_vec_pretty(record)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    println!("{}", record.id);
    Ok(if c.failed == 0 && record.state == RunState::Finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A progress bar on a terminal; a log line every few seconds otherwise.
enum Display {
    Bar(ProgressBar),
    Lines {
        total: u64,
        started: Instant,
        last: std::sync::Mutex<Instant>,
    },
}

impl Display {
    fn new(total: u64, done: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} blobs  {msg}  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(done);
            Display::Bar(bar)
        } else {
            Display::Lines {
                total,
                started: Instant::now(),
                last: std::sync::Mutex::new(Instant::now()),
            }
        }
    }

    fn show(&self, progress: Progress) {
        let c = progress.counts;
        match self {
            Display::Bar(bar) => {
                bar.set_position(c.scanned);
                bar.set_message(format!("{}  failed {}", human_bytes(c.bytes), c.failed));
            }
            Display::Lines {
                total,
                started,
                last,
            } => {
                let Ok(mut last) = last.lock() else { return };
                if last.elapsed() < Duration::from_secs(5) && c.scanned < *total {
                    return;
                }
                *last = Instant::now();
                let seconds = started.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "progress: {}/{} blobs, {}, {:.1} MB/s, failed {}",
                    c.scanned,
                    total,
                    human_bytes(c.bytes),
                    c.bytes as f64 / 1e6 / seconds,
                    c.failed
                );
            }
        }
    }

    fn finish(&self) {
        if let Display::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
