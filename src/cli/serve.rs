//! `relay serve`

use crate::app::App;
use crate::config::Config;
use crate::shutdown;

pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::debug!(?config, "configuration");
    let app = App::build(&config).await?;
    let addr = app.local_addr()?;
    if let Some(dicom) = app.dicom_addr() {
        let dicom = dicom?;
        tracing::info!(ae_title = %config.dicom_ae_title, "DICOM listening on {dicom}");
    }
    tracing::info!("listening on http://{addr}");
    app.run(shutdown::signal()).await?;
    Ok(())
}
