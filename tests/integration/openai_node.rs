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
    let modules = node_modules();
    let base = start_server(|_| {});
    let output = Command::new("node")
        .args([
            "--test",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/sdk.test.cjs"),
        ])
        .env("NODE_PATH", modules)
        .env("LLMSERVE_BASE_URL", format!("{base}/v1"))
        .env("LLMSERVE_MODEL", model_name())
        .env(
            "LLMSERVE_VISION_BASE_URL",
            format!("{}/v1", vision::vision_server()),
        )
        .env("LLMSERVE_VISION_MODEL", vision::SERVED_NAME)
        .output()
        .expect("running node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the openai Node SDK suite failed:\n{stdout}"
    );
}
