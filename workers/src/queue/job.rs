//! What a job is: a serde payload with a kind, and a handler that runs it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a handler did not finish a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// May succeed later (a store was unreachable): retried with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed (bad input, unsupported file): dead at once.
    #[error("{0}")]
    Fatal(String),
}

/// A kind of background work, as data.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name stored in `jobs.kind`.
    const KIND: &'static str;
    /// How many attempts before the job is dead.
    const MAX_ATTEMPTS: u32 = 5;
}

/// Runs jobs of one kind. Handlers must be idempotent: a job whose worker
/// died is run again from the start.
#[async_trait]
pub trait Handler: Send + Sync {
    fn kind(&self) -> &'static str;
    async fn run(&self, payload: &serde_json::Value) -> Result<(), JobError>;
}

/// Adapts an async function over a typed job into a [`Handler`].
pub struct Typed<J, F> {
    run: F,
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J, F> std::fmt::Debug for Typed<J, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Typed")
    }
}

impl<J, F> Typed<J, F> {
    pub fn new(run: F) -> Self {
        Self {
            run,
            _job: std::marker::PhantomData,
        }
    }
}

#[async_trait]
impl<J, F, Fut> Handler for Typed<J, F>
where
    J: Job,
    F: Fn(J) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<(), JobError>> + Send,
{
    fn kind(&self) -> &'static str {
        J::KIND
    }

    async fn run(&self, payload: &serde_json::Value) -> Result<(), JobError> {
        let job: J = serde_json::from_value(payload.clone())
            .map_err(|e| JobError::Fatal(format!("payload is not a {} job: {e}", J::KIND)))?;
        (self.run)(job).await
    }
}

/// Every handler a worker process runs, by kind: the one list of jobs.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(mut self, handler: impl Handler + 'static) -> Self {
        self.handlers.insert(handler.kind(), Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}
