//! The image size a compressed frame declares, checked against the object's
//! Rows and Columns before the codec sees it.
//!
//! The pixel limit is checked on Rows × Columns, but the JPEG and JPEG 2000
//! decoders size their buffers from the codestream's own header (SOF, SIZ),
//! with no limit of their own as dicom-pixeldata calls them. A forged header
//! declaring 65535 × 65535 inside a 16 × 16 object would allocate gigabytes
//! before failing. So the header is read here, from the frame's first
//! fragment, and a frame larger than the object says is refused. A header
//! that cannot be found is left to the decoder, whose buffers are then
//! bounded by the object's attributes.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::layout::PixelLayout;
use crate::derive::DeriveError;

/// Refuses a compressed `frame` whose codestream declares more columns or
/// rows than the object has. Native pixel data passes.
pub(super) fn check_declared_size(
    object: &DefaultDicomObject,
    layout: &PixelLayout,
    frame: u32,
) -> Result<(), DeriveError> {
    let Some(fragments) = object
        .element(tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.fragments())
    else {
        return Ok(());
    };
    // One fragment per frame, or a single-frame object: the frame starts
    // at a known fragment. Otherwise (frames split over fragments) the
    // offset table would be needed; leave it to the decoder.
    let first = if fragments.len() == layout.frames as usize {
        fragments.get(frame as usize)
    } else if frame == 0 {
        fragments.first()
    } else {
        None
    };
    let Some((width, height)) = first.and_then(|f| declared_size(f)) else {
        return Ok(());
    };
    if width > layout.columns || height > layout.rows {
        return Err(DeriveError::invalid(format!(
            "frame {frame}'s compressed data declares {width}×{height} pixels, \
             but the object has {}×{}",
            layout.columns, layout.rows
        )));
    }
    Ok(())
}

/// (width, height) from a JPEG SOF or a JPEG 2000 SIZ marker segment.
fn declared_size(data: &[u8]) -> Option<(u32, u32)> {
    match data {
        [0xFF, 0xD8, ..] => jpeg_size(data),
        [0xFF, 0x4F, 0xFF, 0x51, ..] => j2k_size(data),
        // A JP2 file (box format) around the codestream.
        [0, 0, 0, 0x0C, b'j', b'P', b' ', b' ', ..] => {
            let start = data
                .windows(4)
                .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])?;
            j2k_size(&data[start..])
        }
        _ => None,
    }
}

/// Walks JPEG marker segments from SOI to the first SOFn (ITU T.81 B.2).
fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *data.get(at)? == 0xFF && *data.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *data.get(at)? != 0xFF {
            return None;
        }
        let marker = *data.get(at + 1)?;
        at += 2;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD8 => continue,
            // SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                // Lf(2) P(1) Y(2) X(2)
                let height = be16(data, at + 3)?;
                let width = be16(data, at + 5)?;
                return Some((u32::from(width), u32::from(height)));
            }
            // Start of scan or end of image before any frame header.
            0xDA | 0xD9 => return None,
            _ => at += usize::from(be16(data, at)?),
        }
    }
}

/// Reads SIZ, which must directly follow SOC (ITU T.800 A.5.1).
fn j2k_size(data: &[u8]) -> Option<(u32, u32)> {
    // SOC(2) SIZ(2) Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4)
    let x = be32(data, 8)?;
    let y = be32(data, 12)?;
    let x_offset = be32(data, 16)?;
    let y_offset = be32(data, 20)?;
    Some((x.checked_sub(x_offset)?, y.checked_sub(y_offset)?))
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jpeg_frame_header_after_other_segments() {
        let jpeg = [
            0xFF, 0xD8, // SOI
            0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, // APP0, 2 bytes of payload
            0xFF, 0xFF, 0xC3, 0x00, 0x0B, 0x10, 0x02, 0x00, 0x01, 0x80, 0x01, // fill, SOF3
        ];
        assert_eq!(declared_size(&jpeg), Some((384, 512)));
    }

    #[test]
    fn a_scan_before_a_frame_header_or_truncation_says_nothing() {
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]), None);
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
        assert_eq!(
            declared_size(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08]),
            None
        );
        assert_eq!(declared_size(b"not a codestream"), None);
        assert_eq!(declared_size(&[]), None);
    }

    #[test]
    fn reads_a_jpeg_2000_size_with_its_offsets() {
        let mut j2k = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        for value in [300u32, 200, 44, 0] {
            j2k.extend_from_slice(&value.to_be_bytes());
        }
        assert_eq!(declared_size(&j2k), Some((256, 200)));
    }
}
