//! Checking that a photo is what it claims, and reading what matters of its
//! metadata. Runs on the blocking pool: decoding is CPU work.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use serde_json::{Map, Value, json};

use super::IngestError;
use crate::model::MediaType;

/// Decodes the photo fully (a truncated or corrupt file fails here) within
/// `max_pixels`; the dimensions are read first, so a decompression bomb is
/// refused before any pixel memory is allocated.
pub fn validate(
    bytes: &[u8],
    media: MediaType,
    max_pixels: u64,
) -> Result<(u32, u32), IngestError> {
    let format = match media {
        MediaType::Jpeg => ImageFormat::Jpeg,
        MediaType::Png => ImageFormat::Png,
        MediaType::Dicom => return Err(IngestError::InvalidImage("not a photo".to_owned())),
    };
    let what = media.as_str();
    let invalid = |e: image::ImageError| {
        IngestError::InvalidImage(format!(
            "the {what} could not be decoded ({e}); it may be truncated or damaged, export it again"
        ))
    };
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(invalid)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(IngestError::TooManyPixels {
            pixels,
            limit: max_pixels,
        });
    }
    if format == ImageFormat::Jpeg {
        decode_jpeg_strictly(bytes)?;
        return Ok((width, height));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // Room for the widest pixel format at these dimensions, and no more.
    limits.max_alloc = Some(pixels.saturating_mul(16).saturating_add(64 << 20));
    reader.limits(limits);
    reader.decode().map_err(invalid)?;
    Ok((width, height))
}

/// Decodes a JPEG whose dimensions were already checked, in the decoder's
/// strict mode. `image` decodes leniently, as browsers do: a scan cut short,
/// or one too short for the dimensions its header declares, comes out
/// padded with grey and "succeeds", so a truncated upload would be stored
/// as if whole.
fn decode_jpeg_strictly(bytes: &[u8]) -> Result<(), IngestError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        // The pixel limit has been applied; the decoder's own default
        // (16384 a side) would refuse panoramas within it.
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
        .decode()
        .map(drop)
        .map_err(|e| {
            IngestError::InvalidImage(format!(
                "the image/jpeg could not be decoded ({e}); it may be truncated or damaged, export it again"
            ))
        })
}

/// What a reader of the case needs from EXIF: orientation, capture time and
/// device. Never location (it has been removed by then anyway).
pub fn metadata(bytes: &[u8], width: u32, height: u32) -> Value {
    let mut out = Map::new();
    out.insert("width".into(), json!(width));
    out.insert("height".into(), json!(height));
    let Ok(exif) = exif::Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return Value::Object(out);
    };
    let text = |tag: exif::Tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .and_then(|f| match &f.value {
                exif::Value::Ascii(parts) => parts
                    .first()
                    .map(|p| {
                        String::from_utf8_lossy(p)
                            .trim()
                            .trim_end_matches('\0')
                            .to_owned()
                    })
                    .filter(|s| !s.is_empty()),
                _ => None,
            })
    };
    if let Some(orientation) = exif
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
    {
        out.insert("orientation".into(), json!(orientation));
    }
    for (key, tag) in [
        ("captured_at", exif::Tag::DateTimeOriginal),
        ("camera_make", exif::Tag::Make),
        ("camera_model", exif::Tag::Model),
    ] {
        if let Some(value) = text(tag) {
            out.insert(key.into(), json!(value));
        }
    }
    Value::Object(out)
}
