//! GGUF files read and rewritten with candle: the architecture check before loading, and requantization.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

use super::EngineError;

/// `general.architecture` values mistral.rs 0.8.1 builds a GGUF model for (`pipeline/gguf.rs`, with
/// `gemma3` added by engine patch 0015); any other value panics inside its loader, so we refuse it first.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "gemma3",
    "llama",
    "mistral3",
    "phi2",
    "phi3",
    "starcoder2",
    "qwen2",
    "qwen3",
    "qwen3moe",
];

/// The architectures whose models the engine decodes as ragged batches and prefills as packed ones
/// (engine patches 0006, 0015, 0016: `Model::Llama`, which `mistral3` files load as too, and
/// `Model::Gemma3`): prompts of any lengths and cached prefixes share steps, and a prefix-cache hit
/// answers bit for bit as the cold prompt does.
pub const PACKED_PROMPT_ARCHITECTURES: &[&str] = &["gemma3", "llama", "mistral3"];

/// GGUF `general.file_type` for "mostly Q8_0" (llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`).
const FILE_TYPE_MOSTLY_Q8_0: u32 = 7;

fn read_content(path: &Path) -> Result<(gguf_file::Content, BufReader<File>), EngineError> {
    let file =
        File::open(path).map_err(|e| EngineError::Load(format!("{}: {e}", path.display())))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader).map_err(|e| {
        EngineError::Load(format!("{}: not a readable GGUF file: {e}", path.display()))
    })?;
    Ok((content, reader))
}

/// Reads the GGUF header and fails with a clear error unless mistral.rs can load this architecture.
pub fn check_architecture(path: &Path) -> Result<String, EngineError> {
    let (content, _) = read_content(path)?;
    let architecture = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| {
            EngineError::Load(format!(
                "{}: GGUF has no `general.architecture`",
                path.display()
            ))
        })?;
    if SUPPORTED_ARCHITECTURES.contains(&architecture.to_ascii_lowercase().as_str()) {
        Ok(architecture)
    } else {
        Err(EngineError::UnsupportedArchitecture {
            path: path.display().to_string(),
            architecture,
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        })
    }
}

/// Rewrites `src` to `dst` with every `from` tensor requantized to Q8_0; returns how many were converted.
///
/// candle has no SIMD kernel for Q4_1, so Q4_1 files decode ~3× slower than Q8_0 on CPU
/// (docs/benchmarks.md); Q8_0 keeps the Q4_1 weights' information.
pub fn requantize_to_q8_0(src: &Path, dst: &Path, from: GgmlDType) -> Result<usize, EngineError> {
    let load_err =
        |e: candle_core::Error| EngineError::Load(format!("requantizing {}: {e}", src.display()));
    let (mut content, mut reader) = read_content(src)?;
    let mut infos: Vec<(String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| (name.clone(), info.offset))
        .collect();
    infos.sort_by_key(|(_, offset)| *offset);

    let mut converted = 0;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, _) in infos {
        let tensor = content
            .tensor(&mut reader, &name, &Device::Cpu)
            .map_err(load_err)?;
        let tensor = if tensor.dtype() == from {
            converted += 1;
            let dense = tensor.dequantize(&Device::Cpu).map_err(load_err)?;
            QTensor::quantize(&dense, GgmlDType::Q8_0).map_err(load_err)?
        } else {
            tensor
        };
        tensors.push((name, tensor));
    }
    if converted > 0 && content.metadata.contains_key("general.file_type") {
        content.metadata.insert(
            "general.file_type".to_string(),
            Value::U32(FILE_TYPE_MOSTLY_Q8_0),
        );
    }

    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let out =
        File::create(dst).map_err(|e| EngineError::Load(format!("{}: {e}", dst.display())))?;
    let mut writer = BufWriter::new(out);
    gguf_file::write(&mut writer, &metadata, &tensor_refs).map_err(load_err)?;
    writer
        .into_inner()
        .map_err(|e| EngineError::Load(format!("{}: {e}", dst.display())))?
        .sync_all()
        .map_err(|e| EngineError::Load(format!("{}: {e}", dst.display())))?;
    Ok(converted)
}

/// The quantization most of a file's tensors use, for the start-up log and the Q4_1 warning.
pub fn dominant_dtype(path: &Path) -> Result<GgmlDType, EngineError> {
    let (content, _) = read_content(path)?;
    let mut counts: Vec<(GgmlDType, usize)> = Vec::new();
    for info in content.tensor_infos.values() {
        match counts.iter_mut().find(|(d, _)| *d == info.ggml_dtype) {
            Some((_, n)) => *n += 1,
            None => counts.push((info.ggml_dtype, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d)
        .ok_or_else(|| EngineError::Load(format!("{}: GGUF has no tensors", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn write_gguf(path: &Path, architecture: &str, dtype: GgmlDType) {
        let dense = Tensor::arange(0f32, 64.0, &Device::Cpu)
            .unwrap()
            .reshape((2, 32))
            .unwrap();
        let tensor = QTensor::quantize(&dense, dtype).unwrap();
        let arch = Value::String(architecture.to_string());
        let mut file = File::create(path).unwrap();
        gguf_file::write(
            &mut file,
            &[("general.architecture", &arch)],
            &[("w", &tensor)],
        )
        .unwrap();
    }

    #[test]
    fn unsupported_architectures_are_refused_with_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("llmserve-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let gemma = dir.join("gemma.gguf");
        write_gguf(&gemma, "gemma2", GgmlDType::Q8_0);
        let err = check_architecture(&gemma).unwrap_err();
        assert!(
            err.to_string().contains("`gemma2` is not supported"),
            "{err}"
        );
        let llama = dir.join("llama.gguf");
        write_gguf(&llama, "llama", GgmlDType::Q4_1);
        assert_eq!(check_architecture(&llama).unwrap(), "llama");
        let not_gguf = dir.join("not.gguf");
        std::fs::write(&not_gguf, b"hello").unwrap();
        assert!(matches!(
            check_architecture(&not_gguf),
            Err(EngineError::Load(_))
        ));

        let requantized = dir.join("llama-q8.gguf");
        assert_eq!(
            requantize_to_q8_0(&llama, &requantized, GgmlDType::Q4_1).unwrap(),
            1
        );
        assert_eq!(dominant_dtype(&requantized).unwrap(), GgmlDType::Q8_0);
        assert_eq!(check_architecture(&requantized).unwrap(), "llama");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
