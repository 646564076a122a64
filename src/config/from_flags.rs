//! The flags checked into a `Config`: [`Cli::into_config`] and the helpers it uses.
//!
//! `into_config` takes the flags apart with an exhaustive destructuring: a flag added to [`Cli`] does not
//! compile until it is named there, and then not under `-D warnings` until it is used: no flag is ever
//! silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cli::Cli;
use super::{
    check_chat_template, check_image_limits, classify_model, paged_attention, Config, ConfigError,
    EngineSettings, GpuMemory, LimitsConfig, ModelConfig, ModelSource, PagedAttention, QueueConfig,
    ResponsesBackend, ResponsesStoreConfig, ServerConfig, TelemetryConfig,
};

impl Cli {
    /// Checks every flag and cross-field rule before any port is bound or model is loaded.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        // Every flag, by name, with no `..`: a new flag must be used here or the build fails.
        let Cli {
            models_file,
            models_file_poll,
            model,
            multimodal,
            served_model_name,
            model_version,
            host,
            port,
            max_num_seqs,
            max_queue,
            queue_timeout,
            drain_timeout,
            prefix_cache_n,
            prefix_cache_mib,
            dtype,
            paged_attn,
            paged_attn_gpu_memory,
            paged_attn_block_size,
            log_format,
            chat_template,
            isq,
            max_image_pixels,
            max_images,
            max_model_len,
            cache_dir,
            max_request_body_bytes,
            body_read_timeout,
            body_min_rate,
            sse_keep_alive,
            metrics_port,
            grpc_port,
            otlp_endpoint,
            otlp_service_name,
            http_workers,
            allow_remote_images,
            cors_allow_origin,
            limits_redis,
            limits_redis_ca_file,
            limits_replicas,
            responses_store_size,
            responses_store_mib,
            responses_store_ttl,
            responses_store,
            cpu_kernels,
            no_ui,
        } = self;
        let model_flags_given =
            model.is_some() || multimodal || served_model_name.is_some() || model_version.is_some();
        if models_file.is_some() && model_flags_given {
            return Err(ConfigError::ModelFlagsWithModelsFile);
        }
        if let Some(urls) = &limits_redis {
            for url in urls.split(',') {
                let host = url
                    .trim()
                    .strip_prefix("redis://")
                    .or_else(|| url.trim().strip_prefix("rediss://"))
                    .map(|r| r.split('/').next().unwrap_or(""))
                    .map(|h| h.rsplit('@').next().unwrap_or(""));
                if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                    return Err(ConfigError::BadLimitsRedis(redact_url(url)));
                }
            }
        }
        if limits_replicas == 0 {
            return Err(ConfigError::ZeroReplicas);
        }
        if responses_store == ResponsesBackend::Redis && limits_redis.is_none() {
            return Err(ConfigError::ResponsesStoreWithoutRedis);
        }
        for origin in &cors_allow_origin {
            let valid = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.trim_end_matches('/').ends_with("//")
                    && !origin.contains(char::is_whitespace));
            if !valid {
                return Err(ConfigError::BadCorsOrigin(origin.clone()));
            }
        }
        let cache_dir = cache_dir.or_else(default_cache_dir);
        let source = match model {
            // A models file may name no default-model version: the missing directory is its error then.
            None if models_file.is_some() => ModelSource::Default {
                cache_dir: cache_dir.clone().unwrap_or_default(),
            },
            None => ModelSource::Default {
                cache_dir: cache_dir.clone().ok_or(ConfigError::NoCacheDir)?,
            },
            Some(model) => classify_model(&model, multimodal)?,
        };
        if let Some(template) = &chat_template {
            check_chat_template(template)?;
        }
        if max_num_seqs == 0 {
            return Err(ConfigError::ZeroMaxNumSeqs);
        }
        check_image_limits(max_image_pixels, max_images)?;
        if max_model_len == Some(0) {
            return Err(ConfigError::ZeroMaxModelLen);
        }
        if sse_keep_alive == 0 {
            return Err(ConfigError::ZeroKeepAlive);
        }
        if body_read_timeout == 0 || body_min_rate == 0 {
            return Err(ConfigError::ZeroBodyDeadline);
        }
        if max_request_body_bytes < 1024 {
            return Err(ConfigError::TinyBodyLimit);
        }
        if queue_timeout == Some(0) {
            return Err(ConfigError::ZeroQueueTimeout);
        }
        if http_workers == Some(0) {
            return Err(ConfigError::ZeroWorkers);
        }
        let memory = parse_gpu_memory(&paged_attn_gpu_memory)?;
        if ![8, 16, 32].contains(&paged_attn_block_size) {
            return Err(ConfigError::BadBlockSize(paged_attn_block_size));
        }
        let settings = PagedAttention {
            memory,
            block_size: paged_attn_block_size,
        };
        let (paged_attention, paged_attention_reason) = paged_attention(paged_attn, settings)?;
        let served_name = match served_model_name {
            Some(name) if name.trim().is_empty() => return Err(ConfigError::EmptyServedName),
            Some(name) => name,
            None => default_served_name(&source),
        };
        let version = match model_version {
            Some(version) if version.trim().is_empty() => {
                return Err(ConfigError::EmptyModelVersion)
            }
            Some(version) => version,
            None => default_model_version(&source),
        };
        if let Some(endpoint) = &otlp_endpoint {
            let rest = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"));
            if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
                return Err(ConfigError::BadOtlpEndpoint(endpoint.clone()));
            }
        }
        if metrics_port.is_some() && metrics_port == Some(port) && port != 0 {
            return Err(ConfigError::MetricsPortIsApiPort);
        }
        let taken = [Some(port), metrics_port];
        if grpc_port.is_some_and(|grpc| grpc != 0 && taken.contains(&Some(grpc))) {
            return Err(ConfigError::GrpcPortTaken);
        }
        let config = Config {
            model: ModelConfig {
                source,
                served_name,
                version,
            },
            models_file,
            models_file_poll: (models_file_poll > 0).then(|| Duration::from_secs(models_file_poll)),
            paged_mode: paged_attn,
            paged_settings: settings,
            cache_dir,
            engine: EngineSettings {
                max_num_seqs,
                prefix_cache_n,
                dtype,
                paged_attention,
                chat_template,
                isq,
                max_image_pixels,
                max_images,
                max_model_len,
            },
            paged_attention_reason,
            cpu_kernels,
            prefix_cache_bytes: prefix_cache_mib.saturating_mul(1024 * 1024),
            limits: LimitsConfig {
                redis: limits_redis,
                redis_ca_file: limits_redis_ca_file,
                replicas: limits_replicas,
            },
            queue: QueueConfig {
                max_waiting: max_queue,
                timeout: queue_timeout.map(Duration::from_secs),
            },
            server: ServerConfig {
                host,
                port,
                http_workers,
                metrics_port,
                grpc_port,
                max_request_body_bytes,
                body_read_timeout: Duration::from_secs(body_read_timeout),
                body_min_rate,
                sse_keep_alive: Duration::from_secs(sse_keep_alive),
                drain_timeout: Duration::from_secs(drain_timeout),
                allow_remote_images,
                cors_allow_origins: cors_allow_origin,
                responses_store: ResponsesStoreConfig {
                    capacity: responses_store_size,
                    max_bytes: responses_store_mib.saturating_mul(1024 * 1024),
                    ttl: Duration::from_secs(responses_store_ttl),
                    backend: responses_store,
                },
                ui: !no_ui,
            },
            telemetry: TelemetryConfig {
                log_format,
                otlp_endpoint,
                otlp_service_name,
            },
        };
        // The models file is checked whole before anything starts.
        config.models_spec()?;
        Ok(config)
    }
}

fn parse_gpu_memory(value: &str) -> Result<GpuMemory, ConfigError> {
    let bad = || ConfigError::BadGpuMemory(value.to_string());
    let number: f64 = value.trim().parse().map_err(|_| bad())?;
    if number > 0.0 && number <= 1.0 {
        Ok(GpuMemory::Utilization(number as f32))
    } else if number > 1.0 && number.fract() == 0.0 {
        Ok(GpuMemory::MiB(number as usize))
    } else {
        Err(bad())
    }
}

/// A URL without its password (errors and logs show it).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("llmserve"))
}

/// `SmolLM2-135M-Instruct.Q4_1.gguf` → `SmolLM2-135M-Instruct`: clients should not have to spell the quant.
fn default_served_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Default { .. } => crate::default_model::SERVED_NAME.to_string(),
        ModelSource::GgufFile(path) => {
            strip_quant_suffix(path.file_stem().and_then(|s| s.to_str()).unwrap_or("model"))
        }
        ModelSource::LocalDir(path) => path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".to_string()),
        ModelSource::HubRepo { repo, .. } => repo.clone(),
    }
}

fn default_model_version(source: &ModelSource) -> String {
    let file_name = |path: &Path| {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".to_string())
    };
    match source {
        ModelSource::Default { .. } => crate::default_model::VERSION.to_string(),
        ModelSource::GgufFile(path) => file_name(path),
        ModelSource::LocalDir(path) => file_name(&path.canonicalize().unwrap_or(path.clone())),
        ModelSource::HubRepo { repo, .. } => repo.clone(),
    }
}

fn strip_quant_suffix(stem: &str) -> String {
    let is_quant_tag = |tag: &str| {
        let upper = tag.to_ascii_uppercase();
        [
            "Q2", "Q3", "Q4", "Q5", "Q6", "Q8", "F16", "F32", "BF16", "IQ",
        ]
        .iter()
        .any(|p| upper.starts_with(p))
    };
    match stem.rfind(['.', '-']) {
        Some(i) if i > 0 && is_quant_tag(&stem[i + 1..]) => stem[..i].to_string(),
        _ => stem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::cli::DEFAULT_PORT;
    use crate::config::PAGED_ATTENTION_BUILT;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut all = vec!["llmserve"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().into_config()
    }

    #[test]
    fn quant_suffix_is_stripped_from_served_names() {
        assert_eq!(
            strip_quant_suffix("SmolLM2-135M-Instruct.Q4_1"),
            "SmolLM2-135M-Instruct"
        );
        assert_eq!(
            strip_quant_suffix("qwen2.5-0.5b-instruct-q4_k_m"),
            "qwen2.5-0.5b-instruct"
        );
        assert_eq!(strip_quant_suffix("mymodel"), "mymodel");
        assert_eq!(strip_quant_suffix("llama-3.2-1b"), "llama-3.2-1b");
    }

    #[test]
    fn models_are_classified_before_loading() {
        assert_eq!(
            classify_model("HuggingFaceTB/SmolLM2-135M-Instruct", false),
            Ok(ModelSource::HubRepo {
                repo: "HuggingFaceTB/SmolLM2-135M-Instruct".into(),
                multimodal: false
            })
        );
        assert_eq!(
            classify_model("HuggingFaceTB/SmolVLM-256M-Instruct", true),
            Ok(ModelSource::HubRepo {
                repo: "HuggingFaceTB/SmolVLM-256M-Instruct".into(),
                multimodal: true
            })
        );
        assert!(matches!(
            classify_model("/no/such/file.gguf", false),
            Err(ConfigError::ModelNotFound(_))
        ));
        assert!(matches!(
            classify_model("../x", false),
            Err(ConfigError::ModelNotFound(_))
        ));
        assert!(matches!(
            classify_model(file!(), false),
            Ok(ModelSource::GgufFile(_))
        ));
    }

    #[test]
    fn bad_flags_fail_before_binding() {
        assert_eq!(
            parse(&["--max-num-seqs", "0"]).unwrap_err(),
            ConfigError::ZeroMaxNumSeqs
        );
        assert_eq!(
            parse(&["--sse-keep-alive", "0"]).unwrap_err(),
            ConfigError::ZeroKeepAlive
        );
        assert!(matches!(
            parse(&["--chat-template", "Cargo.toml"]).unwrap_err(),
            ConfigError::BadChatTemplate(_)
        ));
        assert_eq!(
            parse(&["--served-model-name", " "]).unwrap_err(),
            ConfigError::EmptyServedName
        );
        assert_eq!(
            parse(&["--paged-attn", "off", "--prefix-cache-n", "16"])
                .unwrap()
                .engine
                .prefix_cache_n,
            Some(16)
        );
        assert_eq!(
            parse(&["--paged-attn", "off", "--prefix-cache-n", "0"])
                .unwrap()
                .engine
                .prefix_cache_n,
            Some(0)
        );
    }

    #[test]
    fn paged_attention_is_decided_before_start_up() {
        assert_eq!(parse_gpu_memory("0.9"), Ok(GpuMemory::Utilization(0.9)));
        assert_eq!(parse_gpu_memory("8192"), Ok(GpuMemory::MiB(8192)));
        assert!(parse_gpu_memory("0").is_err() && parse_gpu_memory("1.5").is_err());
        assert_eq!(
            parse(&["--paged-attn-block-size", "12"]).unwrap_err(),
            ConfigError::BadBlockSize(12)
        );
        let config = parse(&["--paged-attn", "off"]).unwrap();
        assert_eq!(config.engine.paged_attention, None);
        if !PAGED_ATTENTION_BUILT {
            assert_eq!(
                parse(&["--paged-attn", "on"]).unwrap_err(),
                ConfigError::PagedAttentionNotBuilt
            );
            assert_eq!(parse(&[]).unwrap().engine.paged_attention, None);
        }
    }

    #[test]
    fn defaults_serve_the_default_model_on_loopback() {
        let config = parse(&["--cache-dir", "/tmp/x"]).unwrap();
        assert_eq!(config.server.host.to_string(), "127.0.0.1");
        assert_eq!(config.server.port, DEFAULT_PORT);
        assert_eq!(config.model.served_name, "SmolLM2-135M-Instruct");
        assert_eq!(
            config.model.source,
            ModelSource::Default {
                cache_dir: "/tmp/x".into()
            }
        );
    }
}
