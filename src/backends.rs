//! The composition root's one decision: which catalog and blob store the
//! configuration names. Everything else sees `Arc<dyn Catalog>` and
//! `Arc<dyn BlobStore>`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use relay_workers::blob::{BlobError, BlobStore, FsBlobStore, PlacedBlobStore, S3BlobStore};
use relay_workers::catalog::Placement;
use relay_workers::catalog::{CatalogError, PoolSettings, SqlCatalog};

use crate::config::Config;

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the catalog database")]
    Catalog(#[from] CatalogError),
    #[error("cannot open the blob store")]
    Blobs(#[from] BlobError),
}

/// Opens the catalog named by `config.database`, applying migrations. For
/// SQLite, the database's directory is created when missing.
pub async fn open_catalog(config: &Config) -> Result<Arc<SqlCatalog>, OpenError> {
    if let Some(path) = config.database.strip_prefix("sqlite://") {
        let file = Path::new(path.split('?').next().unwrap_or(path));
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir(dir)?;
        }
    }
    let settings = PoolSettings {
        max_connections: config.max_connections,
        ..PoolSettings::default()
    };
    let catalog = SqlCatalog::connect(&config.database, &settings).await?;
    Ok(Arc::new(catalog.with_sla(config.sla.clone())))
}

/// Opens the blob store named by `config.blobs`: `file://DIR` or a plain
/// path, or `s3://bucket/prefix?endpoint=…&region=…` (credentials from the
/// standard AWS chain; upload spool files in the data directory's `spool/`).
///
/// The store is registered in the catalog, which records it on every blob
/// this process writes, and read through: a blob it lacks is read from the
/// store the catalog records for it (one a migration moved it to).
///
/// The store is probed once here so that a missing bucket, refused
/// credentials or an unreachable server are in the log at start; the
/// process still starts (and `/readyz` reports it), since the store may
/// come back on its own.
pub async fn open_blobs(
    config: &Config,
    catalog: &Arc<SqlCatalog>,
) -> Result<Arc<dyn BlobStore>, OpenError> {
    let blobs = config.blobs.as_str();
    let store: Arc<dyn BlobStore> = match blobs.split_once("://") {
        Some(("s3", _)) => Arc::new(S3BlobStore::open(blobs, config.data_dir.join("spool")).await?),
        Some(("file", path)) => open_fs(path)?,
        Some(_) => return Err(BlobError::UnsupportedUrl(blobs.to_owned()).into()),
        None => open_fs(blobs)?,
    };
    if let Err(error) = store.probe().await {
        tracing::warn!(blobs = %store.describe(), %error, "the blob store is not ready");
    }
    let id = catalog.register_store(&store.url()).await?;
    catalog.place_new_blobs_in(id);
    Ok(Arc::new(PlacedBlobStore::new(store, catalog.clone())))
}

fn open_fs(path: &str) -> Result<Arc<dyn BlobStore>, OpenError> {
    create_dir(Path::new(path))?;
    Ok(Arc::new(FsBlobStore::open(path)?))
}

fn create_dir(path: &Path) -> Result<(), OpenError> {
    std::fs::create_dir_all(path).map_err(|source| OpenError::DataDir {
        path: path.to_owned(),
        source,
    })
}
