//! The official `openai` Node SDK against a server of its own (tests/node/, run with `node --test`).
//!
//! The SDK is installed from npm into the cache (`scripts/node-env.sh`, which the test command runs; this
//! test runs it too when the packages are missing).

use std::path::PathBuf;
use std::process::Command;

use crate::common::{cache_dir, model_name, start_server};
use crate::vision;

fn node_modules() -> PathBuf {
    let env = cache_dir().join("node-env");
    let status = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/node-env.sh"))
        .arg(&env)
        .status()
        .expect("running scripts/node-env.sh");
    assert!(
        status.success(),
        "could not set up the Node test environment"
    );
    env.join("node_modules")
}

#[test]
fn official_node_sdk_suite() {
    let base = start_server(|_| {});
    node_test(
        "sdk.test.cjs",
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

/// Runs a `node --test` file of tests/node/ with the SDK installed and these environment variables; fails
/// the test with its output when the file fails.
pub fn node_test(file: &str, env: &[(&str, String)]) {
    let path = format!("{}/tests/node/{file}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("node")
        .args(["--test", &path])
        .env("NODE_PATH", node_modules())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the openai Node SDK suite tests/node/{file} failed:\n{stdout}"
    );
}
