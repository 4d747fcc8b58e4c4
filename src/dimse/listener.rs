//! The DICOM listener: accepts TCP connections on the DICOM port, sets
//! `TCP_NODELAY` on each (without it Nagle's algorithm holds back each small
//! C-STORE-RSP until the peer's delayed ACK, tens of milliseconds per
//! instance), and runs one association per connection, a bounded number at
//! a time. A connection past the bound is answered with a transient
//! A-ASSOCIATE-RJ (local limit exceeded), so the peer knows to retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relay_workers::catalog::Catalog;
use relay_workers::ingest::Ingest;
use relay_workers::queue::JobWaker;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::association;
use super::reject::{self, Busy};

/// What every association needs: the stores (through ingest), Relay's own
/// AE title, and how long a peer may stay silent.
pub struct DicomDoor {
    pub catalog: Arc<dyn Catalog>,
    pub ingest: Ingest,
    /// The called AE title peers must use.
    pub ae_title: String,
    /// How long an association may wait for the peer's next PDU.
    pub idle_timeout: Duration,
    /// Associations served at once; a request past it is rejected as
    /// transient (and as many again may be waiting for that rejection;
    /// beyond those a connection is closed at once).
    pub max_associations: usize,
    /// Wakes this process's worker when a stored instance queued a job.
    pub worker_wake: Option<JobWaker>,
}

impl std::fmt::Debug for DicomDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DicomDoor")
            .field("ae_title", &self.ae_title)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_associations", &self.max_associations)
            .finish_non_exhaustive()
    }
}

impl DicomDoor {
    /// A stored instance queued its derive job.
    pub fn work_queued(&self) {
        if let Some(wake) = &self.worker_wake {
            wake.wake();
        }
    }
}

/// A bound DICOM port, not yet accepting.
#[derive(Debug)]
pub struct DicomListener {
    listener: TcpListener,
}

impl DicomListener {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts associations until `stop`, then waits for those running:
    /// each finishes the message in hand and aborts at its next wait.
    pub async fn run(self, door: Arc<DicomDoor>, stop: CancellationToken) {
        let mut running = JoinSet::new();
        let mut rejecting = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "cannot accept a DICOM connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if let Err(error) = socket.set_nodelay(true) {
                tracing::warn!(%error, %peer, "cannot set TCP_NODELAY");
            }
            // Associations that ended while this one was awaited free
            // their place before it is counted.
            while running.try_join_next().is_some() {}
            while rejecting.try_join_next().is_some() {}
            let limit = door.max_associations;
            if running.len() >= limit {
                if rejecting.len() >= limit {
                    tracing::warn!(%peer, limit, "too many DICOM connections; closed");
                } else {
                    tracing::warn!(%peer, limit, "too many DICOM associations; rejecting as transient");
                    rejecting.spawn(reject::reject(socket, Busy::LimitReached));
                }
                continue;
            }
            running.spawn(association::serve(door.clone(), socket, peer, stop.clone()));
        }
        while running.join_next().await.is_some() {}
        rejecting.abort_all();
    }
}
