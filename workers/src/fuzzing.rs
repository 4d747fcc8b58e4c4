//! The bodies of the fuzz targets in `workers/fuzz/`, one function each.
//!
//! A cargo-fuzz target only calls its function here with libFuzzer's bytes;
//! `workers/tests/fuzz_replay.rs` calls the same function with every
//! committed corpus file and regression case, so the test suite replays
//! them on stable Rust and a crash found once stays fixed. Each function
//! drives the code an upload really goes through and panics only when it
//! has found a defect: the code under test panicked, or one of the
//! invariants stated here does not hold.
//!
//! Not part of Relay's API: hidden from the docs and used by nothing else.

use std::cell::RefCell;
use std::io::{Seek, Write};

use bytes::Bytes;
use img_parts::jpeg::{Jpeg, markers};
use img_parts::png::Png;

use crate::ingest::{self, IngestLimits, Sniffed, dicom, photo, sniff};
use crate::model::MediaType;

/// The pixel limit photos are decoded within here. Smaller than ingest's
/// default so each run stays fast; the code path is the same.
pub const FUZZ_MAX_PIXELS: u64 = 1 << 20;

/// What marks an XMP packet as carrying a location, checked independently
/// of the code under test.
const LOCATION_WORDS: [&[u8]; 6] = [
    b"GPSLatitude",
    b"GPSLongitude",
    b"GPSAltitude",
    b"LocationCreated",
    b"LocationShown",
    b"photoshop:City",
];

thread_local! {
    /// One scratch file per thread, rewritten for each input: DICOM
    /// validation reads a spooled file, as ingest does.
    static SCRATCH: RefCell<Option<tempfile::NamedTempFile>> = const { RefCell::new(None) };
}

/// Runs `work` on a file holding exactly `data`.
fn with_file<T>(data: &[u8], work: impl FnOnce(&std::path::Path) -> T) -> T {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        let file = match slot.as_mut() {
            Some(file) => file,
            None => slot.insert(tempfile::NamedTempFile::new().expect("a scratch file")),
        };
        let f = file.as_file_mut();
        f.set_len(0).expect("scratch file truncated");
        f.rewind().expect("scratch file rewound");
        f.write_all(data).expect("scratch file written");
        work(file.path())
    })
}

/// `dicom_prescan`: ingest's DICOM check (`ingest::dicom::validate`) on
/// any bytes. It must answer, never panic or allocate past the file; what
/// it accepts carries the four UIDs the receipt names.
pub fn dicom_prescan(data: &[u8]) {
    let max_depth = IngestLimits::default().max_dicom_depth;
    let Ok(validated) = with_file(data, |path| dicom::validate(path, max_depth)) else {
        return;
    };
    let attributes = validated.metadata;
    for key in [
        "sop_class_uid",
        "sop_instance_uid",
        "study_instance_uid",
        "series_instance_uid",
    ] {
        assert!(
            attributes[key].as_str().is_some_and(|s| !s.is_empty()),
            "an accepted DICOM file has no {key}"
        );
    }
}

/// `dicom_parse`: what readers after ingest do with an object ingest
/// accepted — derive's attribute read and a full parse of the data set,
/// pixel data included. Whatever passed the pre-scan must parse without a
/// panic, and its attributes must read as they did at ingest.
pub fn dicom_parse(data: &[u8]) {
    let max_depth = IngestLimits::default().max_dicom_depth;
    with_file(data, |path| {
        if dicom::validate(path, max_depth).is_err() {
            return;
        }
        if let Err(e) = crate::derive::read_attributes(path) {
            panic!("ingest accepted a DICOM file whose attributes derive cannot read: {e}");
        }
        // Derive reads the whole object; a failure is a refusal, not a defect.
        let _ = dicom_object::OpenFileOptions::new().open_file(path);
    });
}

/// `image_sniff`: the type decision and, for a photo, the bounded full
/// decode and the EXIF read ingest does. A photo that decodes stays within
/// the pixel limit.
pub fn image_sniff(data: &[u8]) {
    if let Some(preamble) = data.get(..128) {
        let _ = ingest::sniff::executable_preamble(preamble);
    }
    let Sniffed::Media(media) = sniff(data) else {
        return;
    };
    if !media.is_photo() {
        return;
    }
    if let Ok((width, height)) = photo::validate(data, media, FUZZ_MAX_PIXELS) {
        assert!(
            u64::from(width) * u64::from(height) <= FUZZ_MAX_PIXELS,
            "a photo over the pixel limit was decoded"
        );
        let _ = photo::metadata(data, width, height);
    }
}

/// `strip_location`: removing a photo's location. What is kept afterwards
/// (the edited photo, or the original when nothing was removed) must show
/// no GPS field to an EXIF reader in any EXIF block and no XMP packet with a
/// location, and removing again must find nothing more. For a photo that
/// decodes, ingest's checked removal runs too: what it keeps decodes to the
/// same dimensions.
pub fn strip_location(data: &[u8]) {
    let media = match sniff(data) {
        Sniffed::Media(media) if media.is_photo() => media,
        _ => return,
    };
    let input = Bytes::copy_from_slice(data);
    let Ok((edited, _removal)) = ingest::remove_location(input.clone(), media) else {
        return;
    };
    let kept = edited.unwrap_or_else(|| input.clone());
    if let Some(what) = location_left(&kept, media) {
        panic!("location metadata survived removal: {what}");
    }
    match ingest::remove_location(kept, media) {
        Ok((None, _)) => {}
        Ok((Some(_), removal)) => panic!("a second removal still found {removal:?}"),
        Err(e) => panic!("the edited photo no longer parses: {e}"),
    }
    // Ingest removes location only from a photo that decoded.
    let Ok(dimensions) = photo::validate(&input, media, FUZZ_MAX_PIXELS) else {
        return;
    };
    if let Ok((Some(edited), _)) =
        ingest::remove_location_checked(input, media, FUZZ_MAX_PIXELS, dimensions)
    {
        let after = photo::validate(&edited, media, FUZZ_MAX_PIXELS);
        assert!(
            after.as_ref().ok() == Some(&dimensions),
            "ingest kept an edited photo that decodes differently: {after:?}"
        );
    }
}

/// The first location metadata an independent reader finds in `bytes`.
fn location_left(bytes: &Bytes, media: MediaType) -> Option<String> {
    let blocks = metadata_blocks(bytes, media)?;
    for tiff in blocks.exif {
        if let Some(field) = gps_field(tiff) {
            return Some(field);
        }
    }
    if blocks.opaque_xmp {
        return Some("a compressed XMP packet, which cannot be searched".to_owned());
    }
    blocks
        .xmp
        .iter()
        .find(|p| LOCATION_WORDS.iter().any(|w| contains(p, w)))
        .map(|_| "an XMP packet with a location".to_owned())
}

/// What a photo's metadata holds, as a reader of it would see it.
#[derive(Default)]
struct Blocks {
    /// Every EXIF (TIFF) block.
    exif: Vec<Bytes>,
    /// Every XMP packet, an extended XMP packet reassembled.
    xmp: Vec<Vec<u8>>,
    /// A compressed XMP packet is present.
    opaque_xmp: bool,
}

const XMP_MAIN: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENSION: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
/// Extended XMP: the signature, a 32-byte GUID, the full length and this
/// part's offset (4 bytes each), then the part.
const XMP_EXTENSION_HEADER: usize = 35 + 32 + 4 + 4;

fn metadata_blocks(bytes: &Bytes, media: MediaType) -> Option<Blocks> {
    let mut blocks = Blocks::default();
    match media {
        MediaType::Jpeg => {
            let jpeg = Jpeg::from_bytes(bytes.clone()).ok()?;
            let mut extended = Vec::new();
            for segment in jpeg.segments() {
                let contents = segment.contents();
                if segment.marker() != markers::APP1 {
                    continue;
                }
                if let Some(tiff) = contents.strip_prefix(b"Exif\0\0") {
                    blocks.exif.push(Bytes::copy_from_slice(tiff));
                } else if contents.starts_with(XMP_MAIN) {
                    blocks.xmp.push(contents.to_vec());
                } else if contents.starts_with(XMP_EXTENSION) {
                    extended.extend_from_slice(
                        contents.get(XMP_EXTENSION_HEADER..).unwrap_or_default(),
                    );
                }
            }
            blocks.xmp.push(extended);
        }
        MediaType::Png => {
            let png = Png::from_bytes(bytes.clone()).ok()?;
            for chunk in png.chunks() {
                let kind = chunk.kind();
                let contents = chunk.contents();
                let mut parts = contents.splitn(2, |&b| b == 0);
                let keyword = parts.next().unwrap_or_default();
                let rest = parts.next().unwrap_or_default();
                match &kind {
                    b"eXIf" => blocks.exif.push(contents.clone()),
                    b"iTXt" | b"zTXt" if keyword == b"XML:com.adobe.xmp" => {
                        // iTXt: compression flag, method, language, keyword, text.
                        let compressed = kind == *b"zTXt" || rest.first() == Some(&1);
                        blocks.opaque_xmp |= compressed;
                        blocks.xmp.push(contents.to_vec());
                    }
                    b"tEXt" if keyword == b"XML:com.adobe.xmp" => {
                        blocks.xmp.push(contents.to_vec())
                    }
                    _ => {}
                }
            }
        }
        MediaType::Dicom => return None,
    }
    Some(blocks)
}

/// A GPS field kamadak-exif reads from `tiff`, even from a block it can
/// only partly parse.
fn gps_field(tiff: Bytes) -> Option<String> {
    let exif = match exif::Reader::new()
        .continue_on_error(true)
        .read_raw(tiff.to_vec())
    {
        Ok(exif) => exif,
        Err(e) => e.distill_partial_result(|_| {}).ok()?,
    };
    exif.fields()
        .find(|f| f.tag.context() == exif::Context::Gps)
        .map(|f| format!("{} in IFD {}", f.tag, f.ifd_num))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `body` on every file of `<fuzz_dir>/corpus/<target>/` and
/// `<fuzz_dir>/regressions/<target>/`, each under `catch_unwind`, and
/// returns how many files ran and the names of those that panicked: what
/// the replay tests assert on.
pub fn replay(
    fuzz_dir: &std::path::Path,
    target: &str,
    body: fn(&[u8]),
) -> std::io::Result<(usize, Vec<String>)> {
    let mut ran = 0;
    let mut failed = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir.join(kind).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut paths = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<Vec<_>>>()?;
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path)?;
            ran += 1;
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    Ok((ran, failed))
}
