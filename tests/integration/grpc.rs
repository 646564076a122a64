//! The gRPC front against a server of its own (`--grpc-port`), driven by a Python client generated from
//! proto/ with grpcio-tools (tests/grpc/): the same greedy tokens as HTTP, status codes, cancellation,
//! health, reflection; then health and refusals while the server drains; and API keys on every call.

use crate::common::{start_in_process, start_server_running};
use crate::openai_python::pytest;

fn suite(phase: &str, http: &str, grpc: &str) {
    suite_with(phase, http, grpc, &[]);
}

fn suite_with(phase: &str, http: &str, grpc: &str, extra: &[(&str, String)]) {
    let mut env = vec![
        ("LLMSERVE_BASE_URL", http.to_string()),
        ("LLMSERVE_GRPC_ADDR", grpc.to_string()),
        ("LLMSERVE_GRPC_PHASE", phase.to_string()),
    ];
    env.extend(extra.iter().cloned());
    pytest("grpc", &env);
}

/// API keys on gRPC: the same keys, roles and model lists as HTTP, from `authorization` or `x-api-key`
/// metadata.
#[test]
fn grpc_with_keys() {
    let dir = std::env::temp_dir().join(format!("llmserve-grpc-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model =
        llmserve::default_model::ensure(&crate::common::cache_dir()).expect("the default model");
    let file = dir.join("llmserve.toml");
    let (user, metrics) = ("sk-test-grpc-user-1a2b3c", "sk-test-grpc-metrics-4d5e6f");
    std::fs::write(
        &file,
        format!(
            "[[models]]\nname = \"smollm2\"\n[[models.versions]]\nversion = \"v1\"\nsource = \"{}\"\n\
             [aliases]\nchat = {{ \"smollm2@v1\" = 100 }}\n\
             [[keys]]\nid = \"app\"\nkey = \"{user}\"\nrole = \"user\"\nmodels = [\"smollm2\"]\n\
             [[keys]]\nid = \"scrape\"\nkey = \"{metrics}\"\nrole = \"metrics\"\n",
            model.display()
        ),
    )
    .unwrap();
    let models_file = file.clone();
    let server = start_server_running(move |config| {
        config.models_file = Some(models_file);
        config.server.grpc_port = Some(0);
    });
    let grpc = server.grpc_addr.expect("--grpc-port is set").to_string();
    suite_with(
        "keys",
        &server.base,
        &grpc,
        &[
            ("LLMSERVE_GRPC_USER_KEY", user.to_string()),
            ("LLMSERVE_GRPC_METRICS_KEY", metrics.to_string()),
        ],
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn grpc_front_suite() {
    let server = start_server_running(|config| config.server.grpc_port = Some(0));
    let grpc = server.grpc_addr.expect("--grpc-port is set").to_string();
    suite("ready", &server.base, &grpc);
    server.state.models.start_draining();
    suite("draining", &server.base, &grpc);
}

/// While the model loads, health is NOT_SERVING and calls get UNAVAILABLE. The model file is a FIFO, so
/// loading waits, deterministically, until the test writes to it (a broken file: the load then fails and
/// that server stops).
#[test]
fn grpc_health_while_loading() {
    let dir = std::env::temp_dir().join(format!("llmserve-grpc-loading-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("still-loading.gguf");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let model = fifo.clone();
    // The broken file written below fails the load: that server then stops.
    let server = start_in_process(move |config| {
        config.model.source = llmserve::config::ModelSource::GgufFile(model);
        config.server.grpc_port = Some(0);
    });
    let grpc = server.grpc_addr.expect("--grpc-port is set");
    suite("loading", &server.base, &grpc.to_string());
    std::fs::write(&fifo, b"not a GGUF file").expect("the loader reads the FIFO");
    let _ = std::fs::remove_dir_all(&dir);
}
