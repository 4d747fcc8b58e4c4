//! `relay worker`: the background stages without the HTTP server, so a site
//! scales them separately (run as many as the work needs).

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::app::{reminder_sweep, worker_runner};
use crate::backends::{open_blobs, open_catalog};
use crate::config::Config;
use crate::shutdown;

pub async fn run(config: Config) -> anyhow::Result<()> {
    if config.workers == 0 {
        bail!("--workers 0 leaves nothing to run; give at least 1");
    }
    let catalog = open_catalog(&config).await?;
    let blobs = open_blobs(&config, &catalog).await?;
    let runner = worker_runner(&catalog, &blobs, &config)?;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(runner.run(stop.clone()));
    let reminders = reminder_sweep(
        &catalog,
        &config.reminders,
        config.reminder_interval,
        stop.clone(),
    );
    shutdown::signal().await;
    stop.cancel();
    worker.await?;
    reminders.await?;
    catalog.close().await;
    Ok(())
}
