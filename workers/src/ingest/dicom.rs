//! Checking that a DICOM file is a well-formed Part 10 object, bounded.
//!
//! Two passes, both with dicom-rs and neither loading pixel data: a token
//! walk over the whole data set that checks every element's length against
//! the bytes actually in the file and bounds sequence nesting (so a forged
//! length can never make a later reader allocate gigabytes), then a parse of
//! everything before Pixel Data for the attributes Relay needs. That parse
//! is kept ([`Validated::header`]) for a front door that needs more of the
//! same attributes, so nothing is parsed twice.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_encoding::decode::Decode;
use dicom_object::Tag;
use dicom_object::{DefaultDicomObject, FileMetaTable, OpenFileOptions};
use dicom_parser::StatefulDecode;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde_json::{Map, Value, json};

use super::IngestError;
use super::sniff::executable_preamble;
use crate::model::DicomIndex;

fn invalid(message: impl Into<String>) -> IngestError {
    IngestError::InvalidDicom(message.into())
}

/// A file that passed [`validate`].
#[derive(Debug)]
pub struct Validated {
    /// The attributes for the receipt.
    pub metadata: Value,
    /// The attributes DICOMweb searches match on (kept in the catalog, not
    /// the receipt).
    pub index: DicomIndex,
    /// Everything before Pixel Data, as parsed.
    pub header: DefaultDicomObject,
}

/// Validates the file at `path`.
pub fn validate(path: &Path, max_depth: usize) -> Result<Validated, IngestError> {
    let io = |e: std::io::Error| invalid(format!("the DICOM file cannot be read: {e}"));
    let size = std::fs::metadata(path).map_err(io)?.len();
    let mut reader = BufReader::new(File::open(path).map_err(io)?);
    let mut preamble = [0u8; 128];
    std::io::Read::read_exact(&mut reader, &mut preamble).map_err(io)?;
    if let Some(kind) = executable_preamble(&preamble) {
        return Err(IngestError::ExecutablePreamble(kind));
    }
    check_meta_lengths(&mut reader, size)?;
    let meta = FileMetaTable::from_reader(&mut reader).map_err(|e| {
        invalid(format!(
            "the file meta information (group 0002) is invalid: {e}"
        ))
    })?;
    let ts_uid = meta.transfer_syntax().to_owned();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| invalid(format!("unknown transfer syntax {ts_uid}")))?;
    if ts.is_unsupported() {
        return Err(invalid(format!(
            "transfer syntax {ts_uid} cannot be read (deflated data sets are not supported)"
        )));
    }
    let start = reader.stream_position().map_err(io)?;
    let walked = walk(&mut reader, ts, start, size, max_depth)?;

    let object = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| invalid(format!("the DICOM data set cannot be parsed: {e}")))?;
    let text = |tag: Tag| attribute_text(&object, tag);
    let number = |tag: Tag| {
        object
            .element(tag)
            .ok()
            .and_then(|e| e.to_int::<i64>().ok())
    };
    let mut out = Map::new();
    for (key, tag, name) in [
        (
            "sop_class_uid",
            tags::SOP_CLASS_UID,
            "SOP Class UID (0008,0016)",
        ),
        (
            "sop_instance_uid",
            tags::SOP_INSTANCE_UID,
            "SOP Instance UID (0008,0018)",
        ),
        (
            "study_instance_uid",
            tags::STUDY_INSTANCE_UID,
            "Study Instance UID (0020,000D)",
        ),
        (
            "series_instance_uid",
            tags::SERIES_INSTANCE_UID,
            "Series Instance UID (0020,000E)",
        ),
    ] {
        let value = text(tag).ok_or_else(|| invalid(format!("the data set has no {name}")))?;
        out.insert(key.into(), json!(value));
    }
    if let Some(modality) = text(tags::MODALITY) {
        out.insert("modality".into(), json!(modality));
    }
    for (key, tag) in [
        ("rows", tags::ROWS),
        ("columns", tags::COLUMNS),
        ("number_of_frames", tags::NUMBER_OF_FRAMES),
    ] {
        if let Some(n) = number(tag) {
            out.insert(key.into(), json!(n));
        }
    }
    // A cut exactly between two elements leaves a well-formed data set: an
    // image without its pixels is the telltale.
    if out.contains_key("rows") && out.contains_key("columns") && !walked.pixel_data {
        return Err(invalid(
            "the data set has Rows and Columns but no Pixel Data; the file may be cut short",
        ));
    }
    let transfer_syntax_uid = ts_uid.trim_end_matches(['\0', ' ']).to_owned();
    out.insert("transfer_syntax".into(), json!(transfer_syntax_uid));
    let uid = |key: &str| {
        out.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let index = DicomIndex {
        study_instance_uid: uid("study_instance_uid"),
        series_instance_uid: uid("series_instance_uid"),
        sop_instance_uid: uid("sop_instance_uid"),
        sop_class_uid: uid("sop_class_uid"),
        transfer_syntax_uid,
        patient_id: text(tags::PATIENT_ID),
        patient_name: text(tags::PATIENT_NAME),
        patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
        patient_sex: text(tags::PATIENT_SEX),
        study_date: text(tags::STUDY_DATE),
        study_time: text(tags::STUDY_TIME),
        accession_number: text(tags::ACCESSION_NUMBER),
        study_id: text(tags::STUDY_ID),
        study_description: text(tags::STUDY_DESCRIPTION),
        referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
        modality: text(tags::MODALITY),
        series_number: number(tags::SERIES_NUMBER),
        series_description: text(tags::SERIES_DESCRIPTION),
        instance_number: number(tags::INSTANCE_NUMBER),
        rows: number(tags::ROWS),
        columns: number(tags::COLUMNS),
        number_of_frames: number(tags::NUMBER_OF_FRAMES),
    };
    Ok(Validated {
        metadata: Value::Object(out),
        index,
        header: object,
    })
}

/// An attribute's value as text, without padding; `None` when absent,
/// empty or not text.
pub fn attribute_text(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What the walk saw that the attribute parse cannot.
#[derive(Debug, Default)]
struct Walked {
    /// A top-level Pixel Data, Float or Double Float Pixel Data element.
    pixel_data: bool,
}

/// Walks every token from `start`, checking lengths and depth, reading no
/// values, and that the data set ends where the file ends: dicom-rs takes
/// an end of file inside an element's tag, or inside open sequences, for a
/// graceful end, so a file cut there would otherwise pass as whole.
fn walk(
    reader: &mut BufReader<File>,
    ts: &dicom_encoding::TransferSyntax,
    start: u64,
    size: u64,
    max_depth: usize,
) -> Result<Walked, IngestError> {
    reader
        .seek(SeekFrom::Start(start))
        .map_err(|e| invalid(format!("the DICOM file cannot be read: {e}")))?;
    let mut tokens = LazyDataSetReader::new_with_ts(reader, ts)
        .map_err(|e| invalid(format!("the DICOM data set cannot be parsed: {e}")))?;
    let mut depth = 0usize;
    let mut walked = Walked::default();
    while let Some(token) = tokens.advance() {
        let token = token.map_err(|e| invalid(format!("the DICOM data set is malformed: {e}")))?;
        match token {
            LazyDataToken::SequenceStart { .. }
            | LazyDataToken::ItemStart { .. }
            | LazyDataToken::PixelSequenceStart => {
                if depth == 0 && matches!(token, LazyDataToken::PixelSequenceStart) {
                    walked.pixel_data = true;
                }
                depth += 1;
                if depth > max_depth {
                    return Err(invalid(format!(
                        "sequences are nested deeper than {max_depth} levels"
                    )));
                }
            }
            LazyDataToken::SequenceEnd | LazyDataToken::ItemEnd => depth = depth.saturating_sub(1),
            LazyDataToken::LazyValue { header, decoder } => {
                let tag = header.tag;
                if depth == 0 {
                    if tag.group() == 0x0002 {
                        // Only the file meta may say what the file is.
                        return Err(invalid(format!(
                            "element {tag} belongs to the file meta information and must not appear in the data set"
                        )));
                    }
                    walked.pixel_data |= PIXEL_DATA_TAGS.contains(&tag);
                }
                let len = header
                    .len
                    .get()
                    .ok_or_else(|| invalid(format!("element {tag} has an undefined length")))?;
                check_fits(decoder.position(), len, size, &format!("element {tag}"))?;
                check_multiple(tag, header.vr.to_bytes(), len)?;
                decoder
                    .skip_bytes(len)
                    .map_err(|e| invalid(format!("element {tag} cannot be read: {e}")))?;
            }
            LazyDataToken::LazyItemValue { len, decoder } => {
                check_fits(decoder.position(), len, size, "a pixel data fragment")?;
                decoder
                    .skip_bytes(len)
                    .map_err(|e| invalid(format!("a pixel data fragment cannot be read: {e}")))?;
            }
            LazyDataToken::ElementHeader(_) => {}
            _ => {}
        }
    }
    if depth > 0 {
        return Err(invalid(
            "the file ends inside a sequence that was never closed; it may be cut short",
        ));
    }
    let end = tokens.into_decoder().position();
    if end != size {
        return Err(invalid(format!(
            "the file ends inside an element header at offset {end} of {size} bytes; it may be cut short"
        )));
    }
    Ok(walked)
}

/// Refuses a binary value whose length is not a whole number of values
/// (PS3.5 6.2 requires it). dicom-rs reads only the whole values of such an
/// element and goes on from the wrong offset, so the parse after this walk
/// would read headers from the middle of a value: a 3 KB file whose UL
/// element had 46 bytes then claimed an 808 MB value, which dicom-rs
/// reserved and zeroed before finding the file too short.
fn check_multiple(tag: Tag, vr: [u8; 2], len: u32) -> Result<(), IngestError> {
    let unit = match &vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"AT" | b"OF" | b"OL" => 4,
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => 8,
        _ => return Ok(()),
    };
    if !len.is_multiple_of(unit) {
        let vr = String::from_utf8_lossy(&vr);
        return Err(invalid(format!(
            "element {tag} ({vr}) has {len} bytes, not a whole number of {unit}-byte values"
        )));
    }
    Ok(())
}

/// Refuses a file meta element (group 0002) whose length runs past the end
/// of the file, before dicom-rs reads the group: its reader reserves and
/// zeroes each value's declared length before reading it, so a file of a
/// few hundred bytes claiming a 4 GB UID would take 4 GB of memory. This
/// walks the same elements the same way (the group length, then elements
/// until it is used up) and leaves the reader where it found it; anything
/// it cannot decode is left for dicom-rs to refuse.
fn check_meta_lengths(reader: &mut BufReader<File>, size: u64) -> Result<(), IngestError> {
    let io = |e: std::io::Error| invalid(format!("the DICOM file cannot be read: {e}"));
    let start = reader.stream_position().map_err(io)?;
    let checked = meta_lengths(reader, size);
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    checked
}

fn meta_lengths(reader: &mut BufReader<File>, size: u64) -> Result<(), IngestError> {
    let decoder = dicom_encoding::decode::file_header_decoder();
    let mut word = [0u8; 4];
    if std::io::Read::read_exact(reader, &mut word).is_err() || word != *b"DICM" {
        return Ok(());
    }
    let group_length = match decoder.decode_header(reader) {
        Ok((header, _)) if header.tag == Tag(0x0002, 0x0000) && header.len.get() == Some(4) => {
            if std::io::Read::read_exact(reader, &mut word).is_err() {
                return Ok(());
            }
            u32::from_le_bytes(word)
        }
        _ => return Ok(()),
    };
    let mut read = 0u32;
    while read < group_length {
        let Ok(position) = reader.stream_position() else {
            return Ok(());
        };
        let Ok((header, header_len)) = decoder.decode_header(reader) else {
            return Ok(());
        };
        let Some(len) = header.len.get() else {
            return Ok(());
        };
        let value_at = position.saturating_add(header_len as u64);
        check_fits(
            value_at,
            len,
            size,
            &format!("file meta element {}", header.tag),
        )?;
        if reader.seek_relative(i64::from(len)).is_err() {
            return Ok(());
        }
        read = read
            .saturating_add(u32::try_from(header_len).unwrap_or(u32::MAX))
            .saturating_add(len);
    }
    Ok(())
}
/// The elements that carry an image's pixels.
const PIXEL_DATA_TAGS: [Tag; 3] = [
    tags::PIXEL_DATA,
    tags::FLOAT_PIXEL_DATA,
    tags::DOUBLE_FLOAT_PIXEL_DATA,
];

fn check_fits(position: u64, len: u32, size: u64, what: &str) -> Result<(), IngestError> {
    if position.saturating_add(u64::from(len)) > size {
        return Err(invalid(format!(
            "{what} claims {len} bytes at offset {position}, past the end of the {size}-byte file"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file meta group whose Media Storage SOP Class UID, encoded with a
    /// 4-byte length, claims nearly 4 GB in a file of 164 bytes.
    fn meta_claiming(len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0]);
        bytes.extend_from_slice(&200u32.to_le_bytes());
        bytes.extend_from_slice(&[2, 0, 2, 0, b'U', b'N', 0, 0]);
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&b"1.2.3\0".repeat(4));
        bytes
    }

    #[test]
    fn every_dicom_fixture_is_accepted() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dicom");
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if let Err(e) = validate(&path, 16) {
                panic!("{} refused: {e}", path.display());
            }
        }
    }

    #[test]
    fn a_binary_value_of_a_partial_length_is_refused() {
        let tag = Tag(0x0008, 0x0018);
        assert!(check_multiple(tag, *b"UL", 46).is_err());
        assert!(check_multiple(tag, *b"US", 3).is_err());
        assert!(check_multiple(tag, *b"FD", 12).is_err());
        assert!(check_multiple(tag, *b"UL", 44).is_ok());
        assert!(check_multiple(tag, *b"UI", 45).is_ok());
        assert!(check_multiple(tag, *b"OB", 45).is_ok());
    }

    #[test]
    fn a_meta_element_past_the_end_is_refused_before_it_is_read() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, &meta_claiming(0xFFFF_FFF0)).expect("written");
        let started = std::time::Instant::now();
        let error = validate(file.path(), 16).expect_err("refused");
        assert!(
            error.to_string().contains("past the end"),
            "refused for the length, not after reading it: {error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
