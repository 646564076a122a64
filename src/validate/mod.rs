//! Wire requests → validated requests: defaults applied, bounds checked, unsupported features refused.
//!
//! Messages name the field, the bound and the value, so that a client can fix its request from the text.
//! [`model`] has the checks that need the resolved model.

pub mod embedding;
pub mod model;

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::api::chat::{ChatCompletionRequest, ChatMessage, ContentPart, MessageContent};
use crate::api::common::StopSequences;
use crate::api::completions::{CompletionRequest, PromptInput};
use base64::Engine as _;

use crate::engine::{ImageInput, OutputConstraint, PromptMessage, Role, Sampling};
use crate::error::ValidationError;
pub use crate::generation::request::ValidatedGeneration;
use crate::tools::{self, ToolSetup};

/// OpenAI allows at most 4 stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Legacy completions generate 16 tokens when `max_tokens` is absent (OpenAI's default).
pub const DEFAULT_COMPLETION_MAX_TOKENS: usize = 16;
/// Prompts one completions request may carry (each becomes its own choice).
pub const MAX_PROMPTS_PER_REQUEST: usize = 64;
/// Sequences one request may generate: prompts × `n` (or × `best_of`).
pub const MAX_SEQUENCES_PER_REQUEST: usize = 64;
/// OpenAI's bounds: `top_logprobs` for chat, `logprobs` for completions, entries of `logit_bias`.
pub const MAX_TOP_LOGPROBS: i64 = 20;
pub const MAX_COMPLETION_LOGPROBS: i64 = 5;
pub const MAX_LOGIT_BIAS_ENTRIES: usize = 300;
/// Images any request may carry, before its model is known (each model's own limit, `--max-images`, is at
/// most this), and bytes per decoded image.
pub const MAX_IMAGES: usize = crate::engine::settings::MAX_IMAGES_PER_REQUEST;
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// Pixels per image, read from its header before anything is decoded: a small file can announce a huge
/// canvas (a decompression bomb), and a 4096×4096 RGBA image already takes 64 MiB.
pub const MAX_IMAGE_PIXELS: u64 = 4096 * 4096;

/// A chat request after validation: defaults filled in, bounds checked, content parts turned into prompt
/// messages with their images decoded, tools turned into the prompt text and grammar that serve them.
/// What the generation core accepts; nothing after this point re-reads the wire request.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedChat {
    pub generation: ValidatedGeneration,
    pub messages: Vec<PromptMessage>,
    pub tools: Option<ToolSetup>,
}

impl ValidatedChat {
    /// Whether any message carries an image (served only by vision models).
    pub fn has_images(&self) -> bool {
        self.messages.iter().any(|m| !m.images.is_empty())
    }

    /// Images over all messages (each model takes at most its `--max-images`).
    pub fn image_count(&self) -> usize {
        self.messages.iter().map(|m| m.images.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCompletion {
    pub generation: ValidatedGeneration,
    pub prompts: Vec<String>,
    pub echo: bool,
    /// Text after the insertion point (fill in the middle).
    pub suffix: Option<String>,
}

fn range_f64(
    param: &'static str,
    value: Option<f64>,
    min: f64,
    max: f64,
) -> Result<Option<f64>, ValidationError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(ValidationError::invalid(
            param,
            format!("`{param}` must be between {min} and {max}, got {v}"),
        )),
        other => Ok(other),
    }
}

/// The parameters chat and completions share, in one place.
///
/// The wire types repeat these fields rather than `#[serde(flatten)]` one struct: through a flattened
/// struct serde_path_to_error loses the field's name, and a type error (`"temperature": "hot"`) would no
/// longer say `param: "temperature"`.
struct CommonParams {
    model: Option<String>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    repetition_penalty: Option<f64>,
    stop: Option<StopSequences>,
    stream: Option<bool>,
    include_usage: Option<bool>,
    n: Option<i64>,
    seed: Option<i64>,
    logit_bias: Option<HashMap<String, Value>>,
    safety_identifier: Option<String>,
    user: Option<String>,
}

/// The shared fields of a chat or completions wire request, moved out by name; `max_tokens` is given
/// because chat also takes `max_completion_tokens`.
macro_rules! common_params {
    ($request:ident, max_tokens: $max_tokens:expr) => {
        CommonParams {
            model: $request.model,
            max_tokens: $max_tokens,
            temperature: $request.temperature,
            top_p: $request.top_p,
            top_k: $request.top_k,
            min_p: $request.min_p,
            presence_penalty: $request.presence_penalty,
            frequency_penalty: $request.frequency_penalty,
            repetition_penalty: $request.repetition_penalty,
            stop: $request.stop,
            stream: $request.stream,
            include_usage: $request.stream_options.and_then(|o| o.include_usage),
            n: $request.n,
            seed: $request.seed,
            logit_bias: $request.logit_bias,
            safety_identifier: $request.safety_identifier,
            user: $request.user,
        }
    };
}

/// OpenAI's bound on `user` and `safety_identifier`.
const MAX_CALLER_ID_CHARS: usize = 256;

/// `user` / `safety_identifier` within OpenAI's bound.
pub(crate) fn check_caller_id(
    param: &'static str,
    id: Option<&str>,
) -> Result<(), ValidationError> {
    match id.map(|id| id.chars().count()) {
        Some(count) if count > MAX_CALLER_ID_CHARS => Err(ValidationError::invalid(
            param,
            format!("`{param}` must be at most {MAX_CALLER_ID_CHARS} characters, got {count}"),
        )),
        _ => Ok(()),
    }
}

fn common(p: CommonParams) -> Result<ValidatedGeneration, ValidationError> {
    check_caller_id("safety_identifier", p.safety_identifier.as_deref())?;
    check_caller_id("user", p.user.as_deref())?;
    let temperature = range_f64("temperature", p.temperature, 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = match p.top_p {
        Some(v) if !(v > 0.0 && v <= 1.0) => {
            return Err(ValidationError::invalid(
                "top_p",
                format!("`top_p` must be in (0, 1], got {v}"),
            ))
        }
        other => other,
    };
    let top_k = match p.top_k {
        None | Some(0) | Some(-1) => None,
        Some(k) if k > 0 => Some(k as usize),
        Some(k) => {
            return Err(ValidationError::invalid(
                "top_k",
                format!("`top_k` must be a positive integer, or 0 or -1 to disable it, got {k}"),
            ))
        }
    };
    let min_p = range_f64("min_p", p.min_p, 0.0, 1.0)?;
    let presence_penalty = range_f64("presence_penalty", p.presence_penalty, -2.0, 2.0)?;
    let frequency_penalty = range_f64("frequency_penalty", p.frequency_penalty, -2.0, 2.0)?;
    let repetition_penalty = match p.repetition_penalty {
        Some(v) if !(v > 0.0 && v <= 2.0) => {
            return Err(ValidationError::invalid(
                "repetition_penalty",
                format!("`repetition_penalty` must be in (0, 2], got {v}"),
            ))
        }
        other => other,
    };
    let max_tokens = match p.max_tokens {
        Some(m) if m < 1 => {
            return Err(ValidationError::invalid(
                "max_tokens",
                format!("`max_tokens` must be at least 1, got {m}"),
            ))
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => None,
    };
    let stop = p.stop.map(StopSequences::into_vec).unwrap_or_default();
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ValidationError::invalid(
            "stop",
            format!(
                "`stop` takes at most {MAX_STOP_SEQUENCES} sequences, got {}",
                stop.len()
            ),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ValidationError::invalid(
            "stop",
            "`stop` sequences must not be empty",
        ));
    }
    let n = match p.n {
        None => 1,
        Some(n) if n < 1 => {
            return Err(ValidationError::invalid(
                "n",
                format!("`n` must be at least 1, got {n}"),
            ))
        }
        Some(n) if n as usize > MAX_SEQUENCES_PER_REQUEST => {
            return Err(ValidationError::invalid(
                "n",
                format!("`n` must be at most {MAX_SEQUENCES_PER_REQUEST}, got {n}"),
            ))
        }
        Some(n) => n as usize,
    };
    let logit_bias = parse_logit_bias(p.logit_bias)?;
    let stream = p.stream.unwrap_or(false);
    Ok(ValidatedGeneration {
        model: p.model,
        sampling: Sampling {
            temperature,
            top_p,
            top_k,
            min_p,
            presence_penalty: presence_penalty.map(|v| v as f32),
            frequency_penalty: frequency_penalty.map(|v| v as f32),
            repetition_penalty: repetition_penalty.map(|v| v as f32),
        },
        max_tokens,
        stop,
        stream,
        // `stream_options` with `stream: false` is accepted and ignored, as OpenAI does.
        include_usage: stream && p.include_usage.unwrap_or(false),
        n,
        generated: n,
        // Any integer is a seed; negative ones are taken as their two's-complement bits.
        seed: p.seed.map(|s| s as u64),
        logit_bias,
        logprobs: None,
        constraint: None,
    })
}

fn parse_logit_bias(
    bias: Option<HashMap<String, Value>>,
) -> Result<Vec<(u32, f32)>, ValidationError> {
    let bias = bias.unwrap_or_default();
    if bias.len() > MAX_LOGIT_BIAS_ENTRIES {
        return Err(ValidationError::invalid(
            "logit_bias",
            format!(
                "`logit_bias` takes at most {MAX_LOGIT_BIAS_ENTRIES} entries, got {}",
                bias.len()
            ),
        ));
    }
    let mut parsed: Vec<(u32, f32)> = bias
        .into_iter()
        .map(|(key, value)| {
            let token: u32 = key.trim().parse().map_err(|_| {
                ValidationError::invalid(
                    "logit_bias",
                    format!(
                        "`logit_bias` keys must be token ids (non-negative integers), got `{key}`"
                    ),
                )
            })?;
            let bias = value
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    ValidationError::invalid(
                        "logit_bias",
                        format!(
                            "`logit_bias[{key}]` must be a number from -100 to 100, got {value}"
                        ),
                    )
                })?;
            Ok((token, bias as f32))
        })
        .collect::<Result<_, ValidationError>>()?;
    parsed.sort_by_key(|(token, _)| *token);
    Ok(parsed)
}

/// `response_format` → a constraint; `text` (or nothing) is none.
fn response_format(format: Option<&Value>) -> Result<Option<OutputConstraint>, ValidationError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputConstraint::JsonSchema(
            json!({"type": "object"}),
        ))),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| {
                    ValidationError::invalid(
                        "response_format",
                        "`response_format.json_schema` is required with type `json_schema`",
                    )
                })?;
            if spec.get("name").and_then(Value::as_str).is_none() {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.name` is required",
                ));
            }
            if !matches!(
                spec.get("strict"),
                None | Some(Value::Null | Value::Bool(_))
            ) {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.strict` must be a boolean",
                ));
            }
            if !matches!(
                spec.get("description"),
                None | Some(Value::Null | Value::String(_))
            ) {
                return Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.description` must be a string",
                ));
            }
            match spec.get("schema") {
                // No schema: any JSON value.
                None | Some(Value::Null) => Ok(Some(OutputConstraint::JsonSchema(json!({})))),
                Some(schema) if schema.is_object() || schema.is_boolean() => {
                    Ok(Some(OutputConstraint::JsonSchema(schema.clone())))
                }
                Some(_) => Err(ValidationError::invalid(
                    "response_format",
                    "`response_format.json_schema.schema` must be a JSON Schema object",
                )),
            }
        }
        other => Err(ValidationError::invalid(
            "response_format",
            format!(
                "`response_format.type` must be `text`, `json_object` or `json_schema`, got {}",
                other.map_or("nothing".to_string(), |t| format!("`{t}`"))
            ),
        )),
    }
}

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
fn image_part(
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

fn message(index: usize, message: ChatMessage) -> Result<PromptMessage, ValidationError> {
    let role = match message.role.as_str() {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].role` must be one of system, developer, user, assistant, tool; got `{other}`"
                ),
            ))
        }
    };
    let mut images = Vec::new();
    let content = match message.content {
        Some(MessageContent::Text(text)) => Some(text),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (part_index, part) in parts.into_iter().enumerate() {
                match part.kind.as_str() {
                    "text" => match &part.text {
                        Some(t) => text.push_str(t),
                        None => {
                            return Err(ValidationError::invalid(
                                "messages",
                                format!("`messages[{index}].content[{part_index}]` has type `text` but no `text`"),
                            ))
                        }
                    },
                    "image_url" if role == Role::User => {
                        images.push(image_part(index, part_index, &part)?);
                    }
                    "image_url" => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!("`messages[{index}]`: only user messages may carry images"),
                        ))
                    }
                    other => {
                        return Err(ValidationError::invalid(
                            "messages",
                            format!(
                                "`messages[{index}].content[{part_index}].type` must be `text` or `image_url`, got `{other}`"
                            ),
                        ))
                    }
                }
            }
            Some(text)
        }
        None => None,
    };
    let calls = message.tool_calls.filter(|c| !c.is_empty());
    let content = match (role, content, calls) {
        (Role::Assistant, content, Some(calls)) => {
            let rendered = tools::render_calls(&calls).map_err(|e| {
                ValidationError::invalid("messages", format!("`messages[{index}].{e}`"))
            })?;
            match content.filter(|c| !c.is_empty()) {
                Some(text) => format!("{text}\n{rendered}"),
                None => rendered,
            }
        }
        (_, Some(_), Some(_)) | (_, None, Some(_)) => {
            return Err(ValidationError::invalid(
                "messages",
                format!("`messages[{index}].tool_calls` is only allowed on assistant messages"),
            ))
        }
        (_, Some(content), None) => content,
        // An assistant turn that only carried tool calls has no content.
        (Role::Assistant, None, None) => String::new(),
        (_, None, None) => {
            return Err(ValidationError::invalid(
                "messages",
                format!(
                    "`messages[{index}].content` is required for role `{}`",
                    message.role
                ),
            ))
        }
    };
    Ok(PromptMessage {
        role,
        content,
        images,
    })
}

/// Fields that would change what OpenAI returns but that this server cannot serve: refused, not ignored.
fn refuse_unserved(request: &ChatCompletionRequest) -> Result<(), ValidationError> {
    let present = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
    if present(&request.functions) || present(&request.function_call) {
        return Err(ValidationError::unsupported(
            if present(&request.functions) { "functions" } else { "function_call" },
            "the deprecated `functions` / `function_call` are not served; send `tools` and `tool_choice`",
        ));
    }
    if let Some(other) = request
        .modalities
        .iter()
        .flatten()
        .find(|m| m.as_str() != "text")
    {
        return Err(ValidationError::unsupported(
            "modalities",
            format!("only the `text` modality is served, got `{other}`"),
        ));
    }
    if present(&request.audio) {
        return Err(ValidationError::unsupported(
            "audio",
            "audio output is not served by this server",
        ));
    }
    if present(&request.web_search_options) {
        return Err(ValidationError::unsupported(
            "web_search_options",
            "web search is not served by this server",
        ));
    }
    Ok(())
}

pub fn chat(request: ChatCompletionRequest) -> Result<ValidatedChat, ValidationError> {
    if request.messages.is_empty() {
        return Err(ValidationError::invalid(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    let logprobs = match (request.logprobs.unwrap_or(false), request.top_logprobs) {
        (false, Some(k)) if k > 0 => {
            return Err(ValidationError::invalid(
                "top_logprobs",
                "`top_logprobs` needs `logprobs: true`",
            ))
        }
        (_, Some(k)) if !(0..=MAX_TOP_LOGPROBS).contains(&k) => {
            return Err(ValidationError::invalid(
                "top_logprobs",
                format!("`top_logprobs` must be between 0 and {MAX_TOP_LOGPROBS}, got {k}"),
            ))
        }
        (false, _) => None,
        (true, k) => Some(k.unwrap_or(0) as usize),
    };
    refuse_unserved(&request)?;
    let constraint = response_format(request.response_format.as_ref())?;
    let tools = tools::setup(
        request.tools.as_deref(),
        request.tool_choice.as_ref(),
        request.parallel_tool_calls,
    )?;
    if constraint.is_some() && tools.is_some() {
        return Err(ValidationError::unsupported(
            "response_format",
            "`response_format` with JSON output cannot be combined with callable `tools` (send `tool_choice: \"none\"` or drop one)",
        ));
    }
    // Both names are checked, though the newer one wins: an invalid value is never silently dropped.
    if let (Some(_), Some(m)) = (request.max_completion_tokens, request.max_tokens) {
        if m < 1 {
            return Err(ValidationError::invalid(
                "max_tokens",
                format!("`max_tokens` must be at least 1, got {m}"),
            ));
        }
    }
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let mut generation = common(common_params!(request, max_tokens: max_tokens))?;
    generation.logprobs = logprobs;
    generation.constraint = constraint.or_else(|| {
        tools
            .as_ref()
            .and_then(ToolSetup::grammar)
            .map(OutputConstraint::Lark)
    });
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    for (index, m) in request.messages.into_iter().enumerate() {
        messages.push(message(index, m)?);
    }
    let images: usize = messages.iter().map(|m| m.images.len()).sum();
    if images > MAX_IMAGES {
        return Err(ValidationError::invalid(
            "messages",
            format!("a request may carry at most {MAX_IMAGES} images, got {images}"),
        ));
    }
    if let Some(setup) = &tools {
        // The tools go into the system prompt (the first system message, or a new one).
        let instructions = setup.instructions();
        match messages.first_mut() {
            Some(first) if first.role == Role::System => {
                first.content = format!("{}\n\n{instructions}", first.content);
            }
            _ => messages.insert(
                0,
                PromptMessage {
                    role: Role::System,
                    content: instructions,
                    images: Vec::new(),
                },
            ),
        }
    }
    Ok(ValidatedChat {
        generation,
        messages,
        tools,
    })
}

pub fn completion(request: CompletionRequest) -> Result<ValidatedCompletion, ValidationError> {
    let prompts = match request.prompt {
        PromptInput::One(prompt) => vec![prompt],
        PromptInput::Many(prompts) => prompts,
    };
    if prompts.is_empty() {
        return Err(ValidationError::invalid(
            "prompt",
            "`prompt` must not be an empty list",
        ));
    }
    if let Some(index) = prompts.iter().position(String::is_empty) {
        // An empty prompt has no token to continue from (the engine refuses it too).
        return Err(ValidationError::invalid(
            "prompt",
            format!("`prompt` must not be empty (prompt {index} is)"),
        ));
    }
    if prompts.len() > MAX_PROMPTS_PER_REQUEST {
        return Err(ValidationError::invalid(
            "prompt",
            format!(
                "`prompt` takes at most {MAX_PROMPTS_PER_REQUEST} prompts, got {}",
                prompts.len()
            ),
        ));
    }
    let echo = request.echo.unwrap_or(false);
    let logprobs = match request.logprobs {
        None => None,
        Some(k) if !(0..=MAX_COMPLETION_LOGPROBS).contains(&k) => {
            return Err(ValidationError::invalid(
                "logprobs",
                format!("`logprobs` must be between 0 and {MAX_COMPLETION_LOGPROBS}, got {k}"),
            ))
        }
        Some(_) if echo => {
            return Err(ValidationError::unsupported(
                "logprobs",
                "`logprobs` with `echo` would need the prompt's log probabilities, which this server does not compute; drop one of them",
            ))
        }
        Some(k) => Some(k as usize),
    };
    let suffix = request.suffix.filter(|s| !s.is_empty());
    let stream = request.stream.unwrap_or(false);
    let mut generation = common(common_params!(request, max_tokens: request.max_tokens))?;
    let best_of = match request.best_of {
        None => generation.n,
        Some(b) if b < generation.n as i64 => {
            return Err(ValidationError::invalid(
                "best_of",
                format!("`best_of` must be at least `n` ({}), got {b}", generation.n),
            ))
        }
        Some(b) if b as usize > MAX_SEQUENCES_PER_REQUEST => {
            return Err(ValidationError::invalid(
                "best_of",
                format!("`best_of` must be at most {MAX_SEQUENCES_PER_REQUEST}, got {b}"),
            ))
        }
        Some(b) if stream && b as usize > generation.n => {
            return Err(ValidationError::invalid(
                "best_of",
                "`best_of` cannot be streamed: the best choices are known only at the end",
            ))
        }
        Some(b) => b as usize,
    };
    if prompts.len() * best_of > MAX_SEQUENCES_PER_REQUEST {
        return Err(ValidationError::invalid(
            if best_of > generation.n { "best_of" } else { "n" },
            format!(
                "{} prompts × {best_of} choices is more than {MAX_SEQUENCES_PER_REQUEST} sequences per request",
                prompts.len()
            ),
        ));
    }
    generation.generated = best_of;
    generation.logprobs = logprobs;
    generation.max_tokens = Some(
        generation
            .max_tokens
            .unwrap_or(DEFAULT_COMPLETION_MAX_TOKENS),
    );
    Ok(ValidatedCompletion {
        generation,
        prompts,
        echo,
        suffix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ModelInfo;
    use base64::engine::general_purpose::STANDARD;

    fn chat_request(extra: serde_json::Value) -> ChatCompletionRequest {
        let mut body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn chat_error(extra: serde_json::Value) -> ValidationError {
        chat(chat_request(extra)).unwrap_err()
    }

    #[test]
    fn out_of_range_values_name_field_bound_and_value() {
        let err = chat_error(serde_json::json!({"temperature": 7.5}));
        assert_eq!(
            err.to_string(),
            "`temperature` must be between 0 and 2, got 7.5"
        );
        assert!(matches!(
            chat_error(serde_json::json!({"top_p": 0})),
            ValidationError::Invalid { param: "top_p", .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"max_tokens": 0})),
            ValidationError::Invalid {
                param: "max_tokens",
                ..
            }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"presence_penalty": -3})),
            ValidationError::Invalid { .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"stop": ["a","b","c","d","e"]})),
            ValidationError::Invalid { param: "stop", .. }
        ));
        assert!(matches!(
            chat_error(serde_json::json!({"top_k": -2})),
            ValidationError::Invalid { param: "top_k", .. }
        ));
    }

    /// What the OpenAPI document now states is refused, and only that.
    #[test]
    fn values_the_document_excludes_are_refused_by_name() {
        for (extra, param) in [
            (
                json!({"max_completion_tokens": 5, "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]}),
                "tools",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "description": 5}}]}),
                "tools",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": 1}}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"type": "other", "function": {"name": "f"}}]}]}),
                "messages",
            ),
        ] {
            match chat_error(extra.clone()) {
                ValidationError::Invalid { param: p, .. } => assert_eq!(p, param, "{extra}"),
                other => panic!("{extra}: {other:?}"),
            }
        }
        let empty: CompletionRequest =
            serde_json::from_value(json!({"prompt": ["a", ""]})).unwrap();
        assert!(matches!(
            completion(empty),
            Err(ValidationError::Invalid {
                param: "prompt",
                ..
            })
        ));
    }

    #[test]
    fn the_openai_surface_is_parsed_and_its_bounds_checked() {
        let v = chat(chat_request(serde_json::json!({
            "n": 3, "seed": -1, "logprobs": true, "top_logprobs": 2,
            "logit_bias": {"5": -100, " 7": 2.5}
        })))
        .unwrap();
        assert_eq!(v.generation.n, 3);
        assert_eq!(v.generation.seed, Some(u64::MAX));
        assert_eq!(v.generation.logprobs, Some(2));
        assert_eq!(v.generation.logit_bias, vec![(5, -100.0), (7, 2.5)]);
        let json = chat(chat_request(
            serde_json::json!({"response_format": {"type": "json_object"}}),
        ))
        .unwrap();
        assert_eq!(
            json.generation.constraint,
            Some(OutputConstraint::JsonSchema(json!({"type": "object"})))
        );
        for (extra, param) in [
            (serde_json::json!({"n": 0}), "n"),
            (serde_json::json!({"n": 65}), "n"),
            (serde_json::json!({"top_logprobs": 2}), "top_logprobs"),
            (serde_json::json!({"top_logprobs": -1}), "top_logprobs"),
            (
                serde_json::json!({"logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (serde_json::json!({"logit_bias": {"a": 1}}), "logit_bias"),
            (serde_json::json!({"logit_bias": {"1": 101}}), "logit_bias"),
            (
                serde_json::json!({"response_format": {"type": "yaml"}}),
                "response_format",
            ),
            (
                serde_json::json!({"response_format": {"type": "json_schema"}}),
                "response_format",
            ),
            (
                serde_json::json!({"tool_choice": "required"}),
                "tool_choice",
            ),
        ] {
            match chat_error(extra) {
                ValidationError::Invalid { param: p, .. } => assert_eq!(p, param),
                other => panic!("{param}: {other:?}"),
            }
        }
        let info = ModelInfo {
            context_length: 10,
            accepts_images: false,
            chat_template: true,
            max_images: 8,
            vocab_size: 6,
            fill_in_middle: None,
            embedding_dimensions: None,
            max_token_bytes: 0,
        };
        assert!(
            model::check(&v.generation, 0, "m", &info).is_err(),
            "token 7 is not in a 6-token vocabulary"
        );
    }

    #[test]
    fn tools_go_into_the_system_prompt_and_images_are_checked() {
        let v = chat(chat_request(serde_json::json!({
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"
        })))
        .unwrap();
        assert_eq!(v.messages[0].role, Role::System);
        assert!(v.messages[0].content.contains("<tools>"));
        assert!(matches!(
            v.generation.constraint,
            Some(OutputConstraint::Lark(_))
        ));
        let image = |url: &str| {
            serde_json::json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]})
        };
        let mut png = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let url = format!("data:image/png;base64,{}", STANDARD.encode(&png));
        let ok: ChatCompletionRequest = serde_json::from_value(image(&url)).unwrap();
        let ok = chat(ok).unwrap();
        assert!(ok.has_images());
        assert_eq!(ok.messages[0].images[0].data, png);
        // A 41-byte GIF whose header announces 60000×60000 pixels (a two-colour palette, one 1×1 frame).
        let mut bomb = b"GIF89a".to_vec();
        bomb.extend(60000u16.to_le_bytes());
        bomb.extend(60000u16.to_le_bytes());
        bomb.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
        bomb.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3B]);
        let bomb = format!("data:image/gif;base64,{}", STANDARD.encode(&bomb));
        let error = chat(serde_json::from_value(image(&bomb)).unwrap()).unwrap_err();
        assert!(error.to_string().contains("60000×60000"), "{error}");
        for bad in [
            // Only a PNG signature: no header to read.
            "data:image/png;base64,iVBORw0KGgo=",
            "https://example.com/a.png",
            // A JPEG declared as PNG.
            "data:image/png;base64,/9j/4AAQ",
            "data:text/plain;base64,aGk=",
            "data:image/png;base64,%%%",
        ] {
            let request: ChatCompletionRequest = serde_json::from_value(image(bad)).unwrap();
            assert!(chat(request).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_accept_strings_parts_and_developer_role() {
        let request: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null},
            ],
            "max_completion_tokens": 5, "max_tokens": 9, "user": "ignored", "store": false
        }))
        .unwrap();
        let chat = chat(request).unwrap();
        assert_eq!(chat.messages[0].role, Role::System);
        assert_eq!(chat.messages[1].content, "ab");
        assert_eq!(chat.generation.max_tokens, Some(5));
        assert!(!chat.has_images());
    }

    #[test]
    fn empty_messages_and_bad_roles_are_rejected() {
        let request: ChatCompletionRequest =
            serde_json::from_value(serde_json::json!({"messages": []})).unwrap();
        assert!(matches!(
            chat(request),
            Err(ValidationError::Invalid {
                param: "messages",
                ..
            })
        ));
        let request: ChatCompletionRequest = serde_json::from_value(
            serde_json::json!({"messages": [{"role": "robot", "content": "x"}]}),
        )
        .unwrap();
        assert!(chat(request).unwrap_err().to_string().contains("`robot`"));
    }

    #[test]
    fn include_usage_only_counts_when_streaming() {
        let v = chat(chat_request(
            serde_json::json!({"stream_options": {"include_usage": true}}),
        ))
        .unwrap();
        assert!(!v.generation.include_usage);
        let v = chat(chat_request(
            serde_json::json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .unwrap();
        assert!(v.generation.include_usage);
    }

    #[test]
    fn completions_default_to_16_tokens_and_accept_prompt_lists() {
        let request: CompletionRequest =
            serde_json::from_value(serde_json::json!({"prompt": ["a", "b"], "echo": true}))
                .unwrap();
        let v = completion(request).unwrap();
        assert_eq!(v.generation.max_tokens, Some(DEFAULT_COMPLETION_MAX_TOKENS));
        assert_eq!(v.prompts, vec!["a", "b"]);
        assert!(v.echo);
        let parse = |body: serde_json::Value| -> Result<ValidatedCompletion, ValidationError> {
            completion(serde_json::from_value(body).unwrap())
        };
        let best = parse(serde_json::json!({"prompt": "a", "best_of": 3, "n": 2})).unwrap();
        assert_eq!((best.generation.n, best.generation.generated), (2, 3));
        for body in [
            serde_json::json!({"prompt": "a", "best_of": 1, "n": 2}),
            serde_json::json!({"prompt": "a", "best_of": 2, "stream": true}),
            serde_json::json!({"prompt": "a", "logprobs": 6}),
            serde_json::json!({"prompt": [], "n": 2}),
        ] {
            assert!(parse(body.clone()).is_err(), "{body}");
        }
        assert!(matches!(
            parse(serde_json::json!({"prompt": "a", "logprobs": 1, "echo": true})),
            Err(ValidationError::Unsupported {
                param: "logprobs",
                ..
            })
        ));
        let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
        assert!(parse(serde_json::json!({"prompt": many, "n": 2})).is_err());
    }
}
