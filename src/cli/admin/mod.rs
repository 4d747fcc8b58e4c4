//! `relay admin`: the operator's tools. Each command prints only its result
//! (an id, a token, JSON lines) on stdout and human text on stderr, so other
//! tools can script against it. Every change is audited as the `operator`.

mod accounts;
mod audit;
mod dicom;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::backends::open_catalog;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Primary care offices.
    #[command(subcommand)]
    Office(accounts::OfficeCommand),
    /// People who sign in: office staff, specialists, administrators.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Bearer tokens: shown once, stored hashed.
    #[command(subcommand)]
    Token(accounts::TokenCommand),
    /// Search the audit trail (JSON lines), or verify its hash chain.
    Audit(audit::AuditArgs),
}

pub async fn run(config: &Config, args: AdminArgs) -> anyhow::Result<ExitCode> {
    let catalog = open_catalog(config).await?;
    let result = match args.command {
        AdminCommand::Office(c) => {
            accounts::office(catalog.as_ref(), config.webhook_policy(), c).await
        }
        AdminCommand::User(c) => accounts::user(catalog.as_ref(), c).await,
        AdminCommand::Token(c) => accounts::token(catalog.as_ref(), c).await,
        AdminCommand::Audit(a) => audit::run(catalog.as_ref(), a).await,
    };
    catalog.close().await;
    result
}
