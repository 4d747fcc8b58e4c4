//! Removing where a photo was taken, losslessly.
//!
//! Only metadata is touched: the JPEG entropy-coded data and the PNG image
//! chunks are copied byte for byte, so the decoded pixels are identical.
//! EXIF keeps everything but its GPS block (orientation and capture time
//! stay); XMP packets that carry a location are dropped whole, as are the
//! legacy PNG text chunks that hide EXIF or XMP in hex. XMP that cannot be
//! searched as it is stored is dropped too: a compressed packet (PNG zTXt,
//! or iTXt with its compression flag set), and a JPEG's extended XMP, whose
//! parts each reader reassembles its own way (by GUID and offset), so a
//! location split across parts is found by no per-segment search.

use bytes::{Bytes, BytesMut};
use img_parts::jpeg::{Jpeg, JpegSegment, markers};
use img_parts::png::{Png, PngChunk};

use super::IngestError;
use super::exif_gps::strip_gps;
use crate::model::MediaType;

const EXIF_HEADER: &[u8] = b"Exif\0\0";
const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_EXTENSION_HEADER: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
/// What marks an XMP packet as carrying a location.
const XMP_LOCATION_MARKERS: [&[u8]; 6] = [
    b"GPSLatitude",
    b"GPSLongitude",
    b"GPSAltitude",
    b"LocationCreated",
    b"LocationShown",
    b"photoshop:City",
];

/// What removal found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removal {
    /// An EXIF GPS block was removed.
    pub exif_gps: bool,
    /// An XMP packet with a location, or one that cannot be searched for
    /// one, was dropped.
    pub xmp: bool,
    /// The EXIF block could not be edited safely and was dropped whole.
    pub exif_dropped: bool,
}

impl Removal {
    pub fn changed(&self) -> bool {
        self.exif_gps || self.xmp || self.exif_dropped
    }
}

/// The photo without location metadata, or `None` when it carried none.
/// `Err` when the container itself cannot be parsed.
pub fn remove_location(bytes: Bytes, media: MediaType) -> Result<(Option<Bytes>, Removal), String> {
    match media {
        MediaType::Jpeg => jpeg(bytes),
        MediaType::Png => png(bytes),
        MediaType::Dicom => Ok((None, Removal::default())),
    }
}

/// [`remove_location`] for a photo that decoded to `dimensions` within
/// `max_pixels`, as ingest calls it: an edited photo must decode to the
/// same dimensions. Removal only drops metadata, but the container parser
/// that edits and the decoder may read a damaged file differently (bytes
/// between segments, a segment length that points into the EXIF
/// thumbnail), and the edited file can then be a different picture — the
/// thumbnail instead of the photo. Such a photo is refused, not stored.
pub fn remove_location_checked(
    bytes: Bytes,
    media: MediaType,
    max_pixels: u64,
    dimensions: (u32, u32),
) -> Result<(Option<Bytes>, Removal), IngestError> {
    let (edited, removal) = remove_location(bytes, media).map_err(IngestError::InvalidImage)?;
    if let Some(edited) = &edited {
        let ambiguous = || {
            IngestError::InvalidImage(format!(
                "the {} decodes differently once its location is removed; its structure is damaged, export it again",
                media.as_str()
            ))
        };
        let after = super::photo::validate(edited, media, max_pixels).map_err(|_| ambiguous())?;
        if after != dimensions {
            return Err(ambiguous());
        }
    }
    Ok((edited, removal))
}

fn carries_location(packet: &[u8]) -> bool {
    XMP_LOCATION_MARKERS
        .iter()
        .any(|m| packet.windows(m.len()).any(|w| w == *m))
}

/// What became of one EXIF block.
enum ExifEdit {
    /// It had no GPS block: keep it as it was.
    Unchanged,
    /// Its GPS block was removed: keep this instead.
    Edited(Vec<u8>),
    /// It could not be edited safely: drop it.
    Dropped,
}

/// Edits one EXIF TIFF block, recording what was done in `removal`. The
/// answer is about this block alone: `removal` may already record an edit
/// of an earlier block of the same photo (a JPEG may carry several EXIF
/// segments, and each must be edited).
fn edit_exif(tiff: &[u8], removal: &mut Removal) -> ExifEdit {
    let mut edited = tiff.to_vec();
    match strip_gps(&mut edited) {
        // An edit that leaves a structure the editor itself cannot read
        // again (a GPS IFD overlapping the IFD that points to it) is not
        // trusted: the block is dropped instead.
        Ok(true) if strip_gps(&mut edited.clone()) != Ok(false) => {
            removal.exif_dropped = true;
            ExifEdit::Dropped
        }
        Ok(true) => {
            removal.exif_gps = true;
            ExifEdit::Edited(edited)
        }
        Ok(false) => ExifEdit::Unchanged,
        Err(_) => {
            removal.exif_dropped = true;
            ExifEdit::Dropped
        }
    }
}

fn jpeg(bytes: Bytes) -> Result<(Option<Bytes>, Removal), String> {
    let mut jpeg =
        Jpeg::from_bytes(bytes).map_err(|e| format!("the JPEG structure is invalid: {e}"))?;
    let mut removal = Removal::default();
    let mut kept = Vec::with_capacity(jpeg.segments().len());
    for segment in jpeg.segments_mut().drain(..) {
        let contents = segment.contents();
        if segment.marker() == markers::APP1 && contents.starts_with(EXIF_HEADER) {
            match edit_exif(&contents[EXIF_HEADER.len()..], &mut removal) {
                ExifEdit::Edited(tiff) => {
                    let mut new = BytesMut::from(EXIF_HEADER);
                    new.extend_from_slice(&tiff);
                    kept.push(JpegSegment::new_with_contents(markers::APP1, new.freeze()));
                }
                ExifEdit::Unchanged => kept.push(segment),
                ExifEdit::Dropped => {}
            }
        } else if segment.marker() == markers::APP1
            && (contents.starts_with(XMP_EXTENSION_HEADER)
                || (contents.starts_with(XMP_HEADER) && carries_location(contents)))
        {
            removal.xmp = true;
        } else {
            kept.push(segment);
        }
    }
    *jpeg.segments_mut() = kept;
    Ok((removal.changed().then(|| jpeg.encoder().bytes()), removal))
}

fn png(bytes: Bytes) -> Result<(Option<Bytes>, Removal), String> {
    let mut png =
        Png::from_bytes(bytes).map_err(|e| format!("the PNG structure is invalid: {e}"))?;
    let mut removal = Removal::default();
    let mut kept = Vec::with_capacity(png.chunks().len());
    for chunk in png.chunks_mut().drain(..) {
        let kind = chunk.kind();
        let contents = chunk.contents();
        match &kind {
            b"eXIf" => match edit_exif(contents, &mut removal) {
                ExifEdit::Edited(tiff) => kept.push(PngChunk::new(kind, Bytes::from(tiff))),
                ExifEdit::Unchanged => kept.push(chunk),
                ExifEdit::Dropped => {}
            },
            b"iTXt" | b"tEXt" | b"zTXt" => {
                let mut fields = contents.splitn(2, |&b| b == 0);
                let keyword = fields.next().unwrap_or_default();
                // iTXt: keyword, NUL, compression flag, method, language…
                let compressed = kind == *b"zTXt"
                    || (kind == *b"iTXt" && fields.next().and_then(|f| f.first()) == Some(&1));
                let is_xmp = keyword == b"XML:com.adobe.xmp";
                let is_raw_profile = matches!(
                    keyword,
                    b"Raw profile type exif" | b"Raw profile type APP1" | b"Raw profile type xmp"
                );
                // A compressed XMP packet cannot be searched cheaply: drop it.
                if is_raw_profile || (is_xmp && (compressed || carries_location(contents))) {
                    removal.xmp |= is_xmp;
                    removal.exif_dropped |= is_raw_profile;
                } else {
                    kept.push(chunk);
                }
            }
            _ => kept.push(chunk),
        }
    }
    *png.chunks_mut() = kept;
    Ok((removal.changed().then(|| png.encoder().bytes()), removal))
}
