//! Putting the infotext into image files the way A1111 does, and reading it back.
//!
//! PNG: a `parameters` text chunk, `tEXt` when the text is Latin-1 and uncompressed `iTXt` otherwise (what
//! Pillow's `PngInfo.add_text` picks). JPEG and WebP: an EXIF block whose only entry is `UserComment` holding
//! `UNICODE\0` + UTF-16BE text (what A1111 writes through `piexif`).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// The PNG text keyword A1111 uses.
pub const PARAMETERS_KEY: &str = "parameters";

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
const USER_COMMENT_TAG: u16 = 0x9286;
const EXIF_IFD_POINTER_TAG: u16 = 0x8769;
const UNICODE_PREFIX: &[u8; 8] = b"UNICODE\0";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot encode {format}: {source}")]
    Encode {
        format: &'static str,
        source: image::ImageError,
    },
    #[error("not a PNG file")]
    NotPng,
    #[error("the text is too long for a PNG chunk")]
    TooLong,
    #[error("the {0} encoder cannot write EXIF")]
    NoExif(&'static str),
}

/// Output formats with metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    /// Quality 1..=100.
    Jpeg(u8),
    /// Lossless (the only WebP the encoder writes).
    Webp,
}

impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg(_) => "image/jpeg",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Jpeg(_) => "jpeg",
            Self::Webp => "webp",
        }
    }
}

/// Encodes `image` as `format`, carrying `parameters` when given.
pub fn encode_image(
    image: &RgbImage,
    format: ImageFormat,
    parameters: Option<&str>,
) -> Result<Vec<u8>, MetadataError> {
    match format {
        ImageFormat::Png => encode_png(image, parameters),
        ImageFormat::Jpeg(quality) => {
            let mut out = Vec::new();
            let mut encoder = JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100));
            if let Some(text) = parameters {
                // The encoder adds the `Exif\0\0` header itself.
                encoder
                    .set_exif_metadata(exif_user_comment(text))
                    .map_err(|_| MetadataError::NoExif("JPEG"))?;
            }
            write(encoder, image, "JPEG")?;
            Ok(out)
        }
        ImageFormat::Webp => {
            let mut out = Vec::new();
            let mut encoder = WebPEncoder::new_lossless(&mut out);
            if let Some(text) = parameters {
                encoder
                    .set_exif_metadata(exif_user_comment(text))
                    .map_err(|_| MetadataError::NoExif("WebP"))?;
            }
            write(encoder, image, "WebP")?;
            Ok(out)
        }
    }
}

fn write(
    encoder: impl ImageEncoder,
    image: &RgbImage,
    format: &'static str,
) -> Result<(), MetadataError> {
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|source| MetadataError::Encode { format, source })
}

/// A PNG of `image` with a `parameters` chunk when given.
pub fn encode_png(image: &RgbImage, parameters: Option<&str>) -> Result<Vec<u8>, MetadataError> {
    let mut png = Vec::new();
    write(PngEncoder::new(Cursor::new(&mut png)), image, "PNG")?;
    match parameters {
        Some(text) => with_png_text(&png, PARAMETERS_KEY, text),
        None => Ok(png),
    }
}

/// `png` with a text chunk `key` = `text` inserted right after the header chunk (before the image data, where
/// readers that stop at the first `IDAT` still find it).
pub fn with_png_text(png: &[u8], key: &str, text: &str) -> Result<Vec<u8>, MetadataError> {
    let chunks_start = PNG_SIGNATURE.len();
    if !png.starts_with(PNG_SIGNATURE)
        || png.get(chunks_start + 4..chunks_start + 8) != Some(b"IHDR")
    {
        return Err(MetadataError::NotPng);
    }
    let header_length = read_u32(png, chunks_start).ok_or(MetadataError::NotPng)? as usize;
    let after_header = chunks_start + 12 + header_length;
    if after_header > png.len() {
        return Err(MetadataError::NotPng);
    }
    let (kind, data) = text_chunk(key, text);
    let length = u32::try_from(data.len()).map_err(|_| MetadataError::TooLong)?;
    let mut out = Vec::with_capacity(png.len() + data.len() + 12);
    out.extend_from_slice(&png[..after_header]);
    out.extend_from_slice(&length.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(&data);
    out.extend_from_slice(kind);
    out.extend_from_slice(&data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out.extend_from_slice(&png[after_header..]);
    Ok(out)
}

/// `png` with its text chunks named `key` replaced by one holding `text`.
pub fn replace_png_text(png: &[u8], key: &str, text: &str) -> Result<Vec<u8>, MetadataError> {
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(MetadataError::NotPng);
    }
    let mut kept = PNG_SIGNATURE.to_vec();
    let mut at = PNG_SIGNATURE.len();
    while at + 12 <= png.len() {
        let length = read_u32(png, at).ok_or(MetadataError::NotPng)? as usize;
        let end = at + 12 + length;
        let chunk = png.get(at..end).ok_or(MetadataError::NotPng)?;
        let kind = &chunk[4..8];
        let data = &chunk[8..8 + length];
        let is_text = matches!(kind, b"tEXt" | b"iTXt" | b"zTXt");
        let named_key = data
            .iter()
            .position(|&byte| byte == 0)
            .is_some_and(|end| &data[..end] == key.as_bytes());
        if !(is_text && named_key) {
            kept.extend_from_slice(chunk);
        }
        at = end;
    }
    with_png_text(&kept, key, text)
}

/// `tEXt` (Latin-1) when every character fits, else uncompressed `iTXt` (UTF-8), as Pillow chooses.
fn text_chunk(key: &str, text: &str) -> (&'static [u8; 4], Vec<u8>) {
    let latin1: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
    let mut data = key.as_bytes().to_vec();
    data.push(0);
    match latin1 {
        Some(bytes) => {
            data.extend_from_slice(&bytes);
            (b"tEXt", data)
        }
        None => {
            // compression flag, compression method, empty language tag, empty translated keyword.
            data.extend_from_slice(&[0, 0, 0, 0]);
            data.extend_from_slice(text.as_bytes());
            (b"iTXt", data)
        }
    }
}

/// The text of the first `tEXt`/`iTXt` chunk named `key` (uncompressed only; we never compress).
pub fn png_text(png: &[u8], key: &str) -> Option<String> {
    if !png.starts_with(PNG_SIGNATURE) {
        return None;
    }
    let mut at = PNG_SIGNATURE.len();
    while at + 8 <= png.len() {
        let length = read_u32(png, at)? as usize;
        let kind = png.get(at + 4..at + 8)?;
        let data = png.get(at + 8..at + 8 + length)?;
        if kind == b"IEND" {
            return None;
        }
        let keyword_end = data.iter().position(|&byte| byte == 0);
        if let Some(end) = keyword_end.filter(|&end| &data[..end] == key.as_bytes()) {
            let rest = &data[end + 1..];
            match kind {
                b"tEXt" => return Some(rest.iter().map(|&byte| char::from(byte)).collect()),
                b"iTXt" if rest.first() == Some(&0) => {
                    // Skip compression flag and method, then the language tag and translated keyword.
                    let mut fields = rest.get(2..)?.splitn(3, |&byte| byte == 0);
                    let _language = fields.next()?;
                    let _translated = fields.next()?;
                    return String::from_utf8(fields.next()?.to_vec()).ok();
                }
                _ => {}
            }
        }
        at += 12 + length;
    }
    None
}

/// A1111's `parameters` text from a PNG, JPEG or WebP file.
pub fn read_parameters(file: &[u8]) -> Option<String> {
    if file.starts_with(PNG_SIGNATURE) {
        return png_text(file, PARAMETERS_KEY);
    }
    let exif = if file.starts_with(&[0xff, 0xd8]) {
        jpeg_exif(file)?
    } else if file.starts_with(b"RIFF") && file.get(8..12) == Some(b"WEBP") {
        webp_exif(file)?
    } else {
        return None;
    };
    read_user_comment(exif)
}

/// A big-endian TIFF block with IFD0 -> Exif IFD -> `UserComment` (`UNICODE\0` + UTF-16BE), byte for byte
/// what `piexif.dump` writes for A1111 (which leaves out the Exif IFD's next-IFD link; readers accept it).
pub fn exif_user_comment(text: &str) -> Vec<u8> {
    let mut comment = UNICODE_PREFIX.to_vec();
    for unit in text.encode_utf16() {
        comment.extend_from_slice(&unit.to_be_bytes());
    }
    let comment_length = u32::try_from(comment.len()).unwrap_or(u32::MAX);
    // Header (8) + IFD0 with one entry and its next-IFD link (2 + 12 + 4) + Exif IFD with one entry (2 + 12).
    let exif_ifd_offset: u32 = 8 + 18;
    let comment_offset: u32 = exif_ifd_offset + 14;
    let mut tiff = Vec::with_capacity(comment_offset as usize + comment.len());
    tiff.extend_from_slice(b"MM\0\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes());
    ifd_with_one_entry(&mut tiff, EXIF_IFD_POINTER_TAG, 4, 1, exif_ifd_offset);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    ifd_with_one_entry(
        &mut tiff,
        USER_COMMENT_TAG,
        7,
        comment_length,
        comment_offset,
    );
    tiff.extend_from_slice(&comment);
    tiff
}

fn ifd_with_one_entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32) {
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

/// The `UserComment` of a TIFF/EXIF block (either byte order, with or without the `Exif\0\0` header).
pub fn read_user_comment(exif: &[u8]) -> Option<String> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big_endian = match tiff.get(..4)? {
        b"MM\0\x2a" => true,
        b"II\x2a\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let bytes: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let bytes: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let find = |ifd: usize, wanted: u16| -> Option<(u32, u32)> {
        let count = usize::from(u16_at(ifd)?);
        (0..count).find_map(|index| {
            let entry = ifd + 2 + 12 * index;
            (u16_at(entry)? == wanted).then_some((u32_at(entry + 4)?, u32_at(entry + 8)?))
        })
    };
    let ifd0 = u32_at(4)? as usize;
    let (_, exif_ifd) = find(ifd0, EXIF_IFD_POINTER_TAG)?;
    let (length, offset) = find(exif_ifd as usize, USER_COMMENT_TAG)?;
    let comment = tiff.get(offset as usize..offset as usize + length as usize)?;
    let (prefix, body) = comment.split_at_checked(8)?;
    match prefix {
        b"UNICODE\0" => {
            let units: Vec<u16> = body
                .chunks_exact(2)
                .map(|pair| {
                    let bytes = [pair[0], pair[1]];
                    if big_endian {
                        u16::from_be_bytes(bytes)
                    } else {
                        u16::from_le_bytes(bytes)
                    }
                })
                .collect();
            String::from_utf16(&units).ok()
        }
        b"ASCII\0\0\0" | b"\0\0\0\0\0\0\0\0" => {
            Some(String::from_utf8_lossy(body).trim_end_matches('\0').into())
        }
        _ => None,
    }
}

fn jpeg_exif(jpeg: &[u8]) -> Option<&[u8]> {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xff {
        let marker = jpeg[at + 1];
        if marker == 0xda {
            return None;
        }
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let segment = jpeg.get(at + 4..at + 2 + length)?;
        if marker == 0xe1 && segment.starts_with(b"Exif\0\0") {
            return Some(segment);
        }
        at += 2 + length;
    }
    None
}

fn webp_exif(webp: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    while at + 8 <= webp.len() {
        let length = u32::from_le_bytes(webp.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        let data = webp.get(at + 8..at + 8 + length)?;
        if &webp[at..at + 4] == b"EXIF" {
            return Some(data);
        }
        at += 8 + length + (length & 1);
    }
    None
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn picture() -> RgbImage {
        RgbImage::from_fn(16, 8, |x, y| image::Rgb([x as u8 * 16, y as u8 * 32, 7]))
    }

    const LATIN1: &str = "a café\nNegative prompt: ugly\nSteps: 20, Sampler: Euler a, Seed: 1";
    const UNICODE: &str = "猫, 🐱\nSteps: 20, Sampler: Euler a, Seed: 1";

    #[test]
    fn png_carries_parameters_in_text_chunks_and_still_decodes() {
        for (text, kind) in [(LATIN1, &b"tEXt"[..]), (UNICODE, &b"iTXt"[..])] {
            let png = encode_png(&picture(), Some(text)).unwrap();
            assert_eq!(&png[33 + 4..33 + 8], kind);
            assert_eq!(png_text(&png, "parameters").as_deref(), Some(text));
            assert_eq!(read_parameters(&png).as_deref(), Some(text));
            let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
            assert_eq!(decoded, picture());
        }
        let plain = encode_png(&picture(), None).unwrap();
        assert_eq!(read_parameters(&plain), None);
    }

    #[test]
    fn latin1_text_is_stored_as_latin1_bytes() {
        let png = encode_png(&picture(), Some("café")).unwrap();
        let needle = b"parameters\0caf\xe9";
        assert!(png.windows(needle.len()).any(|window| window == needle));
    }

    #[test]
    fn png_chunk_crc_is_valid() {
        let png = encode_png(&picture(), Some(LATIN1)).unwrap();
        let length = read_u32(&png, 33).unwrap() as usize;
        let stored = read_u32(&png, 33 + 8 + length).unwrap();
        assert_eq!(stored, crc32fast::hash(&png[33 + 4..33 + 8 + length]));
    }

    #[test]
    fn exif_user_comment_matches_piexif_layout() {
        // piexif.dump({"Exif": {UserComment: UserComment.dump("Hi", encoding="unicode")}}) minus "Exif\0\0".
        let piexif =
            "4d4d002a00000008000187690004000000010000001a000000000001928600070000000c00000028\
                      554e49434f44450000480069";
        let expected: Vec<u8> = (0..piexif.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&piexif[at..at + 2], 16).unwrap())
            .collect();
        let tiff = exif_user_comment("Hi");
        assert_eq!(tiff, expected);
        assert_eq!(read_user_comment(&tiff).as_deref(), Some("Hi"));
    }

    #[test]
    fn jpeg_and_webp_carry_parameters_in_exif() {
        for format in [ImageFormat::Jpeg(90), ImageFormat::Webp] {
            for text in [LATIN1, UNICODE] {
                let file = encode_image(&picture(), format, Some(text)).unwrap();
                assert_eq!(read_parameters(&file).as_deref(), Some(text), "{format:?}");
                let decoded = image::load_from_memory(&file).unwrap();
                assert_eq!((decoded.width(), decoded.height()), (16, 8));
            }
        }
        let webp = encode_image(&picture(), ImageFormat::Webp, None).unwrap();
        assert_eq!(read_parameters(&webp), None);
    }

    #[test]
    fn replacing_text_leaves_one_chunk() {
        let png = encode_png(&picture(), Some("old")).unwrap();
        let replaced = replace_png_text(&png, "parameters", "new, text").unwrap();
        assert_eq!(
            png_text(&replaced, "parameters").as_deref(),
            Some("new, text")
        );
        let needle = b"parameters\0";
        let count = replaced
            .windows(needle.len())
            .filter(|window| window == needle)
            .count();
        assert_eq!(count, 1);
        assert_eq!(
            image::load_from_memory(&replaced).unwrap().to_rgb8(),
            picture()
        );
    }

    #[test]
    fn not_a_png_is_refused() {
        assert!(matches!(
            with_png_text(b"GIF89a", "parameters", "x"),
            Err(MetadataError::NotPng)
        ));
        assert_eq!(read_parameters(b"nonsense"), None);
    }
}
