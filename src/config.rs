//! Configuration, in layers: defaults, then a TOML file, then `RELAY_*`
//! environment variables, then flags. clap merges the last two (a flag wins
//! over its variable); [`Config::resolve`] lays the result over the file.
//!
//! With nothing configured Relay runs on its embedded default: SQLite at
//! `./relay-data/relay.db` and blobs in `./relay-data/blobs`, listening on
//! `127.0.0.1:8080`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_workers::catalog::redact_url;
use relay_workers::model::{ReminderPolicy, SlaPolicy};
use serde::Deserialize;

use crate::http::throttle::ThrottlePolicy;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "relay-data";
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: u32 = 8;
const DEFAULT_MAX_UPLOAD_BYTES: u64 = 2 << 30;
const DEFAULT_WORKERS: usize = 2;
const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(60);
const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(30 * 60);
const DEFAULT_REMINDER_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_DICOM_AE_TITLE: &str = "RELAY";
const DEFAULT_DICOM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// DICOM associations served at once; more are refused as transient.
const DEFAULT_DICOM_MAX_ASSOCIATIONS: usize = 32;
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings every command resolves before it touches a store.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A database URL; may carry a password, so `Debug` redacts it.
    pub database: String,
    /// Where blobs live: `file://DIR`, a plain directory path, or
    /// `s3://bucket/prefix?endpoint=…&region=…`.
    pub blobs: String,
    pub request_timeout: Duration,
    pub max_connections: u32,
    /// Largest image upload, in bytes.
    pub max_upload_bytes: u64,
    /// Jobs this process runs at once (0: run no worker in `relay serve`).
    pub workers: usize,
    /// How long a worker holds a job between heartbeats before another may
    /// take it over (how soon work resumes after a worker dies).
    pub job_lease: Duration,
    /// How long a specialist's claim on a case lasts unless renewed.
    pub claim_lease: Duration,
    /// Let webhooks reach plain-http loopback addresses (tests, one-machine
    /// setups). Off: webhooks go only to https on public addresses.
    pub webhook_allow_loopback: bool,
    /// The SMTP relay for e-mail notices, if any: `smtp://host:port`
    /// (plain, a relay on the same host or network), `smtp://…?tls=required`
    /// (STARTTLS) or `smtps://host:465` (TLS), with optional `user:password@`.
    pub smtp_url: Option<String>,
    /// An extra CA certificate (PEM) trusted for the SMTP relay.
    pub smtp_ca_file: Option<PathBuf>,
    /// The sender of e-mail notices.
    pub mail_from: String,
    /// How offices reach Relay, for links in notices.
    pub public_url: String,
    /// Service levels per specialty and priority.
    pub sla: SlaPolicy,
    /// When unacknowledged reports are notified again and overdue cases
    /// escalated.
    pub reminders: ReminderPolicy,
    /// Administrators' addresses for overdue escalations (none: the log
    /// line, the audit event and the metric are the escalation).
    pub escalate_to: Vec<String>,
    /// How often reminders and escalations are looked for.
    pub reminder_interval: Duration,
    /// The DICOM port (C-STORE, C-ECHO), on `listen`'s address; off if unset.
    pub dicom_port: Option<u16>,
    /// The AE title DICOM peers must call.
    pub dicom_ae_title: String,
    /// How long a DICOM association may wait for its peer's next PDU.
    pub dicom_idle_timeout: Duration,
    /// DICOM associations served at once; past it a request is refused
    /// with a transient A-ASSOCIATE-RJ (local limit exceeded).
    pub dicom_max_associations: usize,
    /// Failed token authentications allowed per client address.
    pub auth_throttle: ThrottlePolicy,
    /// How long a client may take to send a request's head (slow-loris
    /// clients are cut off after it).
    pub header_read_timeout: Duration,
    /// The longest pause between two pieces of a request body; uploads
    /// have no overall deadline, so this is what ends a stalled one.
    pub body_read_timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database))
            .field("blobs", &self.blobs)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("workers", &self.workers)
            .field("job_lease", &self.job_lease)
            .field("claim_lease", &self.claim_lease)
            .field("webhook_allow_loopback", &self.webhook_allow_loopback)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field("public_url", &self.public_url)
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("sla", &self.sla)
            .field("reminders", &self.reminders)
            .field("escalate_to", &self.escalate_to)
            .field("reminder_interval", &self.reminder_interval)
            .field("dicom_port", &self.dicom_port)
            .field("dicom_ae_title", &self.dicom_ae_title)
            .field("dicom_idle_timeout", &self.dicom_idle_timeout)
            .field("dicom_max_associations", &self.dicom_max_associations)
            .field("auth_throttle", &self.auth_throttle)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .finish()
    }
}

/// The keys a configuration file may set. Unknown keys are an error, so a
/// misspelt setting is noticed instead of silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    /// A file holding the database URL (keeps a password out of the config).
    pub database_file: Option<PathBuf>,
    pub blobs: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub request_timeout: Option<Duration>,
    pub max_connections: Option<u32>,
    pub max_upload_bytes: Option<u64>,
    pub workers: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    pub job_lease: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub claim_lease: Option<Duration>,
    pub webhook_allow_loopback: Option<bool>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub public_url: Option<String>,
    /// Routine, urgent and stat service levels, e.g. `"72h,24h,4h"`.
    pub sla_dermatology: Option<String>,
    pub sla_radiology: Option<String>,
    pub smtp_ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde_opt")]
    pub renotify_after: Option<Duration>,
    pub renotify_limit: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde_opt")]
    pub reminder_interval: Option<Duration>,
    pub dicom_port: Option<u16>,
    pub dicom_ae_title: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub dicom_idle_timeout: Option<Duration>,
    pub dicom_max_associations: Option<usize>,
    pub auth_failure_burst: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    pub auth_failure_refill: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub body_read_timeout: Option<Duration>,
}

/// What flags and environment variables set (already merged by clap).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub database_file: Option<PathBuf>,
    pub blobs: Option<String>,
    pub request_timeout: Option<Duration>,
    pub max_connections: Option<u32>,
    pub max_upload_bytes: Option<u64>,
    pub workers: Option<usize>,
    pub job_lease: Option<Duration>,
    pub claim_lease: Option<Duration>,
    pub webhook_allow_loopback: Option<bool>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub public_url: Option<String>,
    pub sla_dermatology: Option<String>,
    pub sla_radiology: Option<String>,
    pub smtp_ca_file: Option<PathBuf>,
    pub renotify_after: Option<Duration>,
    pub renotify_limit: Option<u32>,
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<Vec<String>>,
    pub reminder_interval: Option<Duration>,
    pub dicom_port: Option<u16>,
    pub dicom_ae_title: Option<String>,
}

/// The configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("cannot read the database url from {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Config {
    /// Which webhook targets are allowed.
    pub fn webhook_policy(&self) -> relay_workers::webhook::TargetPolicy {
        relay_workers::webhook::TargetPolicy {
            allow_insecure_loopback: self.webhook_allow_loopback,
        }
    }

    /// Loads the file named in `overrides` (if any) and lays the overrides on it.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(file, overrides.clone())
    }

    /// Lays the layers on each other: override, else file, else default.
    pub fn resolve(file: FileConfig, over: Overrides) -> Result<Self, ConfigError> {
        let data_dir = over
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        // A URL given directly beats one read from a file, layer by layer.
        let database = match (
            over.database,
            over.database_file,
            file.database,
            file.database_file,
        ) {
            (Some(url), _, _, _) => url,
            (None, Some(path), _, _) => read_secret(&path)?,
            (None, None, Some(url), _) => url,
            (None, None, None, Some(path)) => read_secret(&path)?,
            (None, None, None, None) => default_database(&data_dir),
        };
        let blobs = over
            .blobs
            .or(file.blobs)
            .unwrap_or_else(|| data_dir.join("blobs").display().to_string());
        let listen = over.listen.or(file.listen).unwrap_or_else(default_listen);
        let mut sla = SlaPolicy::default();
        for (key, text, row) in [
            (
                "sla_dermatology",
                over.sla_dermatology.or(file.sla_dermatology),
                &mut sla.dermatology,
            ),
            (
                "sla_radiology",
                over.sla_radiology.or(file.sla_radiology),
                &mut sla.radiology,
            ),
        ] {
            if let Some(text) = text {
                *row = SlaPolicy::parse_levels(&text).map_err(|e| ConfigError::Invalid {
                    key,
                    message: e.to_string(),
                })?;
            }
        }
        let defaults = ReminderPolicy::default();
        let reminders = ReminderPolicy {
            renotify_after: over
                .renotify_after
                .or(file.renotify_after)
                .unwrap_or(defaults.renotify_after),
            renotify_limit: over
                .renotify_limit
                .or(file.renotify_limit)
                .unwrap_or(defaults.renotify_limit),
            escalate_after: over
                .escalate_after
                .or(file.escalate_after)
                .unwrap_or(defaults.escalate_after),
        };
        let reminder_interval = over
            .reminder_interval
            .or(file.reminder_interval)
            .unwrap_or(DEFAULT_REMINDER_INTERVAL);
        if reminder_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: "reminder_interval",
                message: "must be longer than 0s".to_owned(),
            });
        }
        let dicom_ae_title = over
            .dicom_ae_title
            .or(file.dicom_ae_title)
            .unwrap_or_else(|| DEFAULT_DICOM_AE_TITLE.to_owned());
        let dicom_ae_title = relay_workers::model::AeTitle::parse(&dicom_ae_title)
            .map_err(|e| ConfigError::Invalid {
                key: "dicom_ae_title",
                message: e.to_string(),
            })?
            .to_string();
        Ok(Config {
            listen,
            data_dir,
            database,
            blobs,
            request_timeout: over
                .request_timeout
                .or(file.request_timeout)
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            max_connections: over
                .max_connections
                .or(file.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_upload_bytes: over
                .max_upload_bytes
                .or(file.max_upload_bytes)
                .unwrap_or(DEFAULT_MAX_UPLOAD_BYTES),
            workers: over.workers.or(file.workers).unwrap_or(DEFAULT_WORKERS),
            job_lease: over
                .job_lease
                .or(file.job_lease)
                .unwrap_or(DEFAULT_JOB_LEASE),
            claim_lease: over
                .claim_lease
                .or(file.claim_lease)
                .unwrap_or(DEFAULT_CLAIM_LEASE),
            webhook_allow_loopback: over
                .webhook_allow_loopback
                .or(file.webhook_allow_loopback)
                .unwrap_or(false),
            smtp_url: over.smtp_url.or(file.smtp_url),
            smtp_ca_file: over.smtp_ca_file.or(file.smtp_ca_file),
            mail_from: over
                .mail_from
                .or(file.mail_from)
                .unwrap_or_else(|| "relay@localhost".to_owned()),
            public_url: over
                .public_url
                .or(file.public_url)
                .unwrap_or_else(|| format!("http://{listen}")),
            sla,
            reminders,
            escalate_to: over
                .escalate_to
                .or(file.escalate_to)
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            reminder_interval,
            dicom_port: over.dicom_port.or(file.dicom_port),
            dicom_ae_title,
            dicom_idle_timeout: file
                .dicom_idle_timeout
                .unwrap_or(DEFAULT_DICOM_IDLE_TIMEOUT),
            dicom_max_associations: file
                .dicom_max_associations
                .unwrap_or(DEFAULT_DICOM_MAX_ASSOCIATIONS)
                .max(1),
            auth_throttle: ThrottlePolicy {
                burst: file
                    .auth_failure_burst
                    .unwrap_or(ThrottlePolicy::default().burst),
                refill: file
                    .auth_failure_refill
                    .unwrap_or(ThrottlePolicy::default().refill),
            },
            header_read_timeout: file
                .header_read_timeout
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            body_read_timeout: file.body_read_timeout.unwrap_or(DEFAULT_BODY_READ_TIMEOUT),
        })
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_toml(&self) -> String {
        format!(
            "listen = \"{}\"\ndata_dir = \"{}\"\ndatabase = \"{}\"\nblobs = \"{}\"\nrequest_timeout = \"{}\"\nmax_connections = {}\nmax_upload_bytes = {}\nworkers = {}\njob_lease = \"{}\"\nclaim_lease = \"{}\"\nwebhook_allow_loopback = {}\nsmtp_url = \"{}\"\nmail_from = \"{}\"\npublic_url = \"{}\"\nsla_dermatology = \"{}\"\nsla_radiology = \"{}\"\nsmtp_ca_file = \"{}\"\nrenotify_after = \"{}\"\nrenotify_limit = {}\nescalate_after = \"{}\"\nescalate_to = {:?}\nreminder_interval = \"{}\"\n{}dicom_ae_title = \"{}\"\ndicom_idle_timeout = \"{}\"\nauth_failure_burst = {}\nauth_failure_refill = \"{}\"\nheader_read_timeout = \"{}\"\nbody_read_timeout = \"{}\"\ndicom_max_associations = {}\n",
            self.listen,
            self.data_dir.display(),
            redact_url(&self.database),
            self.blobs,
            humantime::format_duration(self.request_timeout),
            self.max_connections,
            self.max_upload_bytes,
            self.workers,
            humantime::format_duration(self.job_lease),
            humantime::format_duration(self.claim_lease),
            self.webhook_allow_loopback,
            self.smtp_url.as_deref().map(redact_url).unwrap_or_default(),
            self.mail_from,
            self.public_url,
            SlaPolicy::levels_text(&self.sla.dermatology),
            SlaPolicy::levels_text(&self.sla.radiology),
            self.smtp_ca_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            humantime::format_duration(self.reminders.renotify_after),
            self.reminders.renotify_limit,
            humantime::format_duration(self.reminders.escalate_after),
            self.escalate_to,
            humantime::format_duration(self.reminder_interval),
            self.dicom_port
                .map(|p| format!("dicom_port = {p}\n"))
                .unwrap_or_default(),
            self.dicom_ae_title,
            humantime::format_duration(self.dicom_idle_timeout),
            self.auth_throttle.burst,
            humantime::format_duration(self.auth_throttle.refill),
            humantime::format_duration(self.header_read_timeout),
            humantime::format_duration(self.body_read_timeout),
            self.dicom_max_associations,
        )
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_database(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("relay.db").display())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

fn read_secret(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|source| ConfigError::SecretFile {
            path: path.to_owned(),
            source,
        })
}

/// `request_timeout = "30s"` in the file.
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_configured_is_the_embedded_default() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).expect("resolves");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("relay-data"));
        assert_eq!(c.database, "sqlite://relay-data/relay.db");
        assert_eq!(c.blobs, "relay-data/blobs");
    }

    #[test]
    fn overrides_beat_the_file_which_beats_defaults() {
        let file: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/relay\"\nrequest_timeout = \"10s\"",
        )
        .expect("parses");
        let over = Overrides {
            listen: Some("127.0.0.1:9001".parse().expect("addr")),
            ..Overrides::default()
        };
        let c = Config::resolve(file, over).expect("resolves");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.data_dir, PathBuf::from("/srv/relay"));
        assert_eq!(c.database, "sqlite:///srv/relay/relay.db");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
    }

    #[test]
    fn service_levels_come_from_the_layers() {
        let file: FileConfig = toml::from_str("sla_radiology = \"12h,2h,30m\"").expect("parses");
        let c = Config::resolve(file, Overrides::default()).expect("resolves");
        assert_eq!(c.sla.radiology[2], Duration::from_secs(30 * 60));
        assert_eq!(c.sla.dermatology, SlaPolicy::default().dermatology);
        let over = Overrides {
            sla_dermatology: Some("1d".to_owned()),
            ..Overrides::default()
        };
        assert!(matches!(
            Config::resolve(FileConfig::default(), over),
            Err(ConfigError::Invalid {
                key: "sla_dermatology",
                ..
            })
        ));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }

    #[test]
    fn database_url_can_come_from_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("db-url");
        std::fs::write(&secret, "postgres://relay:pw@db/relay\n").expect("write");
        let over = Overrides {
            database_file: Some(secret),
            ..Overrides::default()
        };
        let c = Config::resolve(FileConfig::default(), over).expect("resolves");
        assert_eq!(c.database, "postgres://relay:pw@db/relay");
        assert!(!format!("{c:?}").contains("pw"));
        assert!(!c.to_toml().contains("pw"));
    }
}
