//! An `image_url` content part → a decoded image: a base64 data URL of a known format, its bytes sniffed,
//! its size and pixel count within bounds.

use base64::Engine as _;
use serde_json::Value;

use super::limits::{MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS};
use crate::api::chat::ContentPart;
use crate::engine::ImageInput;
use crate::error::ValidationError;

/// The media type an image's first bytes announce.
pub(crate) fn sniffed_media_type(data: &[u8]) -> Option<&'static str> {
    match data {
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some("image/webp"),
        _ => None,
    }
}

/// Decodes an `image_url` part: a base64 PNG, JPEG, WebP or GIF data URL within the size bound, whose
/// bytes are what its media type says. Remote URLs are refused: the server fetches nothing on a client's
/// behalf.
pub(super) fn image_part(
    index: usize,
    part_index: usize,
    part: &ContentPart,
) -> Result<ImageInput, ValidationError> {
    let at = format!("messages[{index}].content[{part_index}]");
    let url = part
        .image_url
        .as_ref()
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ValidationError::invalid("messages", format!("`{at}.image_url.url` is required"))
        })?;
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ValidationError::invalid(
            "messages",
            format!("`{at}`: remote image URLs are not fetched by this server (unless started with --allow-remote-images); send the image as a base64 data URL"),
        ));
    }
    let (media, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .ok_or_else(|| {
            ValidationError::invalid(
                "messages",
                format!("`{at}.image_url.url` must be a `data:image/…;base64,…` URL"),
            )
        })?;
    if !matches!(
        media,
        "image/png" | "image/jpeg" | "image/jpg" | "image/webp" | "image/gif"
    ) {
        return Err(ValidationError::invalid(
            "messages",
            format!("`{at}`: images must be PNG, JPEG, WebP or GIF, got `{media}`"),
        ));
    }
    // Checked before decoding, so that an oversized image costs no allocation.
    let bytes = data.len() / 4 * 3;
    if bytes > MAX_IMAGE_BYTES {
        return Err(ValidationError::invalid(
            "messages",
            format!("`{at}`: the image is {bytes} bytes; the limit is {MAX_IMAGE_BYTES}"),
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ValidationError::invalid(
                "messages",
                format!("`{at}`: the image data is not valid base64"),
            )
        })?;
    let declared = if media == "image/jpg" {
        "image/jpeg"
    } else {
        media
    };
    if sniffed_media_type(&decoded) != Some(declared) {
        return Err(ValidationError::invalid(
            "messages",
            format!("`{at}`: the data is not a {declared} image"),
        ));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&decoded));
    reader.set_format(
        image::ImageFormat::from_mime_type(declared).unwrap_or(image::ImageFormat::Png),
    );
    // Only the header is read here; the pixel bound below is the limit, with a clearer message.
    reader.no_limits();
    let (width, height) = reader.into_dimensions().ok().ok_or_else(|| {
        ValidationError::invalid(
            "messages",
            format!("`{at}`: the {declared} image's header cannot be read"),
        )
    })?;
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(ValidationError::invalid(
            "messages",
            format!("`{at}`: the image is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels"),
        ));
    }
    Ok(ImageInput::new(declared.to_string(), decoded))
}
