//! DIMSE statuses (PS3.4 Annex B.2.3, PS3.7 Annex C) for what ingest and
//! the door decided. Success is only ever [`SUCCESS`]; everything else
//! names a failure class the sending modality knows how to treat (retry
//! later for resources, give up for data it cannot fix).

use relay_workers::catalog::CatalogError;
use relay_workers::ingest::IngestError;

pub const SUCCESS: u16 = 0x0000;
/// Refused: out of resources (the store or database cannot take it now,
/// or the instance is over the size limit).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: the data set does not match the SOP class (or the command's
/// affected SOP instance).
pub const DATA_SET_MISMATCH: u16 = 0xA900;
/// Error: cannot understand (not a well-formed, storable data set).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Failure: processing failure.
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Refused: SOP class not supported.
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;

/// The status for an instance ingest refused.
pub fn for_ingest(error: &IngestError) -> u16 {
    match error {
        IngestError::TooLarge { .. } | IngestError::Blob(_) => OUT_OF_RESOURCES,
        IngestError::Catalog(e) => for_catalog(e),
        IngestError::Empty
        | IngestError::Interrupted
        | IngestError::DigestMismatch { .. }
        | IngestError::BadDigestHeader(_)
        | IngestError::UnsupportedType(_)
        | IngestError::TypeMismatch { .. }
        | IngestError::Heic
        | IngestError::InvalidImage(_)
        | IngestError::TooManyPixels { .. }
        | IngestError::InvalidDicom(_)
        | IngestError::ExecutablePreamble(_)
        | IngestError::InvalidFilename(_) => CANNOT_UNDERSTAND,
    }
}

/// The status when the catalog failed while placing or recording an
/// instance: an unreachable database is a lack of resources (retry), any
/// other fault a processing failure.
pub fn for_catalog(error: &CatalogError) -> u16 {
    if error.is_transient() {
        OUT_OF_RESOURCES
    } else {
        PROCESSING_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_never_map_to_success() {
        for error in [
            IngestError::TooLarge { limit: 1 },
            IngestError::InvalidDicom("no Study Instance UID".into()),
            IngestError::ExecutablePreamble("ELF"),
            IngestError::Catalog(CatalogError::NotFound { what: "case" }),
            IngestError::Empty,
        ] {
            assert_ne!(for_ingest(&error), SUCCESS, "{error}");
        }
        assert_eq!(
            for_ingest(&IngestError::TooLarge { limit: 1 }),
            OUT_OF_RESOURCES
        );
        assert_eq!(
            for_ingest(&IngestError::InvalidDicom(String::new())),
            CANNOT_UNDERSTAND
        );
    }
}
