//! Prompts rendered and tokenized in our layer, the way mistral.rs 0.8.1 does it, so that counting a prompt
//! does not wait for the engine: the engine answers a tokenization request only between two decode steps,
//! which cost a median 6.9 ms of server overhead per request under load (docs/benchmarks.md).
//!
//! The rendering follows mistral.rs's `apply_chat_template_to` (private to mistral.rs): the same minijinja
//! settings, helpers, template rewrites and context. The engine module checks it against the engine's own
//! tokenization when the model loads and uses it only when both agree (`agrees_with`).

use std::sync::Arc;

use minijinja::value::Kwargs;
use minijinja::{context, Environment, Error, ErrorKind, Value};

use super::{EngineError, Prompt, PromptMessage};

/// The tokenizer's encoder, with special tokens (as the engine encodes prompts).
pub type Encode = Arc<dyn Fn(&str) -> anyhow::Result<Vec<u32>> + Send + Sync>;

/// The chat template and the special tokens it may refer to.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub template: String,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub unk_token: Option<String>,
}

pub struct LocalTokenizer {
    /// `None` when the model has no single chat template (only completions are tokenized here then).
    chat: Option<(Environment<'static>, TemplateSource)>,
    encode: Encode,
}

const TEMPLATE_NAME: &str = "chat_template";

impl LocalTokenizer {
    pub fn new(template: Option<TemplateSource>, encode: Encode) -> Result<Self, EngineError> {
        let chat = template
            .map(|source| {
                let mut env = Environment::new();
                // Python string methods (`.strip()`, `.startswith()`…) as in transformers.
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.set_lstrip_blocks(true);
                env.set_trim_blocks(true);
                env.add_function("raise_exception", raise_exception);
                env.add_function("strftime_now", strftime_now);
                env.add_filter("tojson", tojson);
                env.add_template_owned(TEMPLATE_NAME, rewrite(&source.template))
                    .map_err(|e| EngineError::Load(format!("chat template: {e}")))?;
                Ok::<_, EngineError>((env, source))
            })
            .transpose()?;
        Ok(LocalTokenizer { chat, encode })
    }

    /// The prompt's tokens, or `None` when this prompt is left to the engine (a chat prompt without a
    /// template here).
    pub fn tokenize(&self, prompt: &Prompt) -> Option<Result<Vec<u32>, EngineError>> {
        let text = match prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => match self.render(messages)? {
                Ok(text) => text,
                Err(e) => return Some(Err(e)),
            },
        };
        Some((self.encode)(&text).map_err(|e| EngineError::Rejected(format!("{e:#}"))))
    }

    fn render(&self, messages: &[PromptMessage]) -> Option<Result<String, EngineError>> {
        let (env, source) = self.chat.as_ref()?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
            .collect();
        let rendered = env.get_template(TEMPLATE_NAME).and_then(|template| {
            template.render(context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => source.bos_token,
                eos_token => source.eos_token,
                unk_token => source.unk_token,
                date_string => chrono::Utc::now().format("%d, %B, %Y").to_string(),
                // mistral.rs's defaults when a request does not set them.
                enable_thinking => true,
                reasoning_effort => "medium",
            })
        });
        Some(rendered.map_err(|e| EngineError::Rejected(format!("chat template: {e:#}"))))
    }
}

/// mistral.rs's rewrites of Python-only template syntax minijinja lacks, and of two models' extensions.
fn rewrite(template: &str) -> String {
    let mut template = template.replace("[::-1]", "|reverse");
    let descending =
        regex::Regex::new(r"range\((?P<expr>[^,]+),\s*-1,\s*-1\)").expect("valid regex");
    template = descending
        .replace_all(&template, |caps: &regex::Captures| {
            format!("range({})|reverse", &caps["expr"])
        })
        .into_owned();
    if template.contains("{{ meta }}") {
        // GLM-4.
        template = template.replace("{%- set meta = message.get(\"metadata\", \"\") %}", "");
        template = template.replace("{{ meta }}", "");
    }
    if template.contains("{% generation %}") && template.contains("{% endgeneration %}") {
        // SmolLM3.
        template = template.replace("{% generation %}", "");
        template = template.replace("{% endgeneration %}", "");
    }
    template
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> Result<String, Error> {
    Ok(chrono::Utc::now().format(&format).to_string())
}

/// Jinja's `tojson`, escaped for HTML as transformers and mistral.rs do.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let serialization = |e: serde_json::Error| {
        Error::new(ErrorKind::BadSerialization, "cannot serialize to JSON").with_source(e)
    };
    let json = match kwargs.get::<usize>("indent") {
        Ok(indent) => {
            let mut out = Vec::new();
            let spaces = b" ".repeat(indent);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&spaces);
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(&value, &mut serializer).map_err(serialization)?;
            String::from_utf8(out).expect("serde_json writes UTF-8")
        }
        Err(_) => serde_json::to_string(&value).map_err(serialization)?,
    };
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\'' => escaped.push_str("\\u0027"),
            _ => escaped.push(c),
        }
    }
    Ok(Value::from_safe_string(escaped))
}

/// Conversations the engine module tokenizes both ways when the model loads: plain and multi-turn chat,
/// characters a template or tokenizer may treat specially, and a completion prompt.
pub fn probes() -> Vec<Prompt> {
    use super::Role;
    let message = |role, content: &str| PromptMessage {
        role,
        content: content.to_string(),
        images: Vec::new(),
    };
    vec![
        Prompt::Chat(vec![message(Role::User, "Hello")]),
        Prompt::Chat(vec![
            message(Role::System, "Be brief."),
            message(Role::User, "What is 2+2?"),
            message(Role::Assistant, "4"),
            message(Role::User, "  And 3+3?\n"),
        ]),
        Prompt::Chat(vec![message(
            Role::User,
            "émoji 🎉, <b>tags</b> & {{ braces }} {% raw %} 'quotes' \"double\"",
        )]),
        Prompt::Chat(vec![
            message(Role::User, "Call the tool."),
            message(Role::Assistant, ""),
            message(Role::Tool, "{\"temperature\": 21}"),
        ]),
        Prompt::Text("Once upon a time".to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Role;

    fn by_bytes() -> Encode {
        Arc::new(|text: &str| Ok(text.bytes().map(u32::from).collect()))
    }

    #[test]
    fn renders_like_mistral_rs() {
        let template = TemplateSource {
            template: "{{ bos_token }}{% for m in messages[::-1] %}[{{ m.role }}:{{ m.content.strip() }}]{% endfor %}\
                       {% if add_generation_prompt %}>{% endif %}{{ {'a': '<x>'} | tojson }}"
                .into(),
            bos_token: Some("^".into()),
            eos_token: None,
            unk_token: None,
        };
        let local = LocalTokenizer::new(Some(template), by_bytes()).unwrap();
        let prompt = Prompt::Chat(vec![
            PromptMessage {
                role: Role::System,
                content: " s ".into(),
                images: vec![],
            },
            PromptMessage {
                role: Role::User,
                content: "u".into(),
                images: vec![],
            },
        ]);
        let tokens = local.tokenize(&prompt).unwrap().unwrap();
        let text = String::from_utf8(tokens.iter().map(|&t| t as u8).collect()).unwrap();
        assert_eq!(text, "^[user:u][system:s]>{\"a\":\"\\u003cx\\u003e\"}");
        let failing = TemplateSource {
            template: "{{ raise_exception('no system role') }}".into(),
            bos_token: None,
            eos_token: None,
            unk_token: None,
        };
        let local = LocalTokenizer::new(Some(failing), by_bytes()).unwrap();
        assert!(local.tokenize(&prompt).unwrap().is_err());
        let text_only = LocalTokenizer::new(None, by_bytes()).unwrap();
        assert!(text_only.tokenize(&prompt).is_none());
        assert_eq!(
            text_only
                .tokenize(&Prompt::Text("ab".into()))
                .unwrap()
                .unwrap(),
            vec![97, 98]
        );
    }
}
