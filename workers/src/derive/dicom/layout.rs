//! Whether an object's pixel data can be rendered, decided from its
//! attributes before a byte of it is decoded.
//!
//! Two answers matter to the job: `Unsupported` (a valid object this build
//! cannot show — JPEG-LS, palette colour, float pixels, no image at all)
//! becomes a visible state and is never retried; `Invalid` (contradictory
//! or over the limits) fails the job with its reason. The library would
//! find most of these too, but only as opaque errors (or, for some, panics),
//! so they are checked here, where the reason can be said plainly.

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, InMemDicomObject, Tag};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use crate::derive::{DeriveError, DeriveLimits};

/// The shape of an object's pixel data, checked renderable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PixelLayout {
    pub rows: u32,
    pub columns: u32,
    /// Number of Frames, 1 when absent.
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub bits_stored: u16,
    pub photometric: Photometric,
    /// The Modality, for the default window.
    pub modality: Option<String>,
}

/// The photometric interpretations Relay renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Photometric {
    /// 0 is white: inverted for display.
    Monochrome1,
    Monochrome2,
    /// RGB, YBR_FULL, or a YBR_* that the codec turns into RGB.
    Colour,
}

impl PixelLayout {
    /// Reads and checks the pixel module of `object` against what this build
    /// can decode and against `limits`.
    pub(super) fn read(
        object: &DefaultDicomObject,
        limits: &DeriveLimits,
    ) -> Result<Self, DeriveError> {
        let encapsulated = check_transfer_syntax(object)?;
        if object.element(tags::PIXEL_DATA).is_err() {
            let what = if object.element(tags::FLOAT_PIXEL_DATA).is_ok()
                || object.element(tags::DOUBLE_FLOAT_PIXEL_DATA).is_ok()
            {
                "floating-point pixel data cannot be rendered"
            } else {
                "the object has no image (no Pixel Data)"
            };
            return Err(DeriveError::unsupported(what));
        }
        let rows = positive(object, tags::ROWS, "Rows")?;
        let columns = positive(object, tags::COLUMNS, "Columns")?;
        let samples_per_pixel = required_u16(object, tags::SAMPLES_PER_PIXEL, "Samples per Pixel")?;
        let bits_allocated = required_u16(object, tags::BITS_ALLOCATED, "Bits Allocated")?;
        let bits_stored = required_u16(object, tags::BITS_STORED, "Bits Stored")?;
        if !matches!(samples_per_pixel, 1 | 3) {
            return Err(DeriveError::unsupported(format!(
                "{samples_per_pixel} samples per pixel cannot be rendered (only 1 or 3)"
            )));
        }
        if !matches!(bits_allocated, 1 | 8 | 16) {
            return Err(DeriveError::unsupported(format!(
                "{bits_allocated}-bit samples cannot be rendered (only 1, 8 or 16 bits allocated)"
            )));
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(DeriveError::invalid(format!(
                "Bits Stored is {bits_stored} with {bits_allocated} bits allocated"
            )));
        }
        let photometric = photometric(object, samples_per_pixel, bits_allocated, encapsulated)?;
        let frames = frames(object, limits)?;
        let samples =
            u64::from(rows) * u64::from(columns) * u64::from(frames) * u64::from(samples_per_pixel);
        if samples > limits.max_pixels {
            return Err(DeriveError::invalid(format!(
                "the pixel data holds {samples} samples ({rows}×{columns}, {frames} frames, \
                 {samples_per_pixel} per pixel), more than the limit of {}",
                limits.max_pixels
            )));
        }
        Ok(PixelLayout {
            rows,
            columns,
            frames,
            samples_per_pixel,
            bits_stored,
            photometric,
            modality: text(object, tags::MODALITY),
        })
    }

    /// Refuses a frame index the object does not have.
    pub(super) fn check_frame(&self, frame: u32) -> Result<(), DeriveError> {
        if frame >= self.frames {
            return Err(DeriveError::invalid(format!(
                "frame {frame} does not exist: the object has {} frame{} (0-{})",
                self.frames,
                if self.frames == 1 { "" } else { "s" },
                self.frames - 1
            )));
        }
        Ok(())
    }
}

/// Checks that the pixel data's transfer syntax can be decoded here;
/// returns whether it is encapsulated (compressed).
fn check_transfer_syntax(object: &DefaultDicomObject) -> Result<bool, DeriveError> {
    let uid = object
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' ']);
    let Some(ts) = TransferSyntaxRegistry.get(uid) else {
        return Err(DeriveError::unsupported(format!(
            "transfer syntax {uid} is unknown"
        )));
    };
    if !ts.can_decode_all() {
        return Err(DeriveError::unsupported(format!(
            "pixel data in {} ({uid}) cannot be decoded by this build",
            ts.name()
        )));
    }
    Ok(ts.is_encapsulated_pixel_data())
}

/// Maps Photometric Interpretation to how it is displayed, refusing what
/// the decoders cannot turn into grey or RGB.
fn photometric(
    object: &DefaultDicomObject,
    samples_per_pixel: u16,
    bits_allocated: u16,
    encapsulated: bool,
) -> Result<Photometric, DeriveError> {
    let name = text(object, tags::PHOTOMETRIC_INTERPRETATION)
        .ok_or_else(|| DeriveError::invalid("the object has no Photometric Interpretation"))?;
    let (kind, samples) = match name.as_str() {
        "MONOCHROME1" => (Photometric::Monochrome1, 1),
        "MONOCHROME2" => (Photometric::Monochrome2, 1),
        "RGB" | "YBR_FULL" => (Photometric::Colour, 3),
        // Chroma-subsampled or transformed colour: only a codec undoes these
        // (JPEG and JPEG 2000 decode them to RGB); native 4:2:2 is not read.
        "YBR_FULL_422" | "YBR_ICT" | "YBR_RCT" if encapsulated => (Photometric::Colour, 3),
        other => {
            return Err(DeriveError::unsupported(format!(
                "photometric interpretation {other} cannot be rendered{}",
                if encapsulated {
                    ""
                } else {
                    " from uncompressed pixel data"
                }
            )));
        }
    };
    if samples != samples_per_pixel {
        return Err(DeriveError::invalid(format!(
            "{name} with {samples_per_pixel} samples per pixel"
        )));
    }
    if kind == Photometric::Colour && bits_allocated == 1 {
        return Err(DeriveError::invalid(format!("{name} with 1-bit samples")));
    }
    Ok(kind)
}

fn frames(object: &DefaultDicomObject, limits: &DeriveLimits) -> Result<u32, DeriveError> {
    let Ok(element) = object.element(tags::NUMBER_OF_FRAMES) else {
        return Ok(1);
    };
    let frames = element
        .to_int::<i64>()
        .map_err(|_| DeriveError::invalid("Number of Frames is not a number"))?;
    if frames < 1 {
        return Err(DeriveError::invalid(format!(
            "Number of Frames is {frames}"
        )));
    }
    if frames > i64::from(limits.max_frames) {
        return Err(DeriveError::invalid(format!(
            "the object has {frames} frames, more than the limit of {}",
            limits.max_frames
        )));
    }
    u32::try_from(frames).map_err(|_| DeriveError::invalid("Number of Frames is too large"))
}

fn required_u16(object: &DefaultDicomObject, tag: Tag, name: &str) -> Result<u16, DeriveError> {
    object
        .element(tag)
        .map_err(|_| DeriveError::invalid(format!("the object has no {name}")))?
        .to_int::<u16>()
        .map_err(|_| DeriveError::invalid(format!("{name} is not a number from 0 to 65535")))
}

fn positive(object: &DefaultDicomObject, tag: Tag, name: &str) -> Result<u32, DeriveError> {
    match required_u16(object, tag, name)? {
        0 => Err(DeriveError::invalid(format!("{name} is 0"))),
        n => Ok(u32::from(n)),
    }
}

/// A string attribute without DICOM's padding; `None` when absent or empty.
pub(super) fn text(object: &InMemDicomObject, tag: Tag) -> Option<String> {
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).trim().to_owned())
        .filter(|s| !s.is_empty())
}
