//! `relay serve`

use crate::app::App;
use crate::config::Config;
use crate::shutdown;

pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::debug!(?config, "configuration");
    let app = App::build(&config).await?;
    let addr = app.local_addr()?;
    tracing::info!("listening on http://{addr}");
    app.run(shutdown::signal()).await?;
    Ok(())
}
