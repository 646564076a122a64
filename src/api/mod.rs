//! Wire types of the OpenAI-compatible API: serde + OpenAPI schemas, no logic.

pub mod chat;
pub mod common;
pub mod completions;
pub mod errors;
pub mod health;
pub mod models;
pub mod tokenize;
