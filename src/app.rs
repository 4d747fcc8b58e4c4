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
use relay_workers::model::ReminderPolicy;
use relay_workers::queue::{Runner, RunnerConfig};
use relay_workers::resumable::Resumable;
use relay_workers::stages::{Mailer, MailerError, StageDeps, registry, run_reminders};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::backends::{OpenError, open_blobs, open_catalog};
use crate::config::Config;
use crate::dimse::{DicomDoor, DicomListener};
use crate::http::metrics::Metrics;
use crate::http::serve::{serve, with_transport_limits};
use crate::http::throttle::AuthThrottle;
use crate::http::{AppState, router};

/// How often new audit events are sealed onto the hash chain.
const SEAL_INTERVAL: Duration = Duration::from_secs(1);
/// A resumable upload untouched this long is discarded.
const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often expired resumable uploads are looked for.
const UPLOAD_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot send e-mail notices")]
    Mail(#[from] MailerError),
    #[error(
        "cannot listen for DICOM on {addr} (is another server using it? choose another port with --dicom-port)"
    )]
    BindDicom {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} (is another server using it? choose another address with --listen)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot keep resumable uploads in {path}")]
    Uploads {
        path: std::path::PathBuf,
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
    /// Runs beside the worker.
    reminders: ReminderPolicy,
    reminder_interval: Duration,
    request_timeout: Duration,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    /// The DICOM door, when a DICOM port is configured.
    dicom: Option<(DicomListener, Arc<DicomDoor>)>,
}

/// How e-mail leaves, when an SMTP relay is configured.
fn mailer(config: &Config) -> Result<Option<Mailer>, MailerError> {
    let Some(url) = config.smtp_url.as_deref() else {
        return Ok(None);
    };
    let ca = config
        .smtp_ca_file
        .as_deref()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| MailerError::Ca(format!("cannot read {}: {e}", path.display())))
        })
        .transpose()?;
    Mailer::new(url, &config.mail_from, &config.public_url, ca.as_deref()).map(Some)
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
        mail: mailer(config)?,
        escalate_to: config.escalate_to.clone(),
    };
    let runner = RunnerConfig {
        concurrency: config.workers,
        lease: config.job_lease,
        ..RunnerConfig::default()
    };
    Ok(Runner::new(catalog.clone(), registry(&deps), runner))
}

/// The reminder sweep that runs beside every worker, until `stop`.
pub fn reminder_sweep(
    catalog: &Arc<SqlCatalog>,
    policy: &ReminderPolicy,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run_reminders(
        catalog.clone(),
        policy.clone(),
        interval,
        stop,
    ))
}

impl App {
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let catalog = open_catalog(config).await?;
        let blobs = open_blobs(config, &catalog).await?;
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
        let dicom = match config.dicom_port {
            Some(port) => {
                let addr = SocketAddr::new(config.listen.ip(), port);
                let listener = DicomListener::bind(addr)
                    .await
                    .map_err(|source| StartError::BindDicom { addr, source })?;
                let door = DicomDoor {
                    catalog: catalog.clone(),
                    ingest: ingest.clone(),
                    ae_title: config.dicom_ae_title.clone(),
                    idle_timeout: config.dicom_idle_timeout,
                    max_associations: config.dicom_max_associations,
                    worker_wake: runner.as_ref().map(Runner::waker),
                };
                Some((listener, Arc::new(door)))
            }
            None => None,
        };
        let state = AppState {
            catalog: catalog.clone(),
            blobs,
            ingest,
            metrics: Arc::new(Metrics::new()),
            runner_stats: runner.as_ref().map(Runner::stats),
            worker_wake: runner.as_ref().map(Runner::waker),
            claim_lease: config.claim_lease,
            secure_cookies: config.public_url.starts_with("https://"),
            sessions: relay_workers::session::SessionPolicy::default(),
            uploads: Arc::new(
                Resumable::open(
                    config.data_dir.join("uploads"),
                    config.max_upload_bytes,
                    UPLOAD_TTL,
                )
                .map_err(|source| StartError::Uploads {
                    path: config.data_dir.join("uploads"),
                    source,
                })?,
            ),
            upload_ttl: UPLOAD_TTL,
            auth_throttle: Arc::new(AuthThrottle::new(config.auth_throttle)),
        };
        Ok(Self {
            listener,
            catalog,
            state,
            runner,
            reminders: config.reminders.clone(),
            reminder_interval: config.reminder_interval,
            request_timeout: config.request_timeout,
            header_read_timeout: config.header_read_timeout,
            body_read_timeout: config.body_read_timeout,
            dicom,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The DICOM port actually bound, when the DICOM door is on.
    pub fn dicom_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.dicom
            .as_ref()
            .map(|(listener, _)| listener.local_addr())
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
        let worker = self.runner.map(|r| {
            (
                tokio::spawn(r.run(stop.clone())),
                reminder_sweep(
                    &self.catalog,
                    &self.reminders,
                    self.reminder_interval,
                    stop.clone(),
                ),
            )
        });
        let expiry = tokio::spawn(expire_uploads(
            self.state.uploads.clone(),
            self.catalog.clone(),
            stop.clone(),
        ));
        let dicom = self
            .dicom
            .map(|(listener, door)| tokio::spawn(listener.run(door, stop.clone())));
        let service = with_transport_limits(
            router(self.state, self.request_timeout),
            self.body_read_timeout,
        );
        let served = serve(self.listener, service, self.header_read_timeout, shutdown).await;
        stop.cancel();
        if let Some(dicom) = dicom
            && let Err(error) = dicom.await
        {
            tracing::error!(%error, "DICOM listener stopped abnormally");
        }
        if let Some((worker, reminders)) = worker {
            if let Err(error) = worker.await {
                tracing::error!(%error, "worker stopped abnormally");
            }
            if let Err(error) = reminders.await {
                tracing::error!(%error, "reminder sweep stopped abnormally");
            }
        }
        if let Err(error) = expiry.await {
            tracing::error!(%error, "upload expiry stopped abnormally");
        }
        if let Err(error) = sealer.await {
            tracing::error!(%error, "audit sealer stopped abnormally");
        }
        self.catalog.close().await;
        tracing::info!("stopped");
        served
    }
}

/// Discards resumable uploads nobody touched within their lifetime, each an
/// `upload.cancel` in the audit trail.
async fn expire_uploads(
    uploads: Arc<Resumable>,
    catalog: Arc<SqlCatalog>,
    stop: CancellationToken,
) {
    use relay_workers::audit::AuditContext;
    use relay_workers::catalog::Images;
    let mut tick = tokio::time::interval(UPLOAD_SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match uploads.sweep_expired().await {
            Ok(expired) => {
                for upload in expired {
                    let ctx = AuditContext::system(&upload.id);
                    if let Err(error) = catalog.cancel_upload(&ctx, upload.office, &upload.id).await
                    {
                        tracing::warn!(upload.id = %upload.id, %error, "could not audit an expired upload");
                    }
                    tracing::info!(upload.id = %upload.id, "expired resumable upload discarded");
                }
            }
            Err(error) => tracing::warn!(%error, "could not look for expired uploads"),
        }
    }
}
