//! E-mail notices to an office: that a report, an addendum or a question
//! is waiting, with the case id and a link — never patient data, since
//! e-mail leaves the systems Relay controls.

use std::fmt;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::StageDeps;
use super::deliver::DeliverJob;
use crate::queue::{Job, JobError};

/// Same event as a webhook delivery; its own job so the two retry apart.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EmailJob(pub DeliverJob);

impl Job for EmailJob {
    const KIND: &'static str = "email";
    const MAX_ATTEMPTS: u32 = 10;
}

/// Where Relay sends mail from and through.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The address offices reach Relay at, for links.
    public_url: String,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// The mail settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("the SMTP url must look like smtp://host:port (a local relay such as postfix)")]
    Url,
    #[error("the sender address is not an e-mail address")]
    From,
}

impl Mailer {
    /// An SMTP relay without TLS, for a mail relay on the same host or
    /// network (postfix, a smarthost); e.g. `smtp://127.0.0.1:25`.
    pub fn new(smtp_url: &str, from: &str, public_url: &str) -> Result<Self, MailerError> {
        let rest = smtp_url.strip_prefix("smtp://").ok_or(MailerError::Url)?;
        let (host, port) = match rest.trim_end_matches('/').rsplit_once(':') {
            Some((host, port)) => (host, port.parse().map_err(|_| MailerError::Url)?),
            None => (rest.trim_end_matches('/'), 25),
        };
        if host.is_empty() {
            return Err(MailerError::Url);
        }
        Ok(Self {
            transport: AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(port)
                .build(),
            from: from.parse().map_err(|_| MailerError::From)?,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }
}

fn subject(event: &str) -> &'static str {
    match event {
        "report_signed" => "A consult report is ready",
        "addendum_signed" => "An addendum was added to a consult report",
        "info_requested" => "A specialist has a question about a referral",
        _ => "News about a referral",
    }
}

/// Sends one notice, if the office wants them.
pub async fn email(deps: &StageDeps, job: EmailJob) -> Result<(), JobError> {
    let job = job.0;
    let Some(to) = deps
        .catalog
        .office_notify_email(job.office_id)
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?
    else {
        return Ok(());
    };
    let Some(mailer) = &deps.mail else {
        return Err(JobError::Fatal(
            "the office wants e-mail but Relay has no SMTP relay configured (--smtp-url, --mail-from)".to_owned(),
        ));
    };
    let to: Mailbox = to.parse().map_err(|_| {
        JobError::Fatal("the office's notice address is not an e-mail address".to_owned())
    })?;
    let link = format!(
        "{}/api/v1/cases/{}/report.html",
        mailer.public_url, job.case_id
    );
    let body = format!(
        "{}.\n\nCase: {}\nOpen it in Relay: {}\n\nThis message carries no patient information; sign in to read the case.\n",
        subject(&job.event),
        job.case_id,
        link
    );
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject(&job.event))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| JobError::Fatal(format!("cannot build the message: {e}")))?;
    match mailer.transport.send(message).await {
        Ok(_) => {
            tracing::info!(case.id = %job.case_id, delivery.id = %job.delivery_id, "e-mail notice sent");
            Ok(())
        }
        Err(e) if e.is_permanent() => Err(JobError::Fatal(format!(
            "the mail relay refused the notice: {e}"
        ))),
        Err(e) => Err(JobError::Retryable(format!(
            "the mail relay did not take the notice: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_a_host_and_port() {
        assert!(
            Mailer::new(
                "smtp://127.0.0.1:2525",
                "relay@clinic.example",
                "https://relay.example"
            )
            .is_ok()
        );
        assert!(
            Mailer::new(
                "smtp://mail.internal",
                "relay@clinic.example",
                "https://relay.example"
            )
            .is_ok()
        );
        assert!(matches!(
            Mailer::new("http://x:25", "a@b.c", "u"),
            Err(MailerError::Url)
        ));
        assert!(matches!(
            Mailer::new("smtp://:25", "a@b.c", "u"),
            Err(MailerError::Url)
        ));
        assert!(matches!(
            Mailer::new("smtp://h:port", "a@b.c", "u"),
            Err(MailerError::Url)
        ));
        assert!(matches!(
            Mailer::new("smtp://h:25", "not an address", "u"),
            Err(MailerError::From)
        ));
    }
}
