//! What a file is, decided from its first bytes only: the name, the
//! extension and the `Content-Type` a client sends are claims, and a file
//! whose bytes are not one of the accepted kinds is refused whatever it
//! claims to be.

use std::fmt;

/// The kinds of file accepted as materials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    Jpeg,
    Png,
    Pdf,
}

/// How each accepted kind begins (its "magic bytes").
const SIGNATURES: [(MediaType, &[u8]); 3] = [
    (MediaType::Jpeg, &[0xFF, 0xD8, 0xFF]),
    (
        MediaType::Png,
        &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
    ),
    (MediaType::Pdf, b"%PDF-"),
];

impl MediaType {
    pub const ALL: [MediaType; 3] = [MediaType::Jpeg, MediaType::Png, MediaType::Pdf];

    /// The kind `content` begins as; `None` for anything else (HTML, an
    /// executable, an archive, text, an empty or cut-off file).
    pub fn sniff(content: &[u8]) -> Option<MediaType> {
        SIGNATURES
            .iter()
            .find(|(_, signature)| content.starts_with(signature))
            .map(|(media_type, _)| *media_type)
    }

    /// The IANA media type, as `Content-Type` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Jpeg => "image/jpeg",
            MediaType::Png => "image/png",
            MediaType::Pdf => "application/pdf",
        }
    }

    /// The usual file extension, for a download's file name.
    pub fn extension(self) -> &'static str {
        match self {
            MediaType::Jpeg => "jpg",
            MediaType::Png => "png",
            MediaType::Pdf => "pdf",
        }
    }

    /// Reads back what [`MediaType::as_str`] wrote.
    pub fn parse(text: &str) -> Option<MediaType> {
        MediaType::ALL.into_iter().find(|m| m.as_str() == text)
    }

    /// For messages: `JPEG, PNG or PDF`.
    pub fn accepted() -> &'static str {
        "JPEG, PNG or PDF"
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_kinds_are_told_by_their_first_bytes() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'];
        assert_eq!(MediaType::sniff(&jpeg), Some(MediaType::Jpeg));
        let png = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];
        assert_eq!(MediaType::sniff(&png), Some(MediaType::Png));
        assert_eq!(
            MediaType::sniff(b"%PDF-1.7\n%\xE2\xE3"),
            Some(MediaType::Pdf)
        );
        // The signature alone is enough: what follows is the viewer's business.
        assert_eq!(MediaType::sniff(&[0xFF, 0xD8, 0xFF]), Some(MediaType::Jpeg));
    }

    #[test]
    fn anything_else_is_refused_whatever_it_looks_like() {
        let refused: [&[u8]; 12] = [
            b"",
            b"<!DOCTYPE html><html><body>hi</body></html>",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"\x7FELF\x02\x01\x01\x00",
            b"PK\x03\x04\x14\x00\x00\x00",
            b"MZ\x90\x00",
            b"GIF89a",
            // Cut off before the signature ends.
            &[0xFF, 0xD8],
            &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A],
            b"%PDF",
            // Not at the very start: a prefix is not ignored.
            b" %PDF-1.4",
            b"\xEF\xBB\xBF%PDF-1.4",
        ];
        for content in refused {
            assert_eq!(MediaType::sniff(content), None, "{content:?}");
        }
        // A PNG signature with its line-ending check bytes altered (as a
        // text-mode transfer does) is not a PNG.
        let mangled = [0x89, b'P', b'N', b'G', 0x0A, 0x1A, 0x0A, 0x00];
        assert_eq!(MediaType::sniff(&mangled), None);
    }

    #[test]
    fn media_types_read_back_as_written() {
        for media_type in MediaType::ALL {
            assert_eq!(MediaType::parse(media_type.as_str()), Some(media_type));
        }
        assert_eq!(MediaType::parse("image/gif"), None);
        assert_eq!(MediaType::Pdf.to_string(), "application/pdf");
    }
}
