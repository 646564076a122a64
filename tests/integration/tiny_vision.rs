//! A tiny Idefics3 (SmolVLM's architecture) model directory, written by the test: no vision model can be
//! fetched from the registries these machines reach, so the real loading code gets real files with small,
//! seeded random weights.
//!
//! What it holds: `config.json` (a 2-layer Llama text model, a 1-layer SigLIP vision tower of 32×32 images in
//! 8×8 patches, pixel shuffle by 2, so 4 image tokens per image), a byte-level BPE `tokenizer.json` with
//! SmolVLM's image tokens, a chat template in `tokenizer_config.json`, `preprocessor_config.json`,
//! `processor_config.json` and `model.safetensors` (~0.3 MB of f32).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

/// Special tokens after the 256 byte tokens, in id order.
const SPECIAL_TOKENS: [&str; 6] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
];
pub const VOCAB_SIZE: usize = 256 + SPECIAL_TOKENS.len();

const TEXT_HIDDEN: usize = 64;
const TEXT_INTERMEDIATE: usize = 128;
const TEXT_LAYERS: usize = 2;
const TEXT_HEADS: usize = 4;
const TEXT_KV_HEADS: usize = 2;
const VISION_HIDDEN: usize = 32;
const VISION_INTERMEDIATE: usize = 64;
const VISION_LAYERS: usize = 1;
const IMAGE_SIZE: usize = 32;
const PATCH_SIZE: usize = 8;
const SCALE_FACTOR: usize = 2;
/// Image tokens per image: (32 / 8)² patches, merged 2×2 by the pixel shuffle.
pub const IMAGE_SEQ_LEN: usize = (IMAGE_SIZE / PATCH_SIZE).pow(2) / SCALE_FACTOR.pow(2);

/// SmolVLM's template, also taking plain-string contents.
const CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message['role'] | capitalize }}:\
{% if message['content'] is string %} {{ message['content'] }}{% else %}{% for part in message['content'] %}\
{% if part['type'] == 'image' %}<image>{% elif part['type'] == 'text' %} {{ part['text'] }}{% endif %}\
{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>Assistant:{% endif %}";

/// Writes the model into a fresh directory under the system temp dir and returns it; each call gets its
/// own directory, so that a server loading one copy never sees another being written.
pub fn write_model() -> PathBuf {
    static COPIES: AtomicUsize = AtomicUsize::new(0);
    let copy = COPIES.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "llmserve-tiny-idefics3-{}-{copy}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("model dir");
    let write_json = |name: &str, value: Value| {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(&value).unwrap()).expect(name);
    };
    write_json("config.json", config());
    write_json("tokenizer.json", tokenizer());
    write_json(
        "tokenizer_config.json",
        json!({
            "bos_token": "<|im_start|>",
            "eos_token": "<end_of_utterance>",
            "unk_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "add_bos_token": false,
            "model_max_length": 2048,
            "chat_template": CHAT_TEMPLATE,
        }),
    );
    write_json(
        "preprocessor_config.json",
        json!({
            "do_convert_rgb": true,
            "do_resize": true,
            "size": {"longest_edge": IMAGE_SIZE},
            "max_image_size": {"longest_edge": IMAGE_SIZE},
            "do_image_splitting": false,
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_pad": true,
            "resample": 1,
        }),
    );
    write_json(
        "processor_config.json",
        json!({"image_seq_len": IMAGE_SEQ_LEN}),
    );
    write_safetensors(&dir.join("model.safetensors"), &weights());
    dir
}

fn token_id(token: &str) -> usize {
    256 + SPECIAL_TOKENS
        .iter()
        .position(|t| *t == token)
        .expect("special token")
}

fn config() -> Value {
    json!({
        "architectures": ["Idefics3ForConditionalGeneration"],
        "model_type": "idefics3",
        "torch_dtype": "float32",
        "image_token_id": token_id("<image>"),
        "scale_factor": SCALE_FACTOR,
        "tie_word_embeddings": true,
        "vision_config": {
            "model_type": "idefics3_vision",
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": VISION_INTERMEDIATE,
            "num_hidden_layers": VISION_LAYERS,
            "num_attention_heads": 2,
            "num_channels": 3,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        "text_config": {
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": TEXT_INTERMEDIATE,
            "vocab_size": VOCAB_SIZE,
            "num_hidden_layers": TEXT_LAYERS,
            "num_attention_heads": TEXT_HEADS,
            "num_key_value_heads": TEXT_KV_HEADS,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": true,
        },
    })
}

/// GPT-2's byte-to-character map: printable bytes stand for themselves, the rest move to U+0100 onwards.
fn byte_level_alphabet() -> Vec<char> {
    let mut shifted = 0;
    (0u32..256)
        .map(|b| {
            let printable =
                (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            if printable {
                char::from_u32(b).unwrap()
            } else {
                shifted += 1;
                char::from_u32(255 + shifted).unwrap()
            }
        })
        .collect()
}

/// A byte-level BPE with no merges: every byte is a token, so any text round-trips.
pub fn tokenizer() -> Value {
    let vocab: serde_json::Map<String, Value> = byte_level_alphabet()
        .into_iter()
        .enumerate()
        .map(|(id, c)| (c.to_string(), json!(id)))
        .chain(
            SPECIAL_TOKENS
                .iter()
                .map(|t| (t.to_string(), json!(token_id(t)))),
        )
        .collect();
    let added: Vec<Value> = SPECIAL_TOKENS
        .iter()
        .map(|t| {
            json!({"id": token_id(t), "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []},
    })
}

/// How a tensor starts: seeded uniform noise scaled by its input width, or a constant (norms, biases).
pub enum Init {
    Random,
    Ones,
    Zeros,
}

/// Every tensor the Idefics3 loader reads, by name, with its shape and start.
fn weights() -> BTreeMap<String, (Vec<usize>, Init)> {
    let mut w = BTreeMap::new();
    let mut add = |name: String, shape: &[usize], init: Init| {
        w.insert(name, (shape.to_vec(), init));
    };
    let (v, vi) = (VISION_HIDDEN, VISION_INTERMEDIATE);
    let vision = "model.vision_model";
    add(
        format!("{vision}.embeddings.patch_embedding.weight"),
        &[v, 3, PATCH_SIZE, PATCH_SIZE],
        Init::Random,
    );
    add(
        format!("{vision}.embeddings.patch_embedding.bias"),
        &[v],
        Init::Zeros,
    );
    add(
        format!("{vision}.embeddings.position_embedding.weight"),
        &[(IMAGE_SIZE / PATCH_SIZE).pow(2), v],
        Init::Random,
    );
    for layer in 0..VISION_LAYERS {
        let l = format!("{vision}.encoder.layers.{layer}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add(
                format!("{l}.self_attn.{proj}.weight"),
                &[v, v],
                Init::Random,
            );
            add(format!("{l}.self_attn.{proj}.bias"), &[v], Init::Zeros);
        }
        add(format!("{l}.mlp.fc1.weight"), &[vi, v], Init::Random);
        add(format!("{l}.mlp.fc1.bias"), &[vi], Init::Zeros);
        add(format!("{l}.mlp.fc2.weight"), &[v, vi], Init::Random);
        add(format!("{l}.mlp.fc2.bias"), &[v], Init::Zeros);
        for norm in ["layer_norm1", "layer_norm2"] {
            add(format!("{l}.{norm}.weight"), &[v], Init::Ones);
            add(format!("{l}.{norm}.bias"), &[v], Init::Zeros);
        }
    }
    add(format!("{vision}.post_layernorm.weight"), &[v], Init::Ones);
    add(format!("{vision}.post_layernorm.bias"), &[v], Init::Zeros);
    add(
        "model.connector.modality_projection.proj.weight".into(),
        &[TEXT_HIDDEN, v * SCALE_FACTOR.pow(2)],
        Init::Random,
    );
    decoder_weights(
        &mut w,
        "model.text_model.",
        Decoder {
            hidden: TEXT_HIDDEN,
            intermediate: TEXT_INTERMEDIATE,
            layers: TEXT_LAYERS,
            heads: TEXT_HEADS,
            kv_heads: TEXT_KV_HEADS,
            head_dim: TEXT_HIDDEN / TEXT_HEADS,
            qk_norm: false,
        },
    );
    w
}

/// The shape of a Llama-style decoder: the tiny models' text stacks.
pub struct Decoder {
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Qwen3's per-head norms of queries and keys.
    pub qk_norm: bool,
}

/// Every tensor of such a decoder, named under `prefix`: token embeddings, each layer's attention, MLP
/// and norms, and the final norm.
pub fn decoder_weights(
    w: &mut BTreeMap<String, (Vec<usize>, Init)>,
    prefix: &str,
    decoder: Decoder,
) {
    let mut add = |name: String, shape: &[usize], init: Init| {
        w.insert(format!("{prefix}{name}"), (shape.to_vec(), init));
    };
    let Decoder {
        hidden: d,
        intermediate: i,
        layers,
        heads,
        kv_heads,
        head_dim,
        qk_norm,
    } = decoder;
    add("embed_tokens.weight".into(), &[VOCAB_SIZE, d], Init::Random);
    for layer in 0..layers {
        let l = format!("layers.{layer}");
        let attention = |proj: &str| format!("{l}.self_attn.{proj}.weight");
        add(attention("q_proj"), &[heads * head_dim, d], Init::Random);
        add(attention("k_proj"), &[kv_heads * head_dim, d], Init::Random);
        add(attention("v_proj"), &[kv_heads * head_dim, d], Init::Random);
        add(attention("o_proj"), &[d, heads * head_dim], Init::Random);
        if qk_norm {
            add(attention("q_norm"), &[head_dim], Init::Ones);
            add(attention("k_norm"), &[head_dim], Init::Ones);
        }
        add(format!("{l}.mlp.gate_proj.weight"), &[i, d], Init::Random);
        add(format!("{l}.mlp.up_proj.weight"), &[i, d], Init::Random);
        add(format!("{l}.mlp.down_proj.weight"), &[d, i], Init::Random);
        add(format!("{l}.input_layernorm.weight"), &[d], Init::Ones);
        add(
            format!("{l}.post_attention_layernorm.weight"),
            &[d],
            Init::Ones,
        );
    }
    add("norm.weight".into(), &[d], Init::Ones);
}

/// The safetensors layout: an 8-byte header length, a JSON header of names, dtypes, shapes and offsets,
/// then the little-endian data.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Init)>) {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = move || {
        // xorshift64*: reproducible across runs and platforms.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let bits = rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, (shape, init)) in tensors {
        let count: usize = shape.iter().product();
        let scale = 1.0 / (*shape.last().unwrap() as f32).sqrt();
        let start = data.len();
        for _ in 0..count {
            let value = match init {
                Init::Random => uniform() * scale,
                Init::Ones => 1.0,
                Init::Zeros => 0.0,
            };
            data.extend(value.to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&header).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).expect("model.safetensors");
}
