//! Photos: an upright thumbnail and preview, and what a reader needs to know
//! about the picture.
//!
//! Cameras store the sensor's pixels as they came and record how to turn
//! them in EXIF Orientation; a viewer that ignores it shows a wound sideways.
//! So renditions are rotated/flipped here, once, and are upright for every
//! client. The metadata is built from a short allow-list of EXIF fields, so
//! location (GPS) can never leak into it even if a stored photo still had it.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde_json::{Map, Value, json};

use super::encode::Displayable;
use super::guard::no_panic;
use super::{DeriveError, DeriveLimits, PREVIEW_SIDE, Rendition, RenditionKind, THUMBNAIL_SIDE};

/// What the derive stage makes from a photo.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoDerivatives {
    pub thumbnail: Rendition,
    pub preview: Rendition,
    /// `width`/`height` as displayed (after orientation), `orientation` (the
    /// EXIF value, when present), `captured_at`, `camera_make`,
    /// `camera_model`, `lens`, each only when present. Never location.
    pub metadata: Value,
}

/// Decodes (within limits), applies the EXIF orientation (1-8; the portrait
/// fixture has 6), and renders an upright thumbnail and preview (JPEG,
/// quality 85).
///
/// metadata: width/height as displayed (after orientation), orientation,
/// captured_at (DateTimeOriginal, as ISO 8601 local time), camera_make,
/// camera_model, lens if present — never any GPS field.
pub fn derive_photo(bytes: &[u8], limits: &DeriveLimits) -> Result<PhotoDerivatives, DeriveError> {
    let mut image = decode(bytes, limits)?;
    let exif = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok();
    let orientation = exif.as_ref().and_then(orientation_of);
    if let Some(value) = orientation {
        // Values outside 1-8 are ignored, as every viewer does.
        if let Some(turn) = u8::try_from(value).ok().and_then(Orientation::from_exif) {
            image.apply_orientation(turn);
        }
    }
    let metadata = metadata(exif.as_ref(), orientation, image.width(), image.height());
    let display = Displayable::from_dynamic(image);
    Ok(PhotoDerivatives {
        thumbnail: display.render(RenditionKind::Thumbnail, THUMBNAIL_SIDE)?,
        preview: display.render(RenditionKind::Preview, PREVIEW_SIDE)?,
        metadata,
    })
}

/// Decodes a JPEG or PNG, refusing one whose header declares more than
/// `limits.max_pixels` before any pixel memory is allocated.
fn decode(bytes: &[u8], limits: &DeriveLimits) -> Result<DynamicImage, DeriveError> {
    let format = match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png)) => format,
        Ok(other) => {
            return Err(DeriveError::unsupported(format!(
                "{} photos cannot be rendered, only JPEG and PNG",
                other.extensions_str().first().unwrap_or(&"these")
            )));
        }
        // An ISO media file (HEIC, AVIF): a real photo format, not decodable here.
        Err(_) if bytes.get(4..8) == Some(b"ftyp") => {
            return Err(DeriveError::unsupported(
                "HEIF/AVIF photos cannot be rendered, only JPEG and PNG",
            ));
        }
        Err(_) => return Err(DeriveError::invalid("the photo is not a JPEG or PNG")),
    };
    let invalid =
        |e: image::ImageError| DeriveError::invalid(format!("the photo cannot be decoded: {e}"));
    no_panic("decoding the photo", || {
        let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(invalid)?;
        let pixels = u64::from(width) * u64::from(height);
        if pixels > limits.max_pixels {
            return Err(DeriveError::invalid(format!(
                "the photo has {pixels} pixels, more than the limit of {}",
                limits.max_pixels
            )));
        }
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut decode_limits = Limits::default();
        // The same allowance ingest validated the photo with.
        decode_limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(64 << 20));
        reader.limits(decode_limits);
        reader.decode().map_err(invalid)
    })
}

fn orientation_of(exif: &exif::Exif) -> Option<u32> {
    exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
}

/// The allow-listed metadata. Built field by field, never by copying EXIF,
/// so nothing outside the list (GPS, maker notes, serial numbers) appears.
fn metadata(exif: Option<&exif::Exif>, orientation: Option<u32>, width: u32, height: u32) -> Value {
    let mut out = Map::new();
    out.insert("width".into(), json!(width));
    out.insert("height".into(), json!(height));
    if let Some(orientation) = orientation {
        out.insert("orientation".into(), json!(orientation));
    }
    let Some(exif) = exif else {
        return Value::Object(out);
    };
    if let Some(captured_at) =
        text(exif, exif::Tag::DateTimeOriginal).and_then(|t| iso_datetime(&t))
    {
        out.insert("captured_at".into(), json!(captured_at));
    }
    for (key, tag) in [
        ("camera_make", exif::Tag::Make),
        ("camera_model", exif::Tag::Model),
        ("lens", exif::Tag::LensModel),
    ] {
        if let Some(value) = text(exif, tag) {
            out.insert(key.into(), json!(value));
        }
    }
    Value::Object(out)
}

/// The first ASCII value of `tag` in the primary image, trimmed; `None` when
/// absent or empty.
fn text(exif: &exif::Exif, tag: exif::Tag) -> Option<String> {
    let field = exif.get_field(tag, exif::In::PRIMARY)?;
    let exif::Value::Ascii(parts) = &field.value else {
        return None;
    };
    let text = String::from_utf8_lossy(parts.first()?)
        .trim_end_matches('\0')
        .trim()
        .to_owned();
    (!text.is_empty()).then_some(text)
}

/// EXIF's `2003:12:14 12:01:44` as `2003-12-14T12:01:44` (the camera's local
/// time: EXIF has no zone unless OffsetTimeOriginal is set, which few
/// cameras do). Text that is not a well-formed date is kept as it is; the
/// all-zero "unset" value some cameras write is dropped.
fn iso_datetime(text: &str) -> Option<String> {
    match exif::DateTime::from_ascii(text.as_bytes()) {
        Ok(dt) if dt.year == 0 => None,
        Ok(dt) => Some(format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
        )),
        Err(_) => Some(text.to_owned()),
    }
}

#[cfg(test)]
mod tests;
