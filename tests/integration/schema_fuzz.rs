//! Schemathesis over the served `/openapi.json` (the committed document plus the loaded model's bounds):
//! every operation, examples + coverage + fuzzing phases, deterministic, all checks. It must find no server
//! error, no schema-valid request refused (except for the rules JSON Schema cannot state, which the
//! operations' descriptions give and tests/schema/llmserve_hooks.py names), no schema-violating request
//! accepted and no response outside its schema. Generation is capped at a few tokens by the hooks.
//! `/v1/embeddings` is fuzzed on the tiny embedding model the tests write, the rest on the default model.

use std::process::Command;

use crate::common::{cache_dir, start_server};
use crate::tiny_embedding;

/// Examples per operation and phase: about 1,500 requests, a minute here.
const MAX_EXAMPLES: &str = "100";

#[test]
fn the_served_document_is_what_the_server_does() {
    let base = start_server(|_| {});
    // The default model generates text: `/v1/embeddings` is fuzzed below, on an embedding model.
    let stdout = schemathesis(&base, &["--exclude-path", "/v1/embeddings"]);
    // The one warning allowed: a fuzzer cannot guess a stored response's id, so retrieving and deleting
    // one only ever meets 404 here (the SDK suites retrieve and delete real ones).
    let only_missing_responses = stdout.contains("1 warning in")
        && stdout.contains("Missing test data: 2 operations")
        && stdout.contains("GET /v1/responses/{response_id}")
        && stdout.contains("DELETE /v1/responses/{response_id}");
    assert!(
        stdout.contains("No issues found") || only_missing_responses,
        "schemathesis found requests the document and the server disagree on:\n{stdout}"
    );

    let dir = tiny_embedding::write_model();
    let model_dir = dir.clone();
    let embedding = start_server(move |config| {
        config.model.source = llmserve::config::ModelSource::LocalDir(model_dir);
    });
    let stdout = schemathesis(&embedding, &["--include-path", "/v1/embeddings"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        stdout.contains("No issues found"),
        "schemathesis found embeddings requests the document and the server disagree on:\n{stdout}"
    );
}

/// Runs schemathesis over a server's document (with `filters` on its operations); fails on a non-zero
/// exit or any failure, and returns its report.
fn schemathesis(base: &str, filters: &[&str]) -> String {
    let venv = cache_dir().join("test-venv");
    let schemathesis = venv.join("bin").join("schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is not installed: run scripts/python-env.sh"
    );
    let output = Command::new(schemathesis)
        .args([
            "run",
            &format!("{base}/openapi.json"),
            "--max-examples",
            MAX_EXAMPLES,
            "--checks",
            "all",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-deterministic",
            // Fuzzed chat requests can carry dozens of tools: one is a 1,603-token prompt, 13 s to prefill
            // on 2 quiet cores, more while the other tests' servers share them; schemathesis's default
            // 10 s limit would fail it. A hang still fails.
            "--request-timeout",
            "60",
            "--max-response-time",
            "60",
            "--no-color",
        ])
        .args(filters)
        .env("SCHEMATHESIS_HOOKS", "llmserve_hooks")
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schema"),
        )
        // Its example database and reports stay out of the clone.
        .current_dir(std::env::temp_dir())
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && !stdout.contains("Failures:"),
        "schemathesis found requests the document and the server disagree on:\n{stdout}"
    );
    stdout
}
