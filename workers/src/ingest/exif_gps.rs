//! Removing the GPS block from an EXIF (TIFF) structure, in place.
//!
//! A GPS IFD is reached through an entry (tag 0x8825) of a top-level IFD:
//! normally one entry of IFD0, but readers follow such an entry in any IFD
//! of the chain (IFD1, the thumbnail's, included) and every one of them, so
//! each IFD of the chain is searched and every such entry removed. An entry
//! is taken out of its IFD (later entries move up, the count drops by one)
//! and every byte of its GPS IFD and values is zeroed. Nothing else moves,
//! so every other offset — Orientation, DateTimeOriginal, maker notes, the
//! thumbnail — stays valid. Any structure that does not add up is an error,
//! and the caller then drops the whole EXIF block instead.

const GPS_IFD_POINTER: u16 = 0x8825;

/// The EXIF block is not a TIFF structure this code can edit safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed EXIF: {0}")]
pub struct MalformedExif(&'static str);

struct Tiff<'a> {
    data: &'a mut [u8],
    little_endian: bool,
}

impl Tiff<'_> {
    fn u16_at(&self, at: usize) -> Result<u16, MalformedExif> {
        let b: [u8; 2] = self
            .data
            .get(at..at + 2)
            .and_then(|s| s.try_into().ok())
            .ok_or(MalformedExif("offset past the end"))?;
        Ok(if self.little_endian {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32_at(&self, at: usize) -> Result<u32, MalformedExif> {
        let b: [u8; 4] = self
            .data
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(MalformedExif("offset past the end"))?;
        Ok(if self.little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn put_u16(&mut self, at: usize, value: u16) -> Result<(), MalformedExif> {
        let bytes = if self.little_endian {
            value.to_le_bytes()
        } else {
            value.to_be_bytes()
        };
        self.data
            .get_mut(at..at + 2)
            .ok_or(MalformedExif("offset past the end"))?
            .copy_from_slice(&bytes);
        Ok(())
    }

    fn zero(&mut self, from: usize, len: usize) -> Result<(), MalformedExif> {
        self.data
            .get_mut(
                from..from
                    .checked_add(len)
                    .ok_or(MalformedExif("length overflows"))?,
            )
            .ok_or(MalformedExif("value past the end"))?
            .fill(0);
        Ok(())
    }
}

fn type_size(field_type: u16) -> Option<usize> {
    Some(match field_type {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 => 8,
        _ => return None,
    })
}

/// Top-level IFDs searched before the chain is called malformed (EXIF
/// readers stop at 8 as well).
const MAX_IFDS: usize = 8;

/// Removes every GPS IFD from `tiff`; returns whether there was one.
pub fn strip_gps(tiff: &mut [u8]) -> Result<bool, MalformedExif> {
    let little_endian = match tiff.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Err(MalformedExif("no TIFF byte order mark")),
    };
    let mut t = Tiff {
        data: tiff,
        little_endian,
    };
    if t.u16_at(2)? != 42 {
        return Err(MalformedExif("no TIFF magic number"));
    }
    let mut stripped = false;
    let mut seen = Vec::new();
    let mut ifd = t.u32_at(4)? as usize;
    while ifd != 0 {
        if seen.len() == MAX_IFDS || seen.contains(&ifd) {
            return Err(MalformedExif("the IFD chain is too long or loops"));
        }
        seen.push(ifd);
        // Each removal lowers the count, so this ends.
        while unlink_gps(&mut t, ifd)? {
            stripped = true;
        }
        let count = usize::from(t.u16_at(ifd)?);
        ifd = t.u32_at(ifd + 2 + 12 * count)? as usize;
    }
    Ok(stripped)
}

/// Removes the first GPS pointer of the IFD at `ifd` and zeroes the GPS
/// IFD it names; returns whether there was one.
fn unlink_gps(t: &mut Tiff<'_>, ifd: usize) -> Result<bool, MalformedExif> {
    let count = usize::from(t.u16_at(ifd)?);
    let entries = ifd + 2;
    let end = entries + 12 * count + 4; // entries, then the next-IFD offset
    if end > t.data.len() {
        return Err(MalformedExif("an IFD runs past the end"));
    }
    let Some(index) = (0..count).find(|i| t.u16_at(entries + 12 * i).ok() == Some(GPS_IFD_POINTER))
    else {
        return Ok(false);
    };
    let gps = t.u32_at(entries + 12 * index + 8)? as usize;
    zero_ifd(t, gps)?;
    // Unlink: later entries and the next-IFD offset move up one slot.
    let at = entries + 12 * index;
    t.data.copy_within(at + 12..end, at);
    t.zero(end - 12, 12)?;
    t.put_u16(
        ifd,
        u16::try_from(count - 1).map_err(|_| MalformedExif("entry count"))?,
    )?;
    Ok(true)
}

/// Zeroes an IFD's entries, next pointer and out-of-line values.
fn zero_ifd(t: &mut Tiff<'_>, ifd: usize) -> Result<(), MalformedExif> {
    let count = usize::from(t.u16_at(ifd)?);
    for i in 0..count {
        let entry = ifd + 2 + 12 * i;
        let field_type = t.u16_at(entry + 2)?;
        let n = t.u32_at(entry + 4)? as usize;
        let size = type_size(field_type)
            .and_then(|s| s.checked_mul(n))
            .ok_or(MalformedExif("unknown GPS field type"))?;
        if size > 4 {
            let value = t.u32_at(entry + 8)? as usize;
            t.zero(value, size)?;
        }
    }
    t.zero(ifd, 2 + 12 * count + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little TIFF: IFD0 with Orientation, GPS pointer, and one more tag;
    /// the GPS IFD has GPSLatitudeRef (inline) and GPSLatitude (3 rationals).
    fn sample(little_endian: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let u16b = |x: u16| {
            if little_endian {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            }
        };
        let u32b = |x: u32| {
            if little_endian {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            }
        };
        v.extend_from_slice(if little_endian { b"II" } else { b"MM" });
        v.extend_from_slice(&u16b(42));
        v.extend_from_slice(&u32b(8));
        // IFD0 at 8: 3 entries
        v.extend_from_slice(&u16b(3));
        for (tag, typ, count, value) in [
            (0x0112u16, 3u16, 1u32, 6u32),
            (0x8825, 4, 1, 50),
            (0x9999, 4, 1, 7),
        ] {
            v.extend_from_slice(&u16b(tag));
            v.extend_from_slice(&u16b(typ));
            v.extend_from_slice(&u32b(count));
            if typ == 3 {
                v.extend_from_slice(&u16b(value as u16));
                v.extend_from_slice(&[0, 0]);
            } else {
                v.extend_from_slice(&u32b(value));
            }
        }
        v.extend_from_slice(&u32b(0)); // next IFD; IFD0 ends at 8+2+36+4 = 50
        // GPS IFD at 50: 2 entries
        v.extend_from_slice(&u16b(2));
        v.extend_from_slice(&u16b(1));
        v.extend_from_slice(&u16b(2));
        v.extend_from_slice(&u32b(2));
        v.extend_from_slice(b"N\0\0\0");
        v.extend_from_slice(&u16b(2));
        v.extend_from_slice(&u16b(5));
        v.extend_from_slice(&u32b(3));
        v.extend_from_slice(&u32b(80)); // values at 50+2+24+4 = 80
        v.extend_from_slice(&u32b(0));
        for x in [47u32, 1, 22, 1, 3700, 100] {
            v.extend_from_slice(&u32b(x));
        }
        v
    }

    #[test]
    fn removes_the_gps_block_and_keeps_the_rest() {
        for le in [true, false] {
            let mut tiff = sample(le);
            let len = tiff.len();
            assert_eq!(strip_gps(&mut tiff), Ok(true));
            assert_eq!(tiff.len(), len, "nothing moves");
            let t = Tiff {
                data: &mut tiff,
                little_endian: le,
            };
            assert_eq!(t.u16_at(8), Ok(2), "one entry fewer");
            assert_eq!(t.u16_at(10), Ok(0x0112), "orientation kept first");
            assert_eq!(t.u16_at(18), Ok(6), "orientation value kept");
            assert_eq!(t.u16_at(22), Ok(0x9999), "later entry moved up");
            assert!(
                tiff[50..].iter().all(|&b| b == 0),
                "GPS IFD and values zeroed"
            );
            assert!(!tiff.windows(2).any(|w| w == b"N\0"), "latitude ref gone");
        }
    }

    /// A little-endian TIFF of `ifds` chained top-level IFDs, each a list
    /// of `(tag, type, count, inline value)` entries, then one GPS IFD (a
    /// GPSLatitudeRef) per GPS pointer, which the pointers are set to.
    fn chained(ifds: &[&[(u16, u16, u32, u32)]]) -> Vec<u8> {
        let mut v = b"II*\0\x08\0\0\0".to_vec();
        let ifd_len = |n: usize| 2 + 12 * n + 4;
        let mut at = 8 + ifds.iter().map(|e| ifd_len(e.len())).sum::<usize>();
        let mut gps_ifds = 0;
        for (i, entries) in ifds.iter().enumerate() {
            v.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            for &(tag, typ, count, value) in *entries {
                let value = if tag == GPS_IFD_POINTER {
                    gps_ifds += 1;
                    at += 18;
                    (at - 18) as u32
                } else {
                    value
                };
                v.extend_from_slice(&tag.to_le_bytes());
                v.extend_from_slice(&typ.to_le_bytes());
                v.extend_from_slice(&count.to_le_bytes());
                v.extend_from_slice(&value.to_le_bytes());
            }
            let next = if i + 1 < ifds.len() { v.len() + 4 } else { 0 };
            v.extend_from_slice(&(next as u32).to_le_bytes());
        }
        for _ in 0..gps_ifds {
            v.extend_from_slice(&1u16.to_le_bytes());
            v.extend_from_slice(&[1, 0, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]);
            v.extend_from_slice(&0u32.to_le_bytes());
        }
        v
    }

    #[test]
    fn gps_pointers_in_every_ifd_and_every_entry_are_removed() {
        const ORIENTATION: (u16, u16, u32, u32) = (0x0112, 3, 1, 6);
        const GPS: (u16, u16, u32, u32) = (GPS_IFD_POINTER, 4, 1, 0);
        for ifds in [
            &[&[ORIENTATION][..], &[GPS][..]][..],
            &[&[ORIENTATION, GPS, GPS][..]][..],
            &[&[GPS][..], &[ORIENTATION, GPS][..]][..],
        ] {
            let mut tiff = chained(ifds);
            assert_eq!(strip_gps(&mut tiff), Ok(true), "{ifds:?}");
            assert!(
                !tiff.windows(2).any(|w| w == b"N\0"),
                "{ifds:?}: a GPS IFD is left"
            );
            let exif = exif::Reader::new().read_raw(tiff).expect("still EXIF");
            assert!(
                exif.fields().all(|f| f.tag.context() != exif::Context::Gps),
                "{ifds:?}: a reader still finds GPS fields"
            );
            assert!(
                exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                    .is_some()
                    || ifds[0] == [GPS],
                "{ifds:?}: orientation kept"
            );
        }
    }

    #[test]
    fn a_looping_ifd_chain_is_an_error() {
        let mut tiff = chained(&[&[(0x0112, 3, 1, 6)]]);
        let next = tiff.len() - 4;
        tiff[next..].copy_from_slice(&8u32.to_le_bytes());
        assert!(strip_gps(&mut tiff).is_err());
    }

    #[test]
    fn no_gps_means_no_change() {
        let mut tiff = sample(true);
        strip_gps(&mut tiff).expect("stripped");
        let before = tiff.clone();
        assert_eq!(strip_gps(&mut tiff), Ok(false));
        assert_eq!(tiff, before);
    }

    #[test]
    fn malformed_structures_are_errors_not_panics() {
        let full = sample(true);
        for cut in [0, 4, 9, 30, 60, 85] {
            let mut short = full[..cut].to_vec();
            assert!(strip_gps(&mut short).is_err(), "cut at {cut}");
        }
        let mut bad = full.clone();
        bad[2] = 0;
        assert!(strip_gps(&mut bad).is_err());
    }
}
