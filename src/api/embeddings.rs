//! `POST /v1/embeddings` wire types: the request and the `list` of `embedding` objects.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An embeddings request. Unknown fields are accepted and ignored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = json!({"input": "The food was delicious."}))]
pub struct EmbeddingRequest {
    /// An embedding model from `/v1/models`; when omitted, the default model (which must embed).
    #[serde(default)]
    pub model: Option<String>,
    /// A string, a list of strings, a list of token ids, or a list of such lists: one embedding each.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32 bytes, as OpenAI encodes them).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Fewer dimensions than the model's: the vector is cut to its first `dimensions` values and scaled
    /// back to length 1 (Matryoshka models, as the served embedding architectures are).
    #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
    #[schema(minimum = 1)]
    pub dimensions: Option<i64>,
    /// A stable id of the end user: sticky routing between a weighted alias's versions.
    #[serde(default)]
    #[schema(max_length = 256)]
    pub user: Option<String>,
}

/// What to embed.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    /// Token ids, `5.0` read as `5` as for every integer field.
    Tokens(#[serde(deserialize_with = "crate::api::common::integer::list")] Vec<i64>),
    TokenLists(#[serde(deserialize_with = "crate::api::common::integer::lists")] Vec<Vec<i64>>),
}

/// The answer: one embedding per input, in input order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    pub index: usize,
    /// The vector (`float`), or its little-endian f32 bytes in base64 (`base64`).
    pub embedding: EmbeddingVector,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

/// Tokens read: every input's, summed; embeddings generate none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}
