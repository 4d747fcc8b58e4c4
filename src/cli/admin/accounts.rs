//! `relay admin office|user|token`

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use clap::builder::PossibleValuesParser;
use relay_workers::audit::AuditContext;
use relay_workers::catalog::Catalog;
use relay_workers::model::{Name, NewUser, OfficeId, Role, Specialty, Timestamp, TokenId, UserId};
use relay_workers::token::{IssuedToken, PresentedToken};

use relay_workers::webhook::{TargetPolicy, WebhookSecret, WebhookTarget};

use crate::cli::output::json_lines;

#[derive(Debug, Subcommand)]
pub enum OfficeCommand {
    /// Create an office; prints its id.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List offices as JSON lines.
    List,
    /// Send this office's events (report signed, addendum, question) to its
    /// HTTPS endpoint; prints the signing secret, shown only once.
    Webhook {
        #[arg(long, value_name = "OFFICE_ID")]
        office: String,
        /// The endpoint, e.g. https://ehr.clinic.example/relay-events
        #[arg(
            long,
            required_unless_present_any = ["remove", "patient_name"],
            conflicts_with = "remove"
        )]
        url: Option<String>,
        /// Whether events carry the patient's name, for an office whose own
        /// system matches them to charts (default: omit)
        #[arg(long, value_name = "include|omit", value_parser = ["include", "omit"], conflicts_with = "remove")]
        patient_name: Option<String>,
        /// Stop sending webhooks to this office.
        #[arg(long)]
        remove: bool,
    },
    /// Send this office e-mail notices (case id and link, no patient data).
    Email {
        #[arg(long, value_name = "OFFICE_ID")]
        office: String,
        #[arg(
            long,
            required_unless_present = "remove",
            conflicts_with = "remove",
            value_name = "ADDRESS"
        )]
        to: Option<String>,
        /// Stop e-mail notices to this office.
        #[arg(long)]
        remove: bool,
    },
    /// Change an office's settings; prints its id.
    Update {
        #[arg(long, value_name = "OFFICE_ID")]
        office: String,
        /// Remove location (EXIF GPS, XMP) from this office's photos (default true).
        #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
        strip_location: bool,
    },
    /// Accept DICOM associations (C-STORE, C-ECHO) from a calling AE title
    /// for this office; prints the id of the office user the title acts as.
    SetAe {
        #[arg(long, value_name = "OFFICE_ID", required_unless_present = "remove")]
        office: Option<String>,
        /// The modality's or PACS's calling AE title (1-16 characters).
        #[arg(long, value_name = "TITLE")]
        ae_title: String,
        /// Stop accepting this AE title.
        #[arg(long, conflicts_with = "office")]
        remove: bool,
    },
    /// List the calling AE titles and their offices as JSON lines.
    AeTitles,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its id.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = PossibleValuesParser::new(["office", "specialist", "admin"]))]
        role: String,
        /// The office an office user works for (role office only).
        #[arg(long, value_name = "OFFICE_ID")]
        office: Option<String>,
        /// The specialist's field (role specialist only).
        #[arg(long, value_parser = PossibleValuesParser::new(["dermatology", "radiology"]))]
        specialty: Option<String>,
    },
    /// List users as JSON lines.
    List {
        #[arg(long, value_name = "OFFICE_ID")]
        office: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a bearer token for a user; prints the token, which is shown only once.
    Create {
        #[arg(long, value_name = "USER_ID")]
        user: String,
        /// Lifetime, e.g. 90d, 12h; `never` for no expiry.
        #[arg(long, default_value = "90d", value_name = "DURATION")]
        expires_in: String,
    },
    /// Revoke a token, by its id or by the token itself.
    Revoke {
        #[arg(value_name = "TOKEN_ID|TOKEN")]
        token: String,
    },
    /// List tokens (never their secrets) as JSON lines.
    List {
        #[arg(long, value_name = "USER_ID")]
        user: Option<String>,
    },
}

pub async fn office(
    catalog: &dyn Catalog,
    policy: TargetPolicy,
    command: OfficeCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        OfficeCommand::Create { name } => {
            let name = Name::try_from(name).context("invalid --name")?;
            let office = catalog
                .create_office(&AuditContext::operator(), name)
                .await?;
            eprintln!("created office {} ({})", office.id, office.name);
            println!("{}", office.id);
        }
        OfficeCommand::List => {
            json_lines(catalog.list_offices().await?)?;
        }
        OfficeCommand::Webhook {
            office,
            url,
            patient_name,
            remove,
        } => {
            let id = parse_id::<OfficeId>(&office, "--office")?;
            let no_office = |e: relay_workers::catalog::CatalogError| match e.is_not_found() {
                true => anyhow::anyhow!("no such office; list them with 'relay admin office list'"),
                false => e.into(),
            };
            if let Some(choice) = patient_name.as_deref() {
                let include = choice == "include";
                catalog
                    .set_webhook_patient_name(&AuditContext::operator(), id, include)
                    .await
                    .map_err(no_office)?;
                eprintln!(
                    "office {id}: webhook events {} the patient's name",
                    if include { "carry" } else { "omit" }
                );
                if url.is_none() {
                    println!("{id}");
                    return Ok(ExitCode::SUCCESS);
                }
            }
            match (url, remove) {
                (Some(url), false) => {
                    let target = WebhookTarget::parse(&url, policy)
                        .with_context(|| format!("--url {url:?} cannot receive webhooks"))?;
                    let secret = WebhookSecret::generate()
                        .context("the system random number generator failed")?;
                    catalog
                        .set_webhook(
                            &AuditContext::operator(),
                            id,
                            Some((target.to_string(), secret.to_string())),
                        )
                        .await
                        .map_err(no_office)?;
                    eprintln!(
                        "office {id}: events go to {target}; verify them with this secret, shown only once:"
                    );
                    println!("{secret}");
                }
                _ => {
                    catalog
                        .set_webhook(&AuditContext::operator(), id, None)
                        .await
                        .map_err(no_office)?;
                    eprintln!("office {id}: no more webhooks");
                    println!("{id}");
                }
            }
        }
        OfficeCommand::Email { office, to, remove } => {
            let id = parse_id::<OfficeId>(&office, "--office")?;
            let to = match (to, remove) {
                (Some(to), false) => {
                    let address = lettre_address(&to)?;
                    Some(address)
                }
                _ => None,
            };
            catalog
                .set_notify_email(&AuditContext::operator(), id, to.clone())
                .await
                .map_err(|e| match e.is_not_found() {
                    true => {
                        anyhow::anyhow!("no such office; list them with 'relay admin office list'")
                    }
                    false => e.into(),
                })?;
            match to {
                Some(to) => eprintln!("office {id}: e-mail notices go to {to}"),
                None => eprintln!("office {id}: no more e-mail notices"),
            }
            println!("{id}");
        }
        OfficeCommand::Update {
            office,
            strip_location,
        } => {
            let id = parse_id::<OfficeId>(&office, "--office")?;
            catalog
                .set_strip_location(&AuditContext::operator(), id, strip_location)
                .await
                .map_err(|e| match e.is_not_found() {
                    true => {
                        anyhow::anyhow!("no such office; list them with 'relay admin office list'")
                    }
                    false => e.into(),
                })?;
            match strip_location {
                true => eprintln!("office {id}: location is removed from photos"),
                false => eprintln!("office {id}: photos are stored with their location metadata"),
            }
            println!("{id}");
        }
        OfficeCommand::SetAe {
            office,
            ae_title,
            remove,
        } => {
            let office = office
                .map(|o| parse_id::<OfficeId>(&o, "--office"))
                .transpose()?;
            super::dicom::set_ae(catalog, office, &ae_title, remove).await?;
        }
        OfficeCommand::AeTitles => {
            json_lines(catalog.list_ae_titles().await?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn user(catalog: &dyn Catalog, command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Create {
            name,
            role,
            office,
            specialty,
        } => {
            let name = Name::try_from(name).context("invalid --name")?;
            let new = match (Role::parse(&role)?, office, specialty) {
                (Role::Office, Some(office), None) => NewUser::Office {
                    name,
                    office: parse_id::<OfficeId>(&office, "--office")?,
                },
                (Role::Office, None, _) => bail!("an office user needs --office OFFICE_ID"),
                (Role::Specialist, None, Some(s)) => NewUser::Specialist {
                    name,
                    specialty: Specialty::parse(&s)?,
                },
                (Role::Specialist, _, None) => {
                    bail!("a specialist needs --specialty dermatology|radiology")
                }
                (Role::Admin, None, None) => NewUser::Admin { name },
                (role, _, _) => bail!(
                    "--office is only for role office and --specialty only for role specialist (got role {})",
                    role.as_str()
                ),
            };
            let user = catalog
                .create_user(&AuditContext::operator(), new)
                .await
                .map_err(|e| match e.is_not_found() {
                    true => {
                        anyhow::anyhow!("no such office; list them with 'relay admin office list'")
                    }
                    false => e.into(),
                })?;
            eprintln!("created {} user {}", user.role.as_str(), user.id);
            println!("{}", user.id);
        }
        UserCommand::List { office } => {
            let office = office
                .map(|o| parse_id::<OfficeId>(&o, "--office"))
                .transpose()?;
            json_lines(catalog.list_users(office).await?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(catalog: &dyn Catalog, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { user, expires_in } => {
            let user = parse_id::<UserId>(&user, "--user")?;
            let lifetime = parse_lifetime(&expires_in)?;
            let expires_at = lifetime.map(|d| Timestamp::now().plus(d));
            let issued =
                IssuedToken::generate().context("the system random number generator failed")?;
            let info = catalog
                .create_token(&AuditContext::operator(), user, &issued, expires_at)
                .await
                .map_err(|e| match e.is_not_found() {
                    true => anyhow::anyhow!("no such user; list them with 'relay admin user list'"),
                    false => e.into(),
                })?;
            match info.expires_at {
                Some(at) => eprintln!(
                    "token {} expires {}; it is shown only once:",
                    info.id,
                    at.to_rfc3339()
                ),
                None => eprintln!("token {} never expires; it is shown only once:", info.id),
            }
            println!("{issued}");
        }
        TokenCommand::Revoke { token } => {
            let id = token
                .parse::<TokenId>()
                .ok()
                .or_else(|| PresentedToken::parse(&token).map(|t| t.id()))
                .context("not a token id or token")?;
            let info = catalog
                .revoke_token(&AuditContext::operator(), id)
                .await
                .map_err(|e| match e.is_not_found() {
                    true => {
                        anyhow::anyhow!("no such token; list them with 'relay admin token list'")
                    }
                    false => e.into(),
                })?;
            eprintln!("revoked token {}", info.id);
            println!("{}", info.id);
        }
        TokenCommand::List { user } => {
            let user = user.map(|u| parse_id::<UserId>(&u, "--user")).transpose()?;
            json_lines(catalog.list_tokens(user).await?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_id<T: std::str::FromStr<Err = relay_workers::model::InvalidValue>>(
    text: &str,
    flag: &str,
) -> anyhow::Result<T> {
    text.parse().with_context(|| format!("invalid {flag}"))
}

/// An e-mail address, checked the way the mailer will read it.
fn lettre_address(text: &str) -> anyhow::Result<String> {
    relay_workers::stages::Mailer::new("smtp://localhost:25", text, "", None)
        .map(|_| text.trim().to_owned())
        .map_err(|_| anyhow::anyhow!("--to {text:?} is not an e-mail address"))
}

/// `90d`, `12h`, `never`.
fn parse_lifetime(text: &str) -> anyhow::Result<Option<Duration>> {
    if text == "never" {
        return Ok(None);
    }
    let d = humantime::parse_duration(text)
        .with_context(|| format!("invalid --expires-in {text:?}: use e.g. 90d, 12h or never"))?;
    if d.is_zero() {
        bail!("--expires-in must be longer than zero");
    }
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse() {
        assert_eq!(
            parse_lifetime("90d").expect("ok"),
            Some(Duration::from_secs(90 * 86400))
        );
        assert_eq!(parse_lifetime("never").expect("ok"), None);
        assert!(parse_lifetime("0s").is_err());
        assert!(parse_lifetime("soon").is_err());
    }
}
