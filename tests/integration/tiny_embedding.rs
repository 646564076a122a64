//! A tiny Qwen3-Embedding model directory, written by the test: no embedding model can be fetched from
//! the registries these machines reach, so mistral.rs's real embedding loader gets real files with small,
//! seeded random weights (the tokenizer and the safetensors writer are the tiny vision model's).
//!
//! What it holds: `config.json` (a 2-layer Qwen3, hidden size 64, named `Qwen3ForCausalLM` as
//! Qwen3-Embedding's is), the sentence-transformers modules that make it an embedding model
//! (`modules.json`: the transformer, `1_Pooling` with last-token pooling, `2_Normalize`), a byte-level
//! `tokenizer.json` and `model.safetensors` (~0.3 MB of f32).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::tiny_vision::{
    decoder_weights, tokenizer, write_safetensors, Decoder, Init, VOCAB_SIZE,
};

/// The embedding width: what `/v1/embeddings` returns without `dimensions`.
pub const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
/// Tokens the model attends to: longer inputs are refused.
pub const CONTEXT: usize = 512;

/// Writes the model into a fresh directory under the system temp dir and returns it.
pub fn write_model() -> PathBuf {
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let copy = COPIES.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "llmserve-tiny-qwen3-embedding-{}-{copy}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("1_Pooling")).expect("model dir");
    std::fs::create_dir_all(dir.join("2_Normalize")).expect("model dir");
    let write_json = |name: &str, value: Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(&value).unwrap()).expect(name);
    };
    write_json("config.json", config());
    write_json("tokenizer.json", tokenizer());
    write_json(
        "tokenizer_config.json",
        json!({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_bos_token": false,
               "model_max_length": CONTEXT}),
    );
    write_json(
        "modules.json",
        json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]),
    );
    write_json(
        "1_Pooling/config.json",
        json!({
            "word_embedding_dimension": HIDDEN,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": false,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": true,
            "include_prompt": true,
        }),
    );
    write_json("2_Normalize/config.json", json!({}));
    write_safetensors(&dir.join("model.safetensors"), &weights());
    dir
}

fn config() -> Value {
    json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "torch_dtype": "float32",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "sliding_window": null,
        "use_sliding_window": false,
        "max_window_layers": LAYERS,
        "tie_word_embeddings": true,
    })
}

/// Every tensor the Qwen3-Embedding loader reads (no `model.` prefix, as in the released checkpoints).
fn weights() -> BTreeMap<String, (Vec<usize>, Init)> {
    let mut w = BTreeMap::new();
    decoder_weights(
        &mut w,
        "",
        Decoder {
            hidden: HIDDEN,
            intermediate: INTERMEDIATE,
            layers: LAYERS,
            heads: HEADS,
            kv_heads: KV_HEADS,
            head_dim: HEAD_DIM,
            qk_norm: true,
        },
    );
    w
}
