//! The composition root: `App::build` opens the stores named by the
//! configuration, binds the listener (so the port is known before anything
//! runs, even when it is 0), and `App::run` serves until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_workers::audit::run_sealer;
use relay_workers::blob::BlobStore;
use relay_workers::catalog::SqlCatalog;
use relay_workers::ingest::{Ingest, IngestLimits};
use relay_workers::queue::{Runner, RunnerConfig};
use relay_workers::stages::{Mailer, MailerError, StageDeps, registry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backends::{OpenError, open_blobs, open_catalog};
use crate::config::Config;
use crate::http::metrics::Metrics;
use crate::http::{AppState, router};

/// How often new audit events are sealed onto the hash chain.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot send e-mail notices")]
    Mail(#[from] MailerError),
    #[error(
        "cannot listen on {addr} (is another server using it? choose another address with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A built, bound, not yet running Relay server.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    catalog: Arc<SqlCatalog>,
    state: AppState,
    /// The in-process worker, unless disabled (`--workers 0`).
    runner: Option<Runner>,
    request_timeout: Duration,
}

/// A worker over the stages' registry, for `relay serve` and `relay worker`.
pub fn worker_runner(
    catalog: &Arc<SqlCatalog>,
    blobs: &Arc<dyn BlobStore>,
    config: &Config,
) -> Result<Runner, MailerError> {
    let deps = StageDeps {
        catalog: catalog.clone(),
        blobs: blobs.clone(),
        webhooks: config.webhook_policy(),
        mail: config
            .smtp_url
            .as_deref()
            .map(|url| Mailer::new(url, &config.mail_from, &config.public_url))
            .transpose()?,
    };
    let runner = RunnerConfig {
        concurrency: config.workers,
        lease: config.job_lease,
        ..RunnerConfig::default()
    };
    Ok(Runner::new(catalog.clone(), registry(&deps), runner))
}

impl App {
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let catalog = open_catalog(config).await?;
        let blobs = open_blobs(config).await?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        tracing::info!(
            database = catalog.backend(),
            blobs = %blobs.describe(),
            "stores open"
        );
        let removed = blobs.clean_spool();
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unacknowledged upload files left by an earlier run"
            );
        }
        let limits = IngestLimits {
            max_bytes: config.max_upload_bytes,
            ..IngestLimits::default()
        };
        let ingest = Ingest::new(catalog.clone(), blobs.clone(), limits);
        let runner = (config.workers > 0)
            .then(|| worker_runner(&catalog, &blobs, config))
            .transpose()?;
        let state = AppState {
            catalog: catalog.clone(),
            blobs,
            ingest,
            metrics: Arc::new(Metrics::new()),
            runner_stats: runner.as_ref().map(Runner::stats),
            claim_lease: config.claim_lease,
        };
        Ok(Self {
            listener,
            catalog,
            state,
            runner,
            request_timeout: config.request_timeout,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes requests in flight,
    /// seals the remaining audit events and closes the database.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = CancellationToken::new();
        let sealer = tokio::spawn(run_sealer(
            self.catalog.clone(),
            SEAL_INTERVAL,
            stop.clone(),
        ));
        let worker = self.runner.map(|r| tokio::spawn(r.run(stop.clone())));
        let service = router(self.state, self.request_timeout)
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        stop.cancel();
        if let Some(worker) = worker
            && let Err(error) = worker.await
        {
            tracing::error!(%error, "worker stopped abnormally");
        }
        if let Err(error) = sealer.await {
            tracing::error!(%error, "audit sealer stopped abnormally");
        }
        self.catalog.close().await;
        tracing::info!("stopped");
        served
    }
}
