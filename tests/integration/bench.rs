//! A smoke run of the benchmark client (bench/llmbench.py) against the shared server, so the tool keeps
//! working: a few requests at two concurrency levels, and its JSON checked.

use std::process::Command;

use serde_json::Value;

use crate::common::server;

#[test]
fn the_benchmark_client_measures_a_small_run() {
    let base = server();
    let out = std::env::temp_dir().join(format!("llmbench-smoke-{}.json", std::process::id()));
    let output = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/llmbench.py"))
        .args([
            "--base-url",
            &format!("{base}/v1"),
            "--concurrency",
            "1,2",
            "--requests",
            "3",
        ])
        .args([
            "--max-tokens",
            "4",
            "--warmup",
            "1",
            "--rate",
            "4",
            "--label",
            "smoke",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("python3 runs bench/llmbench.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "llmbench failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("out tok/s"), "{stdout}");
    let run: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let levels = run["levels"].as_array().unwrap();
    let loads: Vec<&str> = levels.iter().map(|l| l["load"].as_str().unwrap()).collect();
    assert_eq!(loads, ["c=1", "c=2", "r=4"]);
    for level in levels {
        assert_eq!(level["completed"], 3, "{level}");
        assert_eq!(level["failed"], 0, "{level}");
        // max_tokens 4 and no early stop on these prompts' first tokens: 4 tokens a request, from usage.
        assert_eq!(level["output_tokens"], 12, "{level}");
        for metric in ["ttft_s", "e2e_s", "tpot_s", "itl_s"] {
            let p50 = level[metric]["p50"].as_f64().unwrap();
            assert!(p50 > 0.0 && p50 < 60.0, "{metric} {level}");
        }
        assert!(level["ttft_s"]["p50"].as_f64() < level["e2e_s"]["p50"].as_f64());
        assert!(level["output_token_throughput"].as_f64().unwrap() > 0.0);
    }
    let lengths = run["prompt_set"]["token_lengths"].as_array().unwrap();
    assert_eq!(lengths.len(), 16);
}
