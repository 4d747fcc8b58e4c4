//! What the bytes are, from their first bytes — never from a name or a
//! header the client chose.

use crate::model::MediaType;

/// The type the first bytes of an upload show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Media(MediaType),
    /// An ISO-BMFF image (HEIC, HEIF, AVIF): recognised, not yet accepted.
    Heif,
    Unknown,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const HEIF_BRANDS: [&[u8]; 9] = [
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif",
];

/// How many leading bytes [`sniff`] needs.
pub const SNIFF_LEN: usize = 132;

pub fn sniff(head: &[u8]) -> Sniffed {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Sniffed::Media(MediaType::Jpeg)
    } else if head.starts_with(PNG_SIGNATURE) {
        Sniffed::Media(MediaType::Png)
    } else if head.len() >= SNIFF_LEN && &head[128..132] == b"DICM" {
        Sniffed::Media(MediaType::Dicom)
    } else if head.len() >= 12 && &head[4..8] == b"ftyp" && HEIF_BRANDS.contains(&&head[8..12]) {
        Sniffed::Heif
    } else {
        Sniffed::Unknown
    }
}

/// The kind of executable whose header sits in a DICOM preamble, if any.
/// A preamble may legitimately hold a TIFF header (dual-personality files)
/// or zeros; a program header makes the file a polyglot that an unwary
/// workstation could run.
pub fn executable_preamble(preamble: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 8] = [
        (b"MZ", "Windows PE"),
        (b"\x7fELF", "ELF"),
        (&[0xFE, 0xED, 0xFA, 0xCE], "Mach-O"),
        (&[0xFE, 0xED, 0xFA, 0xCF], "Mach-O"),
        (&[0xCE, 0xFA, 0xED, 0xFE], "Mach-O"),
        (&[0xCF, 0xFA, 0xED, 0xFE], "Mach-O"),
        (&[0xCA, 0xFE, 0xBA, 0xBE], "Mach-O universal"),
        (b"#!", "script"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| preamble.starts_with(magic))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dicom_with_preamble(preamble: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 128];
        bytes[..preamble.len()].copy_from_slice(preamble);
        bytes.extend_from_slice(b"DICM");
        bytes
    }

    #[test]
    fn recognises_each_signature() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE1]),
            Sniffed::Media(MediaType::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n...."),
            Sniffed::Media(MediaType::Png)
        );
        assert_eq!(
            sniff(&dicom_with_preamble(b"")),
            Sniffed::Media(MediaType::Dicom)
        );
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Sniffed::Heif);
        assert_eq!(sniff(b"hello world"), Sniffed::Unknown);
        assert_eq!(sniff(b""), Sniffed::Unknown);
        assert_eq!(sniff(b"\0\0\0\x18ftypisom\0\0\0\0"), Sniffed::Unknown);
    }

    #[test]
    fn executable_preambles_are_named_and_tiff_is_not() {
        assert_eq!(
            executable_preamble(&dicom_with_preamble(b"MZ\x90\0")[..128]),
            Some("Windows PE")
        );
        assert_eq!(
            executable_preamble(&dicom_with_preamble(b"\x7fELF\x02")[..128]),
            Some("ELF")
        );
        assert_eq!(
            executable_preamble(&dicom_with_preamble(b"II*\0")[..128]),
            None
        );
        assert_eq!(executable_preamble(&[0u8; 128]), None);
    }
}
