//! One frame through the display pipeline: decode, modality LUT, VOI
//! window, 8 bits, MONOCHROME1 inverted.
//!
//! dicom-pixeldata does the decoding and the LUT arithmetic (rescale, then
//! the VOI LUT, the window with its VOI LUT Function, or a min-max
//! normalisation). Three things are done here instead: choosing the window
//! when the file has none (a per-modality default), narrowing to 8 bits
//! (the library's 8-bit option truncates, and is wrong for 16-bit samples
//! with 8 or fewer bits stored), and the MONOCHROME1 inversion, done after
//! narrowing so it is exact at any bit depth.

use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{
    ConvertOptions, DecodedPixelData, PhotometricInterpretationOption, PixelDecoder,
    VoiLutFunction, VoiLutOption, WindowLevel,
};
use image::{DynamicImage, ImageBuffer, Luma, Pixel, Rgb};

use super::layout::{Photometric, PixelLayout};
use super::{chain, codestream};
use crate::derive::DeriveError;
use crate::derive::encode::Displayable;
use crate::derive::guard::no_panic;

/// CT's default window, (center, width) in HU: soft tissue. Most CT is read
/// for soft tissue first, and HU make the same numbers right for every
/// scanner (a min-max stretch would spend the grey levels on air and metal).
pub const CT_DEFAULT_WINDOW: (f64, f64) = (40.0, 400.0);

/// The windows used when a file has neither a VOI LUT nor a window, by
/// Modality, applied with the LINEAR function. A modality not listed here is
/// stretched from its frame's minimum to its maximum (after rescale): MR,
/// NM, US… have no absolute scale for a fixed window to mean anything.
pub const DEFAULT_WINDOWS: &[(&str, (f64, f64))] = &[("CT", CT_DEFAULT_WINDOW)];

/// Decodes `frame` and renders it as 8-bit grey or RGB, ready to scale.
pub(super) fn render(
    object: &DefaultDicomObject,
    layout: &PixelLayout,
    frame: u32,
    window: Option<(f64, f64)>,
) -> Result<Displayable, DeriveError> {
    layout.check_frame(frame)?;
    codestream::check_declared_size(object, layout, frame)?;
    let custom = window.map(window_level).transpose()?;
    let image = no_panic("decoding the pixel data", || {
        let decoded = object
            .decode_pixel_data_frame(frame)
            .map_err(|e| pixel_error("decoded", &e))?;
        let options = ConvertOptions::new()
            .with_voi_lut(voi(custom, &decoded, layout)?)
            // Inverted below, after narrowing.
            .with_photometric_interpretation(PhotometricInterpretationOption::Ignore);
        // The decoded data holds only this frame: it is frame 0 there.
        decoded
            .to_dynamic_image_with_options(0, &options)
            .map_err(|e| pixel_error("converted", &e))
    })?;
    let mut display = narrow(image, layout)?;
    if let (Photometric::Monochrome1, Displayable::Grey(grey)) = (layout.photometric, &mut display)
    {
        for pixel in grey.pixels_mut() {
            pixel.0[0] = u8::MAX - pixel.0[0];
        }
    }
    Ok(display)
}

fn window_level((center, width): (f64, f64)) -> Result<WindowLevel, DeriveError> {
    if !center.is_finite() || !width.is_finite() || width <= 0.0 {
        return Err(DeriveError::invalid(format!(
            "window {center}/{width} is not a finite center with a positive width"
        )));
    }
    Ok(WindowLevel { center, width })
}

/// The VOI transform: the caller's window; else the file's own (its VOI LUT
/// or first window, which the library picks in that order); else the
/// modality's default; else the frame's min-max range.
fn voi(
    custom: Option<WindowLevel>,
    decoded: &DecodedPixelData<'_>,
    layout: &PixelLayout,
) -> Result<VoiLutOption, DeriveError> {
    if let Some(window) = custom {
        return Ok(VoiLutOption::Custom(window));
    }
    let has_own = matches!(decoded.window(), Ok(Some(w)) if !w.is_empty())
        || matches!(decoded.voi_lut_sequence(), Ok(Some(l)) if !l.is_empty());
    if has_own || layout.photometric == Photometric::Colour {
        // Colour is never windowed; the option is ignored for it.
        return Ok(VoiLutOption::First);
    }
    let default = layout.modality.as_deref().and_then(|m| {
        DEFAULT_WINDOWS
            .iter()
            .find(|(name, _)| *name == m)
            .map(|(_, window)| *window)
    });
    let (center, width) = match default {
        Some(window) => window,
        None => min_max_window(decoded)?,
    };
    Ok(VoiLutOption::CustomWithFunction(
        WindowLevel { center, width },
        VoiLutFunction::Linear,
    ))
}

/// A window spanning the frame's values after the modality LUT.
///
/// The library's own `Normalize` takes the minimum and maximum of the raw
/// samples as unsigned, so a signed frame with one negative value (the
/// JPEG 2000 fixture: -30 to 245) is stretched over 0 to 65506 and renders
/// black. Here the values come through the library's rescale LUT, which
/// reads the sign correctly.
fn min_max_window(decoded: &DecodedPixelData<'_>) -> Result<(f64, f64), DeriveError> {
    let values: Vec<f64> = decoded
        .to_vec_frame_with_options(0, &ConvertOptions::new())
        .map_err(|e| pixel_error("converted", &e))?;
    let (min, max) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if min > max {
        return Err(DeriveError::invalid("the frame has no pixel values"));
    }
    Ok(((min + max) / 2.0, max - min))
}

/// Narrows the library's output to 8 bits, rounding.
///
/// A grey 16-bit image is the VOI output, which spans 0 to 2^n − 1 where n
/// is Bits Stored rounded up to a power of two (so 16 for 12-bit CT, 8 for
/// 8 bits stored in 16). Colour skips the LUTs, so 16-bit colour spans the
/// stored bits.
fn narrow(image: DynamicImage, layout: &PixelLayout) -> Result<Displayable, DeriveError> {
    let bits = layout.bits_stored.clamp(1, 16);
    Ok(match image {
        DynamicImage::ImageLuma16(grey) => {
            let max = (1u32 << bits.next_power_of_two().min(16)) - 1;
            Displayable::Grey(scale(&grey, max)?)
        }
        DynamicImage::ImageRgb16(rgb) => Displayable::Rgb(scale(&rgb, (1u32 << bits) - 1)?),
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => {
            Displayable::from_dynamic(image)
        }
        other => {
            return Err(DeriveError::invalid(format!(
                "the decoder produced an unexpected pixel format {:?}",
                other.color()
            )));
        }
    })
}

fn scale<P>(
    image: &ImageBuffer<P, Vec<u16>>,
    max: u32,
) -> Result<ImageBuffer<P::Narrow, Vec<u8>>, DeriveError>
where
    P: Narrowable,
{
    let data = image
        .as_raw()
        .iter()
        .map(|&v| {
            let v = u32::from(v).min(max);
            u8::try_from((v * 255 + max / 2) / max).unwrap_or(u8::MAX)
        })
        .collect();
    ImageBuffer::from_raw(image.width(), image.height(), data)
        .ok_or_else(|| DeriveError::invalid("the decoded frame has the wrong number of samples"))
}

/// A 16-bit pixel type and its 8-bit counterpart.
trait Narrowable: Pixel<Subpixel = u16> {
    type Narrow: Pixel<Subpixel = u8>;
}

impl Narrowable for Luma<u16> {
    type Narrow = Luma<u8>;
}

impl Narrowable for Rgb<u16> {
    type Narrow = Rgb<u8>;
}

fn pixel_error(what: &str, error: &dicom_pixeldata::Error) -> DeriveError {
    DeriveError::invalid(format!("the pixel data cannot be {what}: {}", chain(error)))
}
