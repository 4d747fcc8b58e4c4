//! `relay jobs`: the operator's view of the job queue.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use relay_workers::catalog::{Catalog, CatalogError};
use relay_workers::queue::{JobFilter, JobState};

use crate::backends::open_catalog;
use crate::cli::output::json_lines;
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs as JSON lines, newest first.
    List {
        /// queued, running, done, dead or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// A job kind, e.g. derive.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one job: attempts, last error, lease.
    Show { id: i64 },
    /// Run a dead or cancelled job again (or every dead job).
    Retry {
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        #[arg(long)]
        all_dead: bool,
    },
    /// Keep a queued or dead job from running.
    Cancel { id: i64 },
}

pub async fn run(config: &Config, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let catalog = open_catalog(config).await?;
    let result = dispatch(catalog.as_ref(), command).await;
    catalog.close().await;
    result
}

async fn dispatch(catalog: &dyn Catalog, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let explain = |e: CatalogError| match e {
        CatalogError::NotFound { .. } => {
            anyhow::anyhow!("no such job; list them with 'relay jobs list'")
        }
        other => other.into(),
    };
    match command {
        JobsCommand::List { state, kind, limit } => {
            let state = state.as_deref().map(JobState::parse).transpose()?;
            json_lines(catalog.list_jobs(&JobFilter { state, kind, limit }).await?)?;
        }
        JobsCommand::Show { id } => {
            let job = catalog.get_job(id).await.map_err(explain)?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Retry { id: Some(id), .. } => {
            let job = catalog.retry_job(id).await.map_err(explain)?;
            eprintln!("job {} queued again", job.id);
            println!("{}", job.id);
        }
        JobsCommand::Retry { id: None, all_dead } => {
            if !all_dead {
                bail!("name a job id, or pass --all-dead");
            }
            let n = catalog.retry_dead().await?;
            eprintln!("{n} dead jobs queued again");
            println!("{n}");
        }
        JobsCommand::Cancel { id } => {
            let job = catalog.cancel_job(id).await.map_err(explain)?;
            eprintln!("job {} cancelled", job.id);
            println!("{}", job.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
