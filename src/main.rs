//! The `relay` binary: parses the command line, sets up logging, and runs
//! the command. Errors end here, printed with their causes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use relay::cli::Cli;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Test builds only (the `failpoints` feature of relay-workers); a
    // no-op otherwise.
    let _failpoints = relay_workers::failpoints::from_env();
    let cli = Cli::parse();
    relay_workers::tls::install_crypto_provider();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn", cli.default_log_level())));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
