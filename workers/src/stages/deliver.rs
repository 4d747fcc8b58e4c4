//! The deliver stage: tells an office's own system that something happened
//! to one of its cases (a report was signed, an addendum added, a question
//! asked), by a signed webhook.
//!
//! The event carries ids and a link; the patient's name only when the office
//! has asked for it (its own system, matching events to charts). It is signed
//! as Standard Webhooks specify, so the office can trust it and drop
//! duplicates by `webhook-id`. The target is checked again at delivery time,
//! and the address its name resolves to is pinned for the request, so a
//! DNS answer cannot turn it towards an internal service. Timeouts and 5xx
//! are retried with backoff; a 4xx means the office refuses the event and
//! the job is dead until an operator retries it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StageDeps;
use crate::model::{CaseId, OfficeId, PatientName, Timestamp};
use crate::queue::{Job, JobError};
use crate::webhook::{TargetHost, TargetPolicy, WebhookSecret, WebhookTarget, headers};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Deliver one event to an office.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliverJob {
    /// Stable across retries: the receiver de-duplicates by it.
    pub delivery_id: String,
    pub case_id: CaseId,
    pub office_id: OfficeId,
    /// `report_signed`, `addendum_signed`, `info_requested`,
    /// `report_unacknowledged` (a reminder) or `case_overdue`.
    pub event: String,
    pub occurred_at: Timestamp,
}

impl Job for DeliverJob {
    const KIND: &'static str = "deliver";
    const MAX_ATTEMPTS: u32 = 10;
}

/// The JSON an office receives.
#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    case_id: CaseId,
    office_id: OfficeId,
    occurred_at: Timestamp,
    /// Where the office reads the details, with its own token.
    report_url: String,
    /// Only for an office that opted in (`relay admin office webhook
    /// --include-patient-name`): its own system matches events to charts.
    #[serde(skip_serializing_if = "Option::is_none")]
    patient: Option<EventPatient>,
}

/// The patient, as an opted-in office receives it (redacted in `Debug`).
#[derive(Debug, Serialize)]
struct EventPatient {
    name: PatientName,
}

/// Runs one delivery.
pub async fn deliver(
    deps: &StageDeps,
    policy: TargetPolicy,
    job: DeliverJob,
) -> Result<(), JobError> {
    let Some(webhook) = deps
        .catalog
        .office_webhook(job.office_id)
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?
    else {
        // No webhook configured: the in-app notification is the delivery.
        return Ok(());
    };
    let target = WebhookTarget::parse(&webhook.url, policy)
        .map_err(|e| JobError::Fatal(format!("the office's webhook URL is not allowed: {e}")))?;
    let secret: WebhookSecret = webhook
        .secret
        .parse()
        .map_err(|e| JobError::Fatal(format!("the office's webhook secret is unusable: {e}")))?;
    let patient = if webhook.include_patient_name {
        let name = deps
            .catalog
            .patient_name_for_delivery(job.case_id, job.office_id, &job.delivery_id)
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        Some(EventPatient { name })
    } else {
        None
    };
    let body = serde_json::to_vec(&Event {
        kind: &job.event,
        id: &job.delivery_id,
        case_id: job.case_id,
        office_id: job.office_id,
        occurred_at: job.occurred_at,
        report_url: format!("/api/v1/cases/{}/report", job.case_id),
        patient,
    })
    .map_err(|e| JobError::Fatal(e.to_string()))?;
    let client = pinned_client(&target, policy).await?;
    let timestamp = Timestamp::now().as_millis() / 1000;
    let mut request = client
        .post(target.as_str())
        .header("content-type", "application/json")
        .header("webhook-key-id", key_id(&secret))
        .body(body.clone());
    for (name, value) in headers(&secret, &job.delivery_id, timestamp, &body) {
        request = request.header(name, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| JobError::Retryable(format!("the office's endpoint did not answer: {e}")))?;
    let status = response.status();
    if status.is_success() {
        tracing::info!(case.id = %job.case_id, delivery.id = %job.delivery_id, status = status.as_u16(), "delivered");
        Ok(())
    } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Err(JobError::Retryable(format!(
            "the office's endpoint answered {status}"
        )))
    } else {
        Err(JobError::Fatal(format!(
            "the office's endpoint refused the event with {status}; fix the endpoint, then `relay jobs retry`"
        )))
    }
}

/// Names the secret without revealing it, so an office can rotate keys.
fn key_id(secret: &WebhookSecret) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(secret.to_string().as_bytes())[..8])
}

/// A client whose connection to the target's host goes only to an address
/// that passed the target rules.
async fn pinned_client(
    target: &WebhookTarget,
    policy: TargetPolicy,
) -> Result<reqwest::Client, JobError> {
    crate::tls::install_crypto_provider();
    let port = target.port();
    let builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    let builder = match target.host() {
        TargetHost::Ip(ip) => {
            target
                .check_address(*ip, policy)
                .map_err(|e| JobError::Fatal(e.to_string()))?;
            builder
        }
        TargetHost::Domain(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| JobError::Retryable(format!("cannot resolve {name}: {e}")))?
                .collect();
            let allowed = addrs
                .iter()
                .find(|a| target.check_address(a.ip(), policy).is_ok())
                .ok_or_else(|| {
                    JobError::Fatal(format!(
                        "{name} resolves only to addresses webhooks may not reach"
                    ))
                })?;
            builder.resolve(name, *allowed)
        }
    };
    builder
        .build()
        .map_err(|e| JobError::Retryable(format!("cannot build the HTTP client: {e}")))
}
