//! Wire types of the OpenAI-compatible API: serde + OpenAPI schemas, no logic.

/// Declares a generation request (chat, completions) with the sampling fields both share, written once
/// here, after the request's own fields.
///
/// Not one struct under `#[serde(flatten)]`: through a flattened struct serde_path_to_error loses the
/// field's name, and a type error (`"temperature": "hot"`) would no longer answer `param: "temperature"`.
macro_rules! generation_request {
    ($(#[$meta:meta])* pub struct $name:ident { $($own:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($own)*
            /// 0–2; 0 is greedy. Default 1.
            #[serde(default)]
            #[schema(minimum = 0.0, maximum = 2.0)]
            pub temperature: Option<f64>,
            /// Nucleus sampling, (0, 1]. Default 1.
            #[serde(default)]
            #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
            pub top_p: Option<f64>,
            /// Sample among the k most likely tokens; 0 or -1 turns it off.
            #[serde(default, deserialize_with = "crate::api::common::integer::optional")]
            #[schema(minimum = -1)]
            pub top_k: Option<i64>,
            /// Drop tokens less likely than min_p × the most likely one, [0, 1].
            #[serde(default)]
            #[schema(minimum = 0.0, maximum = 1.0)]
            pub min_p: Option<f64>,
            /// −2–2.
            #[serde(default)]
            #[schema(minimum = -2.0, maximum = 2.0)]
            pub presence_penalty: Option<f64>,
            /// −2–2.
            #[serde(default)]
            #[schema(minimum = -2.0, maximum = 2.0)]
            pub frequency_penalty: Option<f64>,
            /// Multiplicative penalty on repeated tokens, (0, 2]; 1 is off.
            #[serde(default)]
            #[schema(exclusive_minimum = 0.0, maximum = 2.0)]
            pub repetition_penalty: Option<f64>,
            /// A string or up to 4 strings; generation stops before them and they are not returned.
            #[serde(default)]
            pub stop: Option<$crate::api::common::StopSequences>,
            /// Stream the answer as server-sent events.
            #[serde(default)]
            pub stream: Option<bool>,
            #[serde(default)]
            pub stream_options: Option<$crate::api::common::StreamOptions>,
            /// Token id (as a string) → bias from −100 to 100 added to its logit; −100 bans the token.
            #[serde(default)]
            #[schema(value_type = Option<Object>)]
            pub logit_bias: Option<::std::collections::HashMap<String, serde_json::Value>>,
            /// A stable id of the end user (OpenAI's newer name): requests with the same id are served by
            /// the same version of a weighted alias while its weights stand. Wins over `user`.
            #[serde(default)]
            #[schema(max_length = 256)]
            pub safety_identifier: Option<String>,
            /// A stable id of the end user (deprecated by OpenAI for `safety_identifier`); same effect.
            #[serde(default)]
            #[schema(max_length = 256)]
            pub user: Option<String>,
        }

        impl $name {
            /// Who is calling, for sticky routing between a weighted alias's versions.
            pub fn caller_identity(&self) -> Option<&str> {
                $crate::api::common::caller_identity(
                    self.safety_identifier.as_deref(),
                    self.user.as_deref(),
                )
            }
        }
    };
}
pub(crate) use generation_request;

pub mod admin;
pub mod chat;
pub mod common;
pub mod completions;
pub mod embeddings;
pub mod errors;
pub mod health;
pub mod models;
pub mod responses;
pub mod tokenize;
