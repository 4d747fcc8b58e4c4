//! DICOM: the attributes a viewer lists, and frames rendered for display.
//!
//! A DICOM frame is not a picture until it has been through the display
//! pipeline of PS3.4 N.2: the modality LUT (rescale to real units, e.g. HU),
//! a VOI window choosing which range of those units fills black to white,
//! and the photometric interpretation (MONOCHROME1 is displayed inverted).
//! dicom-pixeldata decodes the pixel data and applies the LUTs; this module
//! decides what is renderable at all ([`layout`], [`codestream`]), which
//! window to use ([`window`]), and turns the result into renditions.
//!
//! The original's file is read whole (it was bounded by ingest), but only
//! the frame being rendered is decoded.

use std::fmt;
use std::path::Path;

use dicom_object::{DefaultDicomObject, OpenFileOptions};
use serde_json::Value;

use super::guard::no_panic;
use super::{DeriveError, DeriveLimits, PREVIEW_SIDE, Rendition, RenditionKind, THUMBNAIL_SIDE};

mod attributes;
mod codestream;
mod layout;
mod window;

pub use window::{CT_DEFAULT_WINDOW, DEFAULT_WINDOWS};

/// What the derive stage makes from a DICOM object.
#[derive(Clone, PartialEq)]
pub struct DicomDerivatives {
    /// The attributes listed on [`derive_dicom`]; absent ones are omitted.
    pub attributes: Value,
    /// Number of frames (1 for a single-frame object).
    pub frames: u32,
    pub thumbnail: Rendition,
    /// Frame 0, at most [`PREVIEW_SIDE`] on its longest side.
    pub preview: Rendition,
}

impl fmt::Debug for DicomDerivatives {
    // The attributes hold the patient's name and ID: logs carry ids, never
    // those, so Debug shows only which attributes there are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self
            .attributes
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("DicomDerivatives")
            .field(
                "attributes",
                &format_args!("<redacted: {}>", keys.join(", ")),
            )
            .field("frames", &self.frames)
            .field("thumbnail", &self.thumbnail)
            .field("preview", &self.preview)
            .finish()
    }
}

/// Reads the object at `path` and renders frame 0 as thumbnail and preview,
/// with the file's own window (see [`render_frame`]).
///
/// attributes: patient_id, patient_name, patient_birth_date, patient_sex,
/// study_instance_uid, series_instance_uid, sop_instance_uid, sop_class_uid,
/// study_date, modality, body_part_examined, series_description,
/// instance_number, image_position_patient (array of 3 numbers),
/// image_orientation_patient (array of 6), rows, columns, number_of_frames,
/// photometric_interpretation, transfer_syntax, window_center, window_width
/// (first values, when present), rescale_slope, rescale_intercept. Dates
/// are ISO 8601 (`YYYY-MM-DD`) when well-formed. Absent attributes are
/// omitted (not null). In an enhanced multi-frame object, the geometry,
/// window and rescale are taken from the functional groups (shared, else
/// the first frame's) when they are not at the top level.
pub fn derive_dicom(path: &Path, limits: &DeriveLimits) -> Result<DicomDerivatives, DeriveError> {
    check_size(path, limits)?;
    let object = open(path)?;
    let attributes = attributes::collect(&object);
    let layout = layout::PixelLayout::read(&object, limits)?;
    let frame = window::render(&object, &layout, 0, None)?;
    Ok(DicomDerivatives {
        attributes,
        frames: layout.frames,
        thumbnail: frame.render(RenditionKind::Thumbnail, THUMBNAIL_SIDE)?,
        preview: frame.render(RenditionKind::Preview, PREVIEW_SIDE)?,
    })
}

/// Only the attributes of [`derive_dicom`], without reading the pixel data:
/// for an object that cannot be rendered ([`DeriveError::Unsupported`]),
/// whose study and series a viewer should still list.
pub fn read_attributes(path: &Path) -> Result<Value, DeriveError> {
    let object = no_panic("reading the DICOM file", || {
        OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| {
                DeriveError::invalid(format!("the DICOM file cannot be read: {}", chain(&e)))
            })
    })?;
    Ok(attributes::collect(&object))
}

/// Refuses, before anything is read, an object too large to hold in memory.
fn check_size(path: &Path, limits: &DeriveLimits) -> Result<(), DeriveError> {
    let size = std::fs::metadata(path)
        .map_err(|e| DeriveError::invalid(format!("the DICOM file cannot be read: {e}")))?
        .len();
    if size > limits.max_dicom_bytes {
        return Err(DeriveError::unsupported(format!(
            "objects over {} MiB are not rendered yet (this one has {} MiB)",
            limits.max_dicom_bytes >> 20,
            size >> 20
        )));
    }
    Ok(())
}

/// Renders one frame as 8-bit JPEG no larger than `max_side`.
///
/// The pipeline: modality LUT (rescale slope/intercept), then VOI windowing
/// — `window` = `Some((center, width))` overrides; else the file's own VOI
/// (its VOI LUT, or its first Window Center/Width, with its VOI LUT
/// Function); else a default per modality ([`DEFAULT_WINDOWS`]: CT gets
/// the soft-tissue window 40/400 HU, everything else the frame's own
/// min-max range). MONOCHROME1 is inverted so that it displays like
/// MONOCHROME2; RGB and YBR_* are rendered in colour (no windowing).
///
/// An out-of-range `frame` is [`DeriveError::Invalid`], as is a window
/// whose width is not positive.
pub fn render_frame(
    path: &Path,
    frame: u32,
    window: Option<(f64, f64)>,
    max_side: u32,
    limits: &DeriveLimits,
) -> Result<Rendition, DeriveError> {
    if max_side == 0 {
        return Err(DeriveError::invalid(
            "the rendition size must be at least 1",
        ));
    }
    check_size(path, limits)?;
    let object = open(path)?;
    let layout = layout::PixelLayout::read(&object, limits)?;
    let display = window::render(&object, &layout, frame, window)?;
    display.render(RenditionKind::Frame { index: frame }, max_side)
}

/// Reads the whole object (pixel data included) into memory.
fn open(path: &Path) -> Result<DefaultDicomObject, DeriveError> {
    no_panic("reading the DICOM file", || {
        OpenFileOptions::new().open_file(path).map_err(|e| {
            DeriveError::invalid(format!("the DICOM file cannot be read: {}", chain(&e)))
        })
    })
}

/// An error and its causes on one line: dicom-rs errors put the useful part
/// (which attribute, which codec failure) in their sources.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
