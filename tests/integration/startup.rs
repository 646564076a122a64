//! Start-up refusals: bad flags and models mistral.rs cannot load stop the binary with a clear message,
//! never a panic.

use std::process::Command;
use std::time::Duration;

fn gguf_with_architecture(architecture: &str) -> std::path::PathBuf {
    let string = |s: &str| {
        [
            (s.len() as u64).to_le_bytes().to_vec(),
            s.as_bytes().to_vec(),
        ]
        .concat()
    };
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes()); // version
    bytes.extend(0u64.to_le_bytes()); // tensors
    bytes.extend(1u64.to_le_bytes()); // metadata entries
    bytes.extend(string("general.architecture"));
    bytes.extend(8u32.to_le_bytes()); // string value
    bytes.extend(string(architecture));
    let path = std::env::temp_dir().join(format!(
        "llmserve-{architecture}-{}.gguf",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llmserve"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn an_unsupported_gguf_architecture_is_refused_at_start_up() {
    let path = gguf_with_architecture("gemma2");
    let (code, output) = run(&[
        "--model",
        path.to_str().unwrap(),
        "--port",
        "0",
        "--log-format",
        "json",
    ]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("GGUF architecture `gemma2` is not supported"),
        "{output}"
    );
    assert!(!output.contains("panicked"), "{output}");
}

#[test]
fn a_missing_model_or_bad_flag_fails_before_binding() {
    let (code, output) = run(&["--model", "/no/such/model.gguf"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("no such file or directory"), "{output}");
    let (code, output) = run(&["--max-num-seqs", "0"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("--max-num-seqs"), "{output}");
}
