//! What can go wrong on a DICOM association. Failures of one message become
//! a DIMSE status (`status.rs`); these end the association.

use relay_workers::catalog::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum DimseError {
    #[error("upper layer: {0}")]
    UpperLayer(#[from] dicom_ul::association::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer was idle for longer than {0:?}")]
    Idle(std::time::Duration),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
}

impl DimseError {
    pub fn protocol(message: impl Into<String>) -> Self {
        DimseError::Protocol(message.into())
    }
}
