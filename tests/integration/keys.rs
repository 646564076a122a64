//! API keys, roles and per-key limits on the real binary (tests/keys/, the official openai SDK): see
//! that suite's docstring. Then the server's JSON logs of the whole run are searched for the keys and
//! their hashes: neither may appear.

use std::path::PathBuf;

use crate::common::cache_dir;
use crate::drain::{signal, spawn_binary, wait_exit};
use crate::openai_python::pytest;

/// Key name → (plaintext key, the `[[keys]]` fields after `key`).
const KEYS: &[(&str, &str, &str)] = &[
    ("ops", "sk-test-ops-7f3a9c1e5b", "role = \"admin\""),
    (
        "app",
        "sk-test-app-2d8e4f6a0c",
        "role = \"user\"\nmodels = [\"smollm2\"]",
    ),
    ("scrape", "sk-test-scrape-9b1c3d5e7f", "role = \"metrics\""),
    (
        "old",
        "sk-test-old-4a6c8e0b2d",
        "role = \"user\"\nexpires = \"2020-01-01T00:00:00Z\"",
    ),
    ("batch", "sk-test-batch-1e3g5i7k9m", "role = \"batch\""),
    ("rpm", "sk-test-rpm-6f8h0j2l4n", "role = \"user\"\nrpm = 3"),
    (
        "tpm",
        "sk-test-tpm-3c5e7g9i1k",
        "role = \"user\"\ntpm = 300",
    ),
    ("gone", "sk-test-gone-8d0f2h4j6l", "role = \"user\""),
];

fn models_file(dir: &std::path::Path) -> PathBuf {
    let model = llmserve::default_model::ensure(&cache_dir()).expect("the default model");
    let mut text = String::new();
    for name in ["smollm2", "other"] {
        text.push_str(&format!(
            "[[models]]\nname = \"{name}\"\n[[models.versions]]\nversion = \"v1\"\nsource = \"{}\"\nmax_num_seqs = 4\n\n",
            model.display()
        ));
    }
    text.push_str("[roles]\nbatch = [\"completions\", \"models.read\"]\n\n");
    // The revoked key comes last: the suite cuts the file there to revoke it.
    for (id, key, rest) in KEYS {
        text.push_str(&format!(
            "[[keys]]\nid = \"{id}\"\nkey = \"{key}\"\n{rest}\n\n"
        ));
    }
    let path = dir.join("llmserve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn keys_roles_and_limits_with_the_official_sdk_and_no_key_in_the_logs() {
    let dir = std::env::temp_dir().join(format!("llmserve-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = models_file(&dir);
    let file_arg = file.display().to_string();
    // The suite reloads the file itself (and checks what the reload changed): no polling beside it.
    let (mut child, addr, lines) = spawn_binary(&[
        "--config",
        &file_arg,
        "--config-poll",
        "0",
        "--cors-allow-origin",
        "https://chat.example.com",
    ]);
    let mut env = vec![
        ("LLMSERVE_BASE_URL", format!("http://{addr}")),
        ("LLMSERVE_MODELS_FILE", file_arg.clone()),
    ];
    let names: Vec<String> = KEYS
        .iter()
        .map(|(id, _, _)| format!("LLMSERVE_KEY_{}", id.to_uppercase()))
        .collect();
    for ((_, key, _), name) in KEYS.iter().zip(&names) {
        env.push((name.as_str(), key.to_string()));
    }
    let outcome = std::panic::catch_unwind(|| pytest("keys", &env));
    signal(&child, "TERM");
    let code = wait_exit(&mut child, std::time::Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert_eq!(code, 0);
    let logs = lines.lock().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("\"key_id\":\"app\"")),
        "requests are logged with their key id"
    );
    for (id, key, _) in KEYS {
        let hash = llmserve::config::keys::hex(&llmserve::config::keys::hash_key(key));
        for line in logs.iter() {
            assert!(!line.contains(key), "key `{id}` logged: {line}");
            assert!(!line.contains(&hash), "hash of key `{id}` logged: {line}");
        }
    }
}
