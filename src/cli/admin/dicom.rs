//! `relay admin office set-ae`: which calling AE titles the DICOM door
//! accepts, and for which office.

use anyhow::Context;
use relay_workers::audit::AuditContext;
use relay_workers::catalog::{Catalog, CatalogError};
use relay_workers::model::{AeTitle, OfficeId};

pub async fn set_ae(
    catalog: &dyn Catalog,
    office: Option<OfficeId>,
    ae_title: &str,
    remove: bool,
) -> anyhow::Result<()> {
    let title = AeTitle::parse(ae_title).context("invalid --ae-title")?;
    let ctx = AuditContext::operator();
    if remove {
        catalog
            .remove_ae_title(&ctx, &title)
            .await
            .map_err(|e| match e.is_not_found() {
                true => anyhow::anyhow!("AE title {title} is not mapped to an office"),
                false => e.into(),
            })?;
        eprintln!("AE title {title}: associations are refused from now on");
        return Ok(());
    }
    let office = office.context("--office is required")?;
    let mapping = catalog
        .set_ae_title(&ctx, &title, office)
        .await
        .map_err(|e| match e {
            CatalogError::NotFound { .. } => {
                anyhow::anyhow!("no such office; list them with 'relay admin office list'")
            }
            other => other.into(),
        })?;
    eprintln!(
        "AE title {title}: instances go to office {office}'s draft radiology cases, one per study"
    );
    println!("{}", mapping.user);
    Ok(())
}
