//! The `relay` command line: one binary for every role. `serve` runs the
//! server; `admin` manages accounts and the audit trail; `config show`
//! prints what the layered configuration resolves to.

mod admin;
mod agent;
mod jobs;
mod output;
mod reprocess;
mod serve;
mod upload;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Relay: store-and-forward imaging for asynchronous teleconsultation.
///
/// Settings come from defaults, then the --config file, then RELAY_*
/// environment variables, then flags (each overriding the one before).
#[derive(Debug, Parser)]
#[command(name = "relay", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where Relay keeps its data. Every command takes these, so `relay admin`
/// and `relay serve` point at the same stores.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// TOML configuration file (keys: listen, data_dir, database, database_file, blobs, request_timeout, max_connections).
    #[arg(long, global = true, env = "RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded defaults: relay.db and blobs/ [default: ./relay-data]
    #[arg(long, global = true, env = "RELAY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Catalog database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite://<data-dir>/relay.db]
    #[arg(
        long,
        global = true,
        env = "RELAY_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// File holding the database URL, to keep a password out of the environment.
    #[arg(long, global = true, env = "RELAY_DATABASE_FILE", value_name = "FILE")]
    pub database_file: Option<PathBuf>,
    /// Blob store: a directory, file://DIR or s3://BUCKET/PREFIX?endpoint=URL&region=R [default: <data-dir>/blobs]
    #[arg(long, global = true, env = "RELAY_BLOBS", value_name = "URL")]
    pub blobs: Option<String>,
    /// SMTP relay for e-mail notices, e.g. smtp://127.0.0.1:25 [default: none]
    #[arg(
        long,
        global = true,
        env = "RELAY_SMTP_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<String>,
    /// Extra CA certificate (PEM) trusted for the SMTP relay's TLS, for a site's private CA
    #[arg(long, global = true, env = "RELAY_SMTP_CA_FILE", value_name = "FILE")]
    pub smtp_ca_file: Option<PathBuf>,
    /// Sender of e-mail notices [default: relay@localhost]
    #[arg(long, global = true, env = "RELAY_MAIL_FROM", value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// How offices reach Relay, for links in notices [default: http://<listen>]
    #[arg(long, global = true, env = "RELAY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Dermatology service levels: routine,urgent,stat [default: 72h,24h,4h]
    #[arg(
        long,
        global = true,
        env = "RELAY_SLA_DERMATOLOGY",
        value_name = "LEVELS"
    )]
    pub sla_dermatology: Option<String>,
    /// Radiology service levels: routine,urgent,stat [default: 24h,4h,1h]
    #[arg(
        long,
        global = true,
        env = "RELAY_SLA_RADIOLOGY",
        value_name = "LEVELS"
    )]
    pub sla_radiology: Option<String>,
    /// Let webhooks go to plain-http loopback addresses (tests, single-machine setups)
    #[arg(long, global = true, env = "RELAY_WEBHOOK_ALLOW_LOOPBACK")]
    pub webhook_allow_loopback: bool,
    /// Largest number of database connections this process opens [default: 8]
    #[arg(long, global = true, env = "RELAY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (and its background work).
    Serve(ServeArgs),
    /// Run background jobs (derive…) without the HTTP server.
    Worker(ServeArgs),
    /// See and steer the job queue.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Manage offices, users, tokens and the audit trail.
    Admin(admin::AdminArgs),
    /// Batch runs over every stored blob: verify, rederive, migrate, sweep.
    #[command(subcommand)]
    Reprocess(reprocess::ReprocessCommand),
    /// Upload files and folders into a case (resumable, verified): the office's client.
    Upload(upload::UploadArgs),
    /// Watch a folder and upload what lands in it, into cases: the edge agent.
    Agent(agent::AgentArgs),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// Settings only the server uses.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "RELAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Also accept DICOM C-STORE and C-ECHO on this TCP port (same address
    /// as --listen; 0 picks a free port) [default: off]
    #[arg(long, env = "RELAY_DICOM_PORT", value_name = "PORT")]
    pub dicom_port: Option<u16>,
    /// The AE title DICOM peers must call [default: RELAY]
    #[arg(long, env = "RELAY_DICOM_AE_TITLE", value_name = "TITLE")]
    pub dicom_ae_title: Option<String>,
    /// Jobs run at once by this process; 0 runs no worker in `serve` [default: 2]
    #[arg(long, env = "RELAY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// How long a job stays with its worker between heartbeats, e.g. 60s [default: 60s]
    #[arg(long, env = "RELAY_JOB_LEASE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub job_lease: Option<Duration>,
    /// How long a specialist's claim on a case lasts unless renewed, e.g. 30m [default: 30m]
    #[arg(long, env = "RELAY_CLAIM_LEASE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub claim_lease: Option<Duration>,
    /// Largest image upload in bytes [default: 2147483648]
    #[arg(long, env = "RELAY_MAX_UPLOAD_BYTES", value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Longest time a JSON API request may take, e.g. 30s [default: 30s]
    #[arg(long, env = "RELAY_REQUEST_TIMEOUT", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Notify an office again when a report waits unacknowledged this long [default: 24h]
    #[arg(long, env = "RELAY_RENOTIFY_AFTER", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub renotify_after: Option<Duration>,
    /// Reminders per unacknowledged report; 0 sends none [default: 3]
    #[arg(long, env = "RELAY_RENOTIFY_LIMIT", value_name = "N")]
    pub renotify_limit: Option<u32>,
    /// Escalate a case to administrators this long past its due time [default: 0s]
    #[arg(long, env = "RELAY_ESCALATE_AFTER", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub escalate_after: Option<Duration>,
    /// Administrators' e-mail addresses for overdue escalations, comma-separated [default: none: logged only]
    #[arg(
        long,
        env = "RELAY_ESCALATE_TO",
        value_name = "ADDRESSES",
        value_delimiter = ','
    )]
    pub escalate_to: Option<Vec<String>>,
    /// How often reminders and escalations are looked for [default: 1m]
    #[arg(long, env = "RELAY_REMINDER_INTERVAL", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub reminder_interval: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration as TOML (secrets redacted).
    Show(ServeArgs),
}

impl Cli {
    /// The log level when RUST_LOG says nothing: the server narrates, the
    /// tools stay quiet so their stderr is only what they mean to say.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::Serve(_) | Command::Worker(_) | Command::Agent(_) => "info",
            _ => "warn",
        }
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Serve(serve) => {
                let config = Config::load(&overrides(&self.store, &serve))?;
                serve::run(config).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Worker(args) => {
                let config = Config::load(&overrides(&self.store, &args))?;
                worker::run(config).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Jobs(command) => {
                let config = Config::load(&overrides(&self.store, &ServeArgs::default()))?;
                jobs::run(&config, command).await
            }
            Command::Upload(args) => upload::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Reprocess(command) => {
                let config = Config::load(&overrides(&self.store, &ServeArgs::default()))?;
                reprocess::run(&config, command).await
            }
            Command::Admin(admin) => {
                let config = Config::load(&overrides(&self.store, &ServeArgs::default()))?;
                admin::run(&config, admin).await
            }
            Command::Config(ConfigCommand::Show(serve)) => {
                let config = Config::load(&overrides(&self.store, &serve))?;
                print!("{}", config.to_toml());
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

fn overrides(store: &StoreArgs, serve: &ServeArgs) -> Overrides {
    Overrides {
        config: store.config.clone(),
        listen: serve.listen,
        data_dir: store.data_dir.clone(),
        database: store.database.clone(),
        database_file: store.database_file.clone(),
        blobs: store.blobs.clone(),
        request_timeout: serve.request_timeout,
        max_connections: store.max_connections,
        max_upload_bytes: serve.max_upload_bytes,
        dicom_port: serve.dicom_port,
        dicom_ae_title: serve.dicom_ae_title.clone(),
        workers: serve.workers,
        job_lease: serve.job_lease,
        claim_lease: serve.claim_lease,
        webhook_allow_loopback: store.webhook_allow_loopback.then_some(true),
        smtp_url: store.smtp_url.clone(),
        smtp_ca_file: store.smtp_ca_file.clone(),
        mail_from: store.mail_from.clone(),
        public_url: store.public_url.clone(),
        sla_dermatology: store.sla_dermatology.clone(),
        sla_radiology: store.sla_radiology.clone(),
        renotify_after: serve.renotify_after,
        renotify_limit: serve.renotify_limit,
        escalate_after: serve.escalate_after,
        escalate_to: serve.escalate_to.clone(),
        reminder_interval: serve.reminder_interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
