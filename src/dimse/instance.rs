//! One incoming C-STORE data set, written to a spool file as a DICOM Part
//! 10 file while its P-DATA fragments arrive: the preamble, a file meta
//! group rebuilt from the command's affected SOP class and instance and
//! the presentation context's transfer syntax, then the data set bytes
//! exactly as received. Bounded by the ingest size limit: past it, the
//! rest is read and dropped so the peer gets a status, not a hang.

use std::path::Path;

use dicom_object::meta::FileMetaTableBuilder;
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use super::error::DimseError;

/// Relay's implementation class UID in the file meta it writes (a 2.25
/// UUID-derived root, fixed so the same data set always makes the same
/// file, and so the same bytes).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.302379436290498187476416133712396592441";
/// Relay's implementation version name (SH, at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "RELAY_DIMSE_1";

/// What the file meta says about the instance.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    pub sop_class: &'a str,
    pub sop_instance: &'a str,
    pub transfer_syntax: &'a str,
    /// The calling AE title, recorded as Source Application Entity Title.
    pub source_ae: &'a str,
}

/// The Part 10 file meta (preamble, `DICM`, group 0002) for `identity`.
pub fn file_meta(identity: &Identity<'_>) -> Result<Vec<u8>, DimseError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(identity.sop_class)
        .media_storage_sop_instance_uid(identity.sop_instance)
        .transfer_syntax(identity.transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(identity.source_ae)
        .build()
        .map_err(|e| DimseError::protocol(format!("cannot build the file meta: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| DimseError::protocol(format!("cannot write the file meta: {e}")))?;
    Ok(out)
}

/// A data set being received.
#[derive(Debug)]
pub struct Incoming {
    file: NamedTempFile,
    writer: tokio::io::BufWriter<tokio::fs::File>,
    data_bytes: u64,
    limit: u64,
    over_limit: bool,
}

impl Incoming {
    /// Starts the spool file in `dir` with the file meta; `limit` bounds
    /// the whole file, as ingest's does.
    pub async fn begin(dir: &Path, meta: &[u8], limit: u64) -> Result<Self, DimseError> {
        let file = NamedTempFile::new_in(dir)?;
        let mut writer = tokio::io::BufWriter::with_capacity(
            256 * 1024,
            tokio::fs::File::from_std(file.reopen()?),
        );
        writer.write_all(meta).await?;
        Ok(Self {
            file,
            writer,
            data_bytes: meta.len() as u64,
            limit,
            over_limit: false,
        })
    }

    /// Appends a fragment of the data set.
    pub async fn push(&mut self, fragment: &[u8]) -> Result<(), DimseError> {
        if self.over_limit {
            return Ok(());
        }
        self.data_bytes += fragment.len() as u64;
        if self.data_bytes > self.limit {
            self.over_limit = true;
            return Ok(());
        }
        self.writer.write_all(fragment).await?;
        Ok(())
    }

    /// The complete file, or `None` when it went over the limit.
    pub async fn finish(mut self) -> Result<Option<NamedTempFile>, DimseError> {
        if self.over_limit {
            return Ok(None);
        }
        self.writer.flush().await?;
        Ok(Some(self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_meta_reads_back() {
        let bytes = file_meta(&Identity {
            sop_class: "1.2.840.10008.5.1.4.1.1.2",
            sop_instance: "1.2.3.4.5",
            transfer_syntax: "1.2.840.10008.1.2.1",
            source_ae: "CT1",
        })
        .expect("meta");
        assert_eq!(&bytes[128..132], b"DICM");
        let meta = dicom_object::FileMetaTable::from_reader(&bytes[128..]).expect("reads");
        assert_eq!(meta.media_storage_sop_instance_uid(), "1.2.3.4.5");
        assert_eq!(meta.transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(meta.source_application_entity_title(), Some("CT1"));
    }
}
