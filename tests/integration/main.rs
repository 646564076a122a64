//! Integration tests: llmserve on 127.0.0.1:0 with the real default model, driven over HTTP and by the
//! official `openai` Python and Node SDKs. One binary, one shared server (plus dedicated ones where a test needs the
//! server to itself).

mod common;

mod access;
mod batching;
mod bench;
mod browser;
mod chat;
mod completions;
mod concurrency;
mod disconnect;
mod drain;
mod embeddings;
mod errors;
mod gemma3;
mod glm4v;
mod gpu;
mod grpc;
mod keys;
mod logs;
mod metrics;
mod openai_node;
mod openai_python;
mod prefix_cache;
mod registry;
mod reliability;
mod replicas;
mod schema_fuzz;
mod shared_limits;
mod sse;
mod startup;
mod surface;
mod tiny_embedding;
mod tiny_vision;
mod tracing;
mod vision;
