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
    #[error(
        "the SMTP url must look like smtp://host:port (plain, a local relay), \
         smtp://host:587?tls=required (STARTTLS) or smtps://host:465 (TLS), \
         optionally with user:password@: {0}"
    )]
    Url(String),
    #[error("the sender address is not an e-mail address")]
    From,
    #[error("cannot use the SMTP CA certificate: {0}")]
    Ca(String),
}

/// How the connection to the relay is protected, as the URL asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    None,
    StartTls { required: bool },
    Wrapper,
}

fn tls_mode(url: &str) -> Result<TlsMode, MailerError> {
    let bad = || MailerError::Url(crate::catalog::redact_url(url));
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let tls = rest
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("tls="));
    match (scheme, tls) {
        ("smtp", None) => Ok(TlsMode::None),
        ("smtp", Some("required")) => Ok(TlsMode::StartTls { required: true }),
        ("smtp", Some("opportunistic")) => Ok(TlsMode::StartTls { required: false }),
        ("smtps", None) => Ok(TlsMode::Wrapper),
        _ => Err(bad()),
    }
}

impl Mailer {
    /// A mail relay by URL: `smtp://host:port` for a relay on the same host
    /// or network (postfix, a smarthost), `smtp://host:587?tls=required` for
    /// STARTTLS, `smtps://host:465` for TLS from the first byte; credentials
    /// as `user:password@`. `ca_pem` adds a trusted CA (a site's own) to the
    /// system roots.
    pub fn new(
        smtp_url: &str,
        from: &str,
        public_url: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, MailerError> {
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        let mode = tls_mode(smtp_url)?;
        let url_error = |_| MailerError::Url(crate::catalog::redact_url(smtp_url));
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url).map_err(url_error)?;
        if let Some(pem) = ca_pem {
            let host = smtp_url
                .split_once("://")
                .and_then(|(_, rest)| rest.rsplit_once('@').map_or(Some(rest), |(_, h)| Some(h)))
                .and_then(|rest| rest.split(['/', '?', ':']).next())
                .filter(|h| !h.is_empty())
                .ok_or_else(|| MailerError::Url(crate::catalog::redact_url(smtp_url)))?;
            let ca = Certificate::from_pem(pem).map_err(|e| MailerError::Ca(e.to_string()))?;
            let params = TlsParameters::builder(host.to_owned())
                .add_root_certificate(ca)
                .build_rustls()
                .map_err(|e| MailerError::Ca(e.to_string()))?;
            builder = builder.tls(match mode {
                TlsMode::None => return Err(MailerError::Ca(
                    "a CA certificate was given but the SMTP url asks for no TLS; use smtps:// or ?tls=required".to_owned(),
                )),
                TlsMode::StartTls { required: true } => Tls::Required(params),
                TlsMode::StartTls { required: false } => Tls::Opportunistic(params),
                TlsMode::Wrapper => Tls::Wrapper(params),
            });
        }
        Ok(Self {
            transport: builder.build(),
            from: from.parse().map_err(|_| MailerError::From)?,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// A link into Relay, for a notice.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// Sends one plain-text message; a permanent refusal is fatal for the
    /// job, anything else is retried.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), JobError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| JobError::Fatal(format!("{to:?} is not an e-mail address")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| JobError::Fatal(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(JobError::Fatal(format!(
                "the mail relay refused the message: {e}"
            ))),
            Err(e) => Err(JobError::Retryable(format!(
                "the mail relay did not take the message: {e}"
            ))),
        }
    }
}

fn subject(event: &str) -> &'static str {
    match event {
        "report_signed" => "A consult report is ready",
        "addendum_signed" => "An addendum was added to a consult report",
        "info_requested" => "A specialist has a question about a referral",
        "report_unacknowledged" => "Reminder: a consult report is waiting to be read",
        "case_overdue" => "A referral is past its expected answer time",
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
    let link = mailer.link(&format!("/api/v1/cases/{}/report.html", job.case_id));
    let body = format!(
        "{}.\n\nCase: {}\nOpen it in Relay: {}\n\nThis message carries no patient information; sign in to read the case.\n",
        subject(&job.event),
        job.case_id,
        link
    );
    mailer.send(&to, subject(&job.event), body).await?;
    tracing::info!(case.id = %job.case_id, delivery.id = %job.delivery_id, "e-mail notice sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailer(url: &str, from: &str) -> Result<Mailer, MailerError> {
        crate::tls::install_crypto_provider();
        Mailer::new(url, from, "https://relay.example", None)
    }

    #[test]
    fn smtp_urls_choose_plain_starttls_or_tls() {
        for good in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.internal",
            "smtp://relay:secret@mail.example:587?tls=required",
            "smtp://mail.example:587?tls=opportunistic",
            "smtps://relay:secret@mail.example:465",
            "smtps://mail.example",
        ] {
            assert!(mailer(good, "relay@clinic.example").is_ok(), "{good}");
        }
        assert_eq!(tls_mode("smtp://h:25").ok(), Some(TlsMode::None));
        assert_eq!(
            tls_mode("smtp://h:587?tls=required").ok(),
            Some(TlsMode::StartTls { required: true })
        );
        assert_eq!(tls_mode("smtps://h").ok(), Some(TlsMode::Wrapper));
        for bad in [
            "http://x:25",
            "smtp://h:port",
            "smtp://h?tls=maybe",
            "smtps://h?tls=required",
        ] {
            assert!(
                matches!(mailer(bad, "a@b.c"), Err(MailerError::Url(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            mailer("smtp://h:25", "not an address"),
            Err(MailerError::From)
        ));
    }

    #[test]
    fn url_errors_never_show_the_password() {
        let Err(err) = mailer("smtp://relay:hunter2@h:port", "a@b.c") else {
            panic!("a bad port is refused");
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_private_ca_needs_a_tls_url() {
        crate::tls::install_crypto_provider();
        let err = Mailer::new("smtp://h:25", "a@b.c", "u", Some(b"not pem")).expect_err("refused");
        assert!(matches!(err, MailerError::Ca(_)), "{err}");
    }
}
