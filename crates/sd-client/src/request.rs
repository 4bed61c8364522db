//! Request bodies for the three operations: the shared [`JobBody`] with `operation` and the required fields
//! set; set the optional fields (`steps`, `seed`, `width`, ...) on the returned value.

use sd_api_types::{JobBody, OperationName};

/// Text to image (`image_generation`).
pub fn txt2img(prompt: impl Into<String>) -> JobBody {
    JobBody {
        operation: Some(OperationName::ImageGeneration),
        prompt: Some(prompt.into()),
        ..JobBody::default()
    }
}

/// Image to image (`image_transform`): `input_image` is base64 PNG/JPEG/WebP or a `data:` URL.
pub fn img2img(prompt: impl Into<String>, input_image: impl Into<String>) -> JobBody {
    JobBody {
        operation: Some(OperationName::ImageTransform),
        prompt: Some(prompt.into()),
        input_image: Some(input_image.into()),
        ..JobBody::default()
    }
}

/// Inpainting (`image_inpaint`): white mask pixels are repainted; both images base64.
pub fn inpaint(
    prompt: impl Into<String>,
    init_image: impl Into<String>,
    mask_image: impl Into<String>,
) -> JobBody {
    JobBody {
        operation: Some(OperationName::ImageInpaint),
        prompt: Some(prompt.into()),
        init_image: Some(init_image.into()),
        mask_image: Some(mask_image.into()),
        ..JobBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_set_are_sent() {
        let mut body = txt2img("a cat");
        body.steps = Some(4);
        let json = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"operation": "image_generation", "prompt": "a cat", "steps": 4})
        );
    }
}
