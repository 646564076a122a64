//! Wire types shared by chat and completions: stop sequences, stream options, usage, finish reasons.

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

/// Up to 4 sequences where the API stops generating; the stop text is not returned.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopSequences {
    One(String),
    Many(Vec<String>),
}

impl StopSequences {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s],
            StopSequences::Many(v) => v,
        }
    }
}

/// Options for streaming responses; only read when `stream` is true.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// When true, one extra chunk with empty `choices` and the request's `usage` comes right before `[DONE]`,
    /// and every other chunk carries `"usage": null`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Token counts of one request, summed over all choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// Why a choice stopped: `stop` (end of turn or a stop sequence), `length` (`max_tokens` or the context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// The `usage` key of a streamed chunk: absent unless `stream_options.include_usage`, then `null` on every
/// chunk except the last one, which carries the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChunkUsage {
    #[default]
    Absent,
    Null,
    Totals(Usage),
}

impl ChunkUsage {
    pub fn is_absent(&self) -> bool {
        matches!(self, ChunkUsage::Absent)
    }
}

impl Serialize for ChunkUsage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ChunkUsage::Absent | ChunkUsage::Null => serializer.serialize_none(),
            ChunkUsage::Totals(usage) => usage.serialize(serializer),
        }
    }
}
