//! From a decoded, upright, display-ready image to a stored rendition:
//! scale to fit, never up, and encode as JPEG.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, Rgb, RgbImage};

use super::{DeriveError, RENDITION_MEDIA_TYPE, Rendition, RenditionKind};

/// JPEG quality of every rendition: visually lossless for review at screen
/// size, a fraction of the original's bytes.
pub(super) const JPEG_QUALITY: u8 = 85;

/// An image JPEG can encode as it is: 8-bit grey or 8-bit RGB.
#[derive(Debug, Clone)]
pub(super) enum Displayable {
    Grey(GrayImage),
    Rgb(RgbImage),
}

impl Displayable {
    /// Narrows any decoded image to 8 bits. Grey stays grey (smaller JPEGs);
    /// transparency is composited over white, as a browser would show it.
    pub(super) fn from_dynamic(image: DynamicImage) -> Self {
        match image {
            DynamicImage::ImageLuma8(grey) => Displayable::Grey(grey),
            DynamicImage::ImageLuma16(_) => Displayable::Grey(image.to_luma8()),
            DynamicImage::ImageRgb8(rgb) => Displayable::Rgb(rgb),
            DynamicImage::ImageLumaA8(_) | DynamicImage::ImageLumaA16(_) => {
                Displayable::Grey(DynamicImage::ImageRgb8(over_white(&image)).to_luma8())
            }
            DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgb32F(_) => {
                Displayable::Rgb(image.to_rgb8())
            }
            _ => Displayable::Rgb(over_white(&image)),
        }
    }

    pub(super) fn dimensions(&self) -> (u32, u32) {
        match self {
            Displayable::Grey(grey) => grey.dimensions(),
            Displayable::Rgb(rgb) => rgb.dimensions(),
        }
    }

    /// Scales to fit within `max_side` × `max_side` (keeping the aspect
    /// ratio; never enlarging) and encodes as JPEG.
    pub(super) fn render(
        &self,
        kind: RenditionKind,
        max_side: u32,
    ) -> Result<Rendition, DeriveError> {
        let (width, height) = fit_within(self.dimensions(), max_side);
        let mut bytes = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        let encoded = match self {
            Displayable::Grey(grey) => encoder.encode_image(scaled(grey, width, height).as_ref()),
            Displayable::Rgb(rgb) => encoder.encode_image(scaled(rgb, width, height).as_ref()),
        };
        encoded
            .map_err(|e| DeriveError::invalid(format!("the rendition cannot be encoded: {e}")))?;
        Ok(Rendition {
            kind,
            bytes,
            media_type: RENDITION_MEDIA_TYPE,
            width,
            height,
        })
    }
}

/// The size of `(width, height)` scaled to fit in a `max_side` square,
/// rounded, at least 1 × 1, and never larger than it was.
pub(super) fn fit_within((width, height): (u32, u32), max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side || longest == 0 {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
        u32::try_from(scaled).unwrap_or(max_side).clamp(1, max_side)
    };
    (scale(width), scale(height))
}

fn scaled<P>(
    image: &image::ImageBuffer<P, Vec<u8>>,
    width: u32,
    height: u32,
) -> std::borrow::Cow<'_, image::ImageBuffer<P, Vec<u8>>>
where
    P: image::Pixel<Subpixel = u8> + 'static,
{
    if image.dimensions() == (width, height) {
        std::borrow::Cow::Borrowed(image)
    } else {
        // Catmull-Rom: sharp like Lanczos for downscaling, and cheaper.
        std::borrow::Cow::Owned(imageops::resize(
            image,
            width,
            height,
            FilterType::CatmullRom,
        ))
    }
}

/// Composites an image with alpha over a white background.
fn over_white(image: &DynamicImage) -> RgbImage {
    let rgba = image.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = u16::from(src.0[3]);
        let blend = |c: u8| {
            let value = (u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            u8::try_from(value).unwrap_or(u8::MAX)
        };
        *dst = Rgb([blend(src.0[0]), blend(src.0[1]), blend(src.0[2])]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_the_longest_side_and_never_upscales() {
        assert_eq!(fit_within((400, 210), 256), (256, 134));
        assert_eq!(fit_within((210, 400), 256), (134, 256));
        assert_eq!(fit_within((100, 50), 256), (100, 50));
        assert_eq!(fit_within((256, 256), 256), (256, 256));
        assert_eq!(fit_within((10_000, 1), 256), (256, 1));
    }

    #[test]
    fn transparency_becomes_white() {
        let mut rgba = image::RgbaImage::new(2, 1);
        rgba.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        rgba.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let Displayable::Rgb(rgb) = Displayable::from_dynamic(DynamicImage::ImageRgba8(rgba))
        else {
            panic!("expected RGB");
        };
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([10, 20, 30]));
    }

    #[test]
    fn renders_a_decodable_jpeg_of_the_fitted_size() {
        let grey = GrayImage::from_fn(600, 300, |x, y| image::Luma([((x + y) % 256) as u8]));
        let rendition = Displayable::Grey(grey)
            .render(RenditionKind::Thumbnail, 256)
            .expect("renders");
        assert_eq!((rendition.width, rendition.height), (256, 128));
        assert_eq!(rendition.media_type, "image/jpeg");
        let decoded = image::load_from_memory(&rendition.bytes).expect("decodes");
        assert_eq!((decoded.width(), decoded.height()), (256, 128));
    }
}
