//! The official `openai` Python SDK against the shared server (tests/python/, run with pytest).
//!
//! The SDK is installed into a virtual environment in the cache (`scripts/python-env.sh`, which the test
//! command runs; this test runs it too when the environment is missing).

use std::path::PathBuf;
use std::process::Command;

use crate::common::{cache_dir, model_name, start_server};
use crate::vision;

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("LLMSERVE_TEST_PYTHON") {
        return python.into();
    }
    let venv = cache_dir().join("test-venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let status = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/python-env.sh"
            ))
            .arg(&venv)
            .status()
            .expect("running scripts/python-env.sh");
        assert!(
            status.success(),
            "could not set up the Python test environment"
        );
    }
    python
}

/// Runs a pytest suite (a folder of tests/) with these environment variables; fails the test with its
/// output when the suite fails.
pub fn pytest(suite: &str, env: &[(&str, String)]) {
    let dir = format!("{}/tests/{suite}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", &dir])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the pytest suite tests/{suite} failed ({env:?}):\n{stdout}"
    );
}

#[test]
fn official_python_sdk_suite() {
    // A server of its own: the suite checks greedy determinism, which co-batched traffic would perturb.
    let base = start_server(|_| {});
    pytest(
        "python",
        &[
            ("LLMSERVE_BASE_URL", format!("{base}/v1")),
            ("LLMSERVE_MODEL", model_name().to_string()),
            (
                "LLMSERVE_VISION_BASE_URL",
                format!("{}/v1", vision::vision_server()),
            ),
            ("LLMSERVE_VISION_MODEL", vision::SERVED_NAME.to_string()),
        ],
    );
}
