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

/// The build targets x86-64-v3 (AVX2 and friends). On an older CPU the binary must say so and exit 1
/// instead of dying of SIGILL (src/cpu_check.rs). Run under qemu-user on emulated CPUs: a Nehalem (SSE4.2,
/// no AVX) and a Sandy Bridge (AVX, no AVX2) are refused with the message; a Haswell and qemu's `max` CPU
/// pass the check and print the version.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn a_cpu_without_avx2_gets_a_message_instead_of_sigill() {
    let qemu = "qemu-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-x86_64 is missing: scripts/test-tools.sh installs it (Debian qemu-user)"
        );
        eprintln!("skipped: no qemu-x86_64 (scripts/test-tools.sh installs it)");
        return;
    }
    let binary = env!("CARGO_BIN_EXE_llmserve");
    for cpu in ["Nehalem", "SandyBridge"] {
        let out = Command::new(qemu)
            .args(["-cpu", cpu, binary, "--version"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cpu}: {stderr}");
        // qemu may warn first about features its emulator lacks.
        let message = stderr
            .lines()
            .find(|line| line.starts_with("llmserve: "))
            .unwrap_or_default();
        assert!(
            message.starts_with("llmserve: this CPU lacks AVX2")
                && message.contains("target-cpu=x86-64"),
            "{cpu}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{cpu}: nothing else runs");
    }
    // Haswell, the first x86-64-v3 CPU, and qemu's `max` pass.
    for cpu in ["Haswell", "max"] {
        let out = Command::new(qemu)
            .args(["-cpu", cpu, binary, "--version"])
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("llmserve "),
            "{cpu} has AVX2: {out:?}"
        );
    }
}
