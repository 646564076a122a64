//! `/v1/embeddings` on a tiny Qwen3-Embedding the test writes (tests/integration/tiny_embedding.rs),
//! driven by the official Python SDK (tests/embeddings/) and Node SDK (tests/node/embeddings.test.cjs),
//! beside a text-generation model that must refuse to embed.

use crate::common::{model_name, server, start_server};
use crate::openai_node::node_test;
use crate::openai_python::pytest;
use crate::tiny_embedding;

const SERVED_NAME: &str = "tiny-qwen3-embedding";

#[test]
fn embeddings_with_the_official_sdks() {
    let dir = tiny_embedding::write_model();
    let model_dir = dir.clone();
    let base = start_server(move |config| {
        config.model.source = llmserve::config::ModelSource::LocalDir(model_dir);
        config.model.served_name = SERVED_NAME.to_string();
    });
    // The server most tests share: it only has to refuse to embed.
    let generative = server();
    pytest(
        "embeddings",
        &[
            ("LLMSERVE_EMBED_BASE_URL", format!("{base}/v1")),
            ("LLMSERVE_EMBED_MODEL", SERVED_NAME.to_string()),
            (
                "LLMSERVE_EMBED_DIMENSIONS",
                tiny_embedding::HIDDEN.to_string(),
            ),
            ("LLMSERVE_BASE_URL", format!("{generative}/v1")),
            ("LLMSERVE_MODEL", model_name().to_string()),
        ],
    );
    node_test(
        "embeddings.test.cjs",
        &[
            ("LLMSERVE_EMBED_BASE_URL", format!("{base}/v1")),
            ("LLMSERVE_EMBED_MODEL", SERVED_NAME.to_string()),
            (
                "LLMSERVE_EMBED_DIMENSIONS",
                tiny_embedding::HIDDEN.to_string(),
            ),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}
