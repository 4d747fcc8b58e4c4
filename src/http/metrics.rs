//! Prometheus metrics: requests by route and status, latency by route.
//! The registry is owned by the app (not a global), so several apps in one
//! process (tests) keep separate counts; later stages register into it too.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use relay_workers::model::Specialty;
use relay_workers::queue::KindStats;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The app's metrics and the registry that exports them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    integrity_failures: Counter,
    jobs: Family<JobLabels, Gauge>,
    oldest_job: Family<KindLabels, Gauge<f64, AtomicU64>>,
    job_runs: Family<JobLabels, Gauge>,
    overdue: Family<SpecialtyLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpecialtyLabels {
    specialty: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("relay");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = LatencyFamily::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        let integrity_failures = Counter::default();
        registry.register(
            "blob_integrity_failures",
            "Blobs whose bytes no longer matched their sha256 when read",
            integrity_failures.clone(),
        );
        let jobs = Family::<JobLabels, Gauge>::default();
        registry.register("jobs", "Jobs in the queue, by kind and state", jobs.clone());
        let oldest_job = Family::<KindLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jobs_oldest_queued_seconds",
            "Age of the oldest job ready to run, by kind",
            oldest_job.clone(),
        );
        let job_runs = Family::<JobLabels, Gauge>::default();
        registry.register(
            "job_runs",
            "Job attempts this process ran since it started, by kind and outcome (done, failed)",
            job_runs.clone(),
        );
        let overdue = Family::<SpecialtyLabels, Gauge>::default();
        registry.register(
            "cases_overdue",
            "Open cases past their service level, by specialty",
            overdue.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            integrity_failures,
            jobs,
            oldest_job,
            job_runs,
            overdue,
        }
    }

    /// The registry, for stages that add their own metrics at start-up.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a blob that failed verification on read.
    pub fn integrity_failure(&self) {
        self.integrity_failures.inc();
    }

    /// Sets the queue gauges from the catalog's numbers.
    pub fn observe_queue(&self, stats: &[KindStats]) {
        for s in stats {
            for (state, n) in [
                ("queued", s.queued),
                ("running", s.running),
                ("dead", s.dead),
            ] {
                self.jobs
                    .get_or_create(&JobLabels {
                        kind: s.kind.clone(),
                        state: state.to_owned(),
                    })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            self.oldest_job
                .get_or_create(&KindLabels {
                    kind: s.kind.clone(),
                })
                .set(s.oldest_queued_seconds);
        }
    }

    /// Sets the overdue gauge; a specialty with none reads 0, not absent.
    pub fn observe_overdue(&self, counts: &[(Specialty, u64)]) {
        for specialty in Specialty::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| *s == specialty)
                .map_or(0, |(_, n)| *n);
            self.overdue
                .get_or_create(&SpecialtyLabels {
                    specialty: specialty.as_str().to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Sets the per-process job counters from the worker.
    pub fn observe_runs(&self, runs: &[(String, u64, u64)]) {
        for (kind, done, failed) in runs {
            for (outcome, n) in [("done", done), ("failed", failed)] {
                self.job_runs
                    .get_or_create(&JobLabels {
                        kind: kind.clone(),
                        state: outcome.to_owned(),
                    })
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

/// Middleware that counts and times every request by its route template
/// (never the raw path, which would carry ids and grow without bound).
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<super::AppState>) -> Response {
    match state.catalog.queue_stats().await {
        Ok(stats) => state.metrics.observe_queue(&stats),
        Err(error) => tracing::warn!(%error, "queue metrics unavailable"),
    }
    match state.catalog.overdue_counts().await {
        Ok(counts) => state.metrics.observe_overdue(&counts),
        Err(error) => tracing::warn!(%error, "overdue metrics unavailable"),
    }
    if let Some(runs) = &state.runner_stats {
        state.metrics.observe_runs(&runs.snapshot());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
