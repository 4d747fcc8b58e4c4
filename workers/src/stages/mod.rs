//! The background stages, and the one list that registers their handlers.
//!
//! Architecture Invariant: every job kind is registered here and nowhere
//! else, so `relay serve` and `relay worker` run the same stages.

pub mod deliver;
pub mod derive;
pub mod email;
pub mod escalate;
pub mod reminders;
pub mod reprocess;

use std::sync::Arc;

use crate::blob::BlobStore;
use crate::catalog::Catalog;
use crate::queue::{Registry, Typed};
use crate::webhook::TargetPolicy;

pub use deliver::DeliverJob;
pub use derive::{DeriveJob, RenderError, rendered_frame};
pub use email::{EmailJob, Mailer, MailerError};
pub use escalate::EscalateJob;
pub use reminders::run_reminders;
pub use reprocess::ReprocessJob;

/// What the stages need.
#[derive(Clone)]
pub struct StageDeps {
    pub catalog: Arc<dyn Catalog>,
    pub blobs: Arc<dyn BlobStore>,
    /// Which webhook targets deliveries may reach.
    pub webhooks: TargetPolicy,
    /// How e-mail notices leave, when configured.
    pub mail: Option<email::Mailer>,
    /// Administrators' addresses for overdue escalations.
    pub escalate_to: Vec<String>,
}

impl std::fmt::Debug for StageDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDeps")
            .field("blobs", &self.blobs)
            .finish_non_exhaustive()
    }
}

/// Every job handler Relay runs.
pub fn registry(deps: &StageDeps) -> Registry {
    let derive_deps = deps.clone();
    let deliver_deps = deps.clone();
    let email_deps = deps.clone();
    let escalate_deps = deps.clone();
    let reprocess_deps = deps.clone();
    Registry::new()
        .register(Typed::new(move |job: DeriveJob| {
            let deps = derive_deps.clone();
            async move { derive::derive(&deps, job).await }
        }))
        .register(Typed::new(move |job: DeliverJob| {
            let deps = deliver_deps.clone();
            async move { deliver::deliver(&deps, deps.webhooks, job).await }
        }))
        .register(Typed::new(move |job: EmailJob| {
            let deps = email_deps.clone();
            async move { email::email(&deps, job).await }
        }))
        .register(Typed::new(move |job: EscalateJob| {
            let deps = escalate_deps.clone();
            async move { escalate::escalate(&deps, job).await }
        }))
        .register(Typed::new(move |job: ReprocessJob| {
            let deps = reprocess_deps.clone();
            async move { reprocess::reprocess(&deps, job).await }
        }))
}
