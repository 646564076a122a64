//! Images that a model sizes by pixel count (GLM-4.1V and AutoGLM-Phone-9B): each is resized to multiples of
//! 28 within `[min_pixels, max_pixels]` and becomes `t·h·w / 4` image tokens, so a 1080 × 2400 screenshot
//! takes ~3,100 tokens. Our layer needs that number before the engine runs (the context check and the token
//! budget), and applies `--max-image-pixels` (vLLM's `max_pixels`) by resizing each image to exactly the size
//! the model's processor computes for that limit, with the processor's own resampler: the processor then
//! finds the image at its target size and leaves it untouched, as if it had been given the limit itself.

use std::io::Cursor;
use std::path::Path;

use mistralrs::core::glm4v::ImageSettings;

use crate::engine::{EngineError, ImageInput, Prompt};

/// The placeholder the chat template writes once per image, which the engine expands.
pub(super) const PLACEHOLDER: &str = "<|image|>";
/// Tokens of the processor that marks a model as sizing images this way.
const MARKERS: [&str; 3] = ["<|begin_of_image|>", PLACEHOLDER, "<|end_of_image|>"];

#[derive(Debug, Clone)]
pub(super) struct PixelSizedImages {
    settings: ImageSettings,
    placeholder: u32,
}

impl PixelSizedImages {
    /// `Some` for a model whose processor uses GLM's image tokens. `preprocessor` is the checkpoint's
    /// `preprocessor_config.json` when it can be found; `max_pixels` only lowers its limit.
    pub(super) fn detect(
        processor_tokens: &[&str],
        placeholder: Option<u32>,
        preprocessor: Option<&str>,
        max_pixels: Option<u64>,
    ) -> Result<Option<Self>, EngineError> {
        if !MARKERS.iter().all(|m| processor_tokens.contains(m)) {
            return Ok(None);
        }
        let placeholder = placeholder.ok_or_else(|| {
            EngineError::Load(format!("the tokenizer has no `{PLACEHOLDER}` token"))
        })?;
        let mut settings = match preprocessor {
            Some(json) => ImageSettings::from_preprocessor_json(json)
                .map_err(|e| EngineError::Load(format!("preprocessor_config.json: {e}")))?,
            None => ImageSettings::default(),
        };
        if let Some(max) = max_pixels {
            settings.max_pixels = settings
                .max_pixels
                .min(usize::try_from(max).unwrap_or(usize::MAX));
        }
        if settings.max_pixels < settings.min_pixels {
            settings.min_pixels = settings.max_pixels;
        }
        Ok(Some(Self {
            settings,
            placeholder,
        }))
    }

    /// The checkpoint's `preprocessor_config.json`: in a local directory, or in the hub cache's snapshot.
    pub(super) fn preprocessor_json(model_id: &str) -> Option<String> {
        let local = Path::new(model_id).join("preprocessor_config.json");
        if let Ok(json) = std::fs::read_to_string(&local) {
            return Some(json);
        }
        let repo = format!("models--{}", model_id.replace('/', "--"));
        let snapshots = mistralrs::core::hf_hub_cache_dir()?
            .join(repo)
            .join("snapshots");
        std::fs::read_dir(snapshots)
            .ok()?
            .flatten()
            .find_map(|snapshot| {
                std::fs::read_to_string(snapshot.path().join("preprocessor_config.json")).ok()
            })
    }

    /// The size (height, width) an image is run at.
    fn target(&self, image: &ImageInput) -> Result<(u32, u32), EngineError> {
        let (width, height) = image::ImageReader::new(Cursor::new(&image.data))
            .with_guessed_format()
            .map_err(|e| EngineError::Rejected(format!("the image could not be read: {e}")))?
            .into_dimensions()
            .map_err(|e| EngineError::Rejected(format!("the image could not be read: {e}")))?;
        self.settings
            .target_size(height, width)
            .map_err(|e| EngineError::Rejected(format!("the image cannot be served: {e}")))
    }

    /// Image tokens an image becomes.
    pub(super) fn tokens(&self, image: &ImageInput) -> Result<usize, EngineError> {
        let (h, w) = self.target(image)?;
        let p = self.settings.patch_size as u32;
        Ok(self.settings.tokens_for([1, h / p, w / p]))
    }

    /// The prompt's tokens as the engine runs them: each placeholder the template wrote becomes its image's
    /// run of image tokens.
    pub(super) fn expand(
        &self,
        tokens: Vec<u32>,
        prompt: &Prompt,
    ) -> Result<Vec<u32>, EngineError> {
        let Prompt::Chat(messages) = prompt else {
            return Ok(tokens);
        };
        let counts = messages
            .iter()
            .flat_map(|m| &m.images)
            .map(|image| self.tokens(image))
            .collect::<Result<Vec<_>, _>>()?;
        let placeholders = tokens.iter().filter(|&&t| t == self.placeholder).count();
        if placeholders != counts.len() {
            return Err(EngineError::Rejected(format!(
                "the prompt holds {placeholders} image placeholders for {} images: `{PLACEHOLDER}` may not \
                 appear in message text",
                counts.len()
            )));
        }
        let mut counts = counts.into_iter();
        let mut expanded = Vec::with_capacity(tokens.len());
        for token in tokens {
            if token == self.placeholder {
                let n = counts.next().unwrap_or(1);
                expanded.extend(std::iter::repeat_n(token, n));
            } else {
                expanded.push(token);
            }
        }
        Ok(expanded)
    }

    /// The image at the size the model runs it at (resized only when `--max-image-pixels` lowered the limit
    /// below what the processor would use; otherwise the processor resizes it the same way).
    pub(super) fn fit(
        &self,
        image: image::DynamicImage,
    ) -> Result<image::DynamicImage, EngineError> {
        let rgb = self
            .settings
            .resize(&image)
            .map_err(|e| EngineError::Rejected(format!("the image cannot be served: {e}")))?;
        Ok(image::DynamicImage::ImageRgb8(rgb))
    }
}

/// One GLM-4.1V vision block of the given width with random weights, run on the CPU over `grid`'s patches
/// (random activations, real rotary positions): what `bench/glm4v_vision_memory.rs` measures the peak memory
/// of, to show that the attention never holds an image's whole score matrix.
pub fn run_random_vision_block(
    hidden_size: usize,
    num_heads: usize,
    out_hidden_size: usize,
    grid: [u32; 3],
) -> Result<(), EngineError> {
    mistralrs::core::glm4v::run_random_vision_block(
        hidden_size,
        num_heads,
        out_hidden_size,
        grid,
        &candle_core::Device::Cpu,
    )
    .map(drop)
    .map_err(|e| EngineError::Internal(format!("{e:#}")))
}
