//! Many versions in one server (the real binary, real engines): a weighted canary shifted 100/0 → 50/50 →
//! 0/100 under a steady load of streaming and non-streaming requests, a reload that adds a version, promote,
//! roll back, unload: zero failed requests, zero truncated streams, every answer naming its version.
//! Also: a broken models file changes nothing, SIGHUP with the same file is a no-op, an unloaded
//! version's memory comes back, and a models file swapped as the kubelet swaps a ConfigMap's is applied
//! without a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{cache_dir, client, sse_data};
use crate::drain::{signal, spawn_binary, wait_exit, Lines, Server};

/// The admin key and the client key of the models file (`[[keys]]`, plaintext here: hashed at load).
const TOKEN: &str = "sk-test-admin-0123456789";
const USER_KEY: &str = "sk-test-user-0123456789";

/// The default model's file, fetched if this test runs first.
fn model_file() -> PathBuf {
    llmserve::default_model::ensure(&cache_dir()).expect("the default model")
}

fn models_file(dir: &Path, versions: &[&str], aliases: &str) -> PathBuf {
    let model = model_file();
    let mut text = String::from("[[models]]\nname = \"smollm2\"\n");
    for version in versions {
        text.push_str(&format!(
            "[[models.versions]]\nversion = \"{version}\"\nsource = \"{}\"\nmax_num_seqs = 4\n",
            model.display()
        ));
    }
    text.push_str(&format!("\n[aliases]\n{aliases}\n"));
    text.push_str(&format!(
        "\n[[keys]]\nid = \"ops\"\nkey = \"{TOKEN}\"\nrole = \"admin\"\n\
         \n[[keys]]\nid = \"app\"\nkey = \"{USER_KEY}\"\nrole = \"user\"\n"
    ));
    let path = dir.join("llmserve.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmserve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn admin(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, format!("http://{addr}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn model_status(addr: SocketAddr, id: &str) -> Option<String> {
    let response = client()
        .get(format!("http://{addr}/v1/models/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    if response.status().as_u16() == 404 {
        return None;
    }
    let body: Value = response.json().await.unwrap();
    Some(body["status"].as_str().unwrap().to_string())
}

/// Waits until `id` has this status (`None`: gone).
async fn until_status(addr: SocketAddr, id: &str, want: Option<&str>) {
    let started = Instant::now();
    while model_status(addr, id).await.as_deref() != want {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{id} never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// One request's outcome as the driver saw it.
#[derive(Debug, Clone)]
struct Outcome {
    sent: Instant,
    done: Instant,
    /// The version that answered, from the header (checked equal to `system_fingerprint`).
    version: Option<String>,
    /// Why it counts as failed: a status other than 200, an error event, a stream without its finish or
    /// `[DONE]`, a response without its version.
    failure: Option<String>,
}

/// Sends different chat requests to `chat`, streaming and not, from `workers` loops until stopped.
fn drive(
    addr: SocketAddr,
    workers: usize,
    stop: Arc<AtomicBool>,
    answered: Answered,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    (0..workers)
        .map(|worker| {
            let stop = stop.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let stream = worker % 2 == 0;
                    let body = json!({
                        "model": "chat",
                        // A caller per request: the split is by weight, not stuck to the key's id.
                        "user": format!("worker-{worker}-request-{n}"),
                        "messages": [{"role": "user", "content": format!("Worker {worker}, request {n}: name a colour and a number.")}],
                        "max_tokens": 6 + (n % 5),
                        "temperature": 0,
                        "stream": stream,
                    });
                    let outcome = send(addr, body, stream).await;
                    answered.lock().unwrap().push(outcome.sent);
                    outcomes.push(outcome);
                }
                outcomes
            })
        })
        .collect()
}

async fn send(addr: SocketAddr, body: Value, stream: bool) -> Outcome {
    let sent = Instant::now();
    let failed = |why: String, version: Option<String>| Outcome {
        sent,
        done: Instant::now(),
        version,
        failure: Some(why),
    };
    let response = match client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(USER_KEY)
        .json(&body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return failed(format!("send: {error}"), None),
    };
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("x-llmserve-model-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = match response.text().await {
        Ok(text) => text,
        Err(error) => return failed(format!("body: {error}"), version),
    };
    if status != 200 {
        return failed(format!("{status}: {text}"), version);
    }
    let Some(header) = version.clone() else {
        return failed("no x-llmserve-model-version".into(), None);
    };
    let fingerprints: Vec<String> = if stream {
        let events = sse_data(&text);
        if events.last().map(String::as_str) != Some("[DONE]") {
            return failed(format!("truncated stream: {text}"), version);
        }
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        if let Some(error) = chunks.iter().find(|c| c.get("error").is_some()) {
            return failed(format!("error event: {error}"), version);
        }
        if !chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string())
        {
            return failed(format!("stream without a finish: {text}"), version);
        }
        if chunks.iter().any(|c| c["model"] != "chat") {
            return failed(format!("a chunk's model is not the alias: {text}"), version);
        }
        chunks
            .iter()
            .map(|c| c["system_fingerprint"].as_str().unwrap_or("").to_string())
            .collect()
    } else {
        let answer: Value = serde_json::from_str(&text).unwrap();
        if answer["model"] != "chat" || !answer["choices"][0]["finish_reason"].is_string() {
            return failed(format!("bad answer: {text}"), version);
        }
        vec![answer["system_fingerprint"]
            .as_str()
            .unwrap_or("")
            .to_string()]
    };
    if fingerprints.iter().any(|f| *f != header) {
        return failed(
            format!("system_fingerprint differs from the header {header}: {fingerprints:?}"),
            version,
        );
    }
    Outcome {
        sent,
        done: Instant::now(),
        version,
        failure: None,
    }
}

/// When each request the workers finished was sent, as they finish: the test waits on it for traffic.
type Answered = Arc<Mutex<Vec<Instant>>>;

/// Waits until `n` requests sent at or after `from` were answered, so that a window holds enough
/// requests however slow the machine is (a fixed sleep held 27 of the 30 needed on a loaded CI run).
async fn wait_answered_since(answered: &Answered, from: Instant, n: usize) {
    let started = Instant::now();
    loop {
        let count = answered
            .lock()
            .unwrap()
            .iter()
            .filter(|sent| **sent >= from)
            .count();
        if count >= n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {count} of {n} requests answered in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Versions of the requests sent and answered wholly inside `from..to`.
fn versions_within(outcomes: &[Outcome], from: Instant, to: Instant) -> Vec<String> {
    outcomes
        .iter()
        .filter(|o| o.sent >= from && o.done <= to)
        .filter_map(|o| o.version.clone())
        .collect()
}

/// What a registry listing says, without the request counts that move with traffic.
fn shape(models: &Value) -> Vec<Value> {
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["id"], m["status"], m["weights"], m["pending_weights"]]))
        .collect()
}

fn log_contains(lines: &Lines, needle: &str) -> bool {
    lines.lock().unwrap().iter().any(|l| l.contains(needle))
}

async fn wait_log(lines: &Lines, needle: &str) {
    let started = Instant::now();
    while !log_contains(lines, needle) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no log line with {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_canary_is_shifted_promoted_rolled_back_and_unloaded_under_load_with_no_failed_request() {
    let dir = temp_dir("canary");
    let file = models_file(
        &dir,
        &["v1", "v2"],
        "chat = { \"smollm2@v1\" = 100, \"smollm2@v2\" = 0 }",
    );
    let file_arg = file.display().to_string();
    // Reloads come from this test (and it checks what each changed): no polling beside them.
    let (child, addr, lines) = spawn_binary(&["--config", &file_arg, "--config-poll", "0"]);
    let mut child = Server(child);
    let pid = child.0.id();
    let (_, models) = admin(addr, reqwest::Method::GET, "/admin/models", None).await;
    assert_eq!(models["default_model"], "smollm2");
    wait_ready_versions(addr, &["smollm2@v1", "smollm2@v2"]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Answered::default();
    // Each change is marked when it was requested and when its call returned: a window between two changes
    // runs from the first's return to the second's request, so no request in it can see either change half done.
    let start = Instant::now();
    let mut marks = vec![("start", start, start)];
    let workers = drive(addr, 4, stop.clone(), answered.clone());
    // Each window waits for answered requests, not for seconds: a window's assertions need traffic in it.
    let last_mark = |marks: &Vec<(&str, Instant, Instant)>| marks.last().unwrap().2;
    wait_answered_since(&answered, last_mark(&marks), 8).await;

    // 100/0 → 50/50.
    let requested = Instant::now();
    let (status, alias) = admin(
        addr,
        reqwest::Method::PUT,
        "/admin/aliases/chat",
        Some(json!({"weights": {"smollm2@v1": 50, "smollm2@v2": 50}})),
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    assert_eq!(alias["weights"]["smollm2@v2"], 50);
    marks.push(("50/50", requested, Instant::now()));
    wait_answered_since(&answered, last_mark(&marks), 40).await;

    // 50/50 → 0/100.
    let requested = Instant::now();
    let (status, _) = admin(
        addr,
        reqwest::Method::PUT,
        "/admin/aliases/chat",
        Some(json!({"weights": {"smollm2@v1": 0, "smollm2@v2": 100}})),
    )
    .await;
    assert_eq!(status, 200);
    marks.push(("0/100", requested, Instant::now()));
    wait_answered_since(&answered, last_mark(&marks), 8).await;

    // A new version through the file: the reload loads it and changes nothing else (the weights shifted
    // above stand: the file's `chat` line did not change).
    models_file(
        &dir,
        &["v1", "v2", "v3"],
        "chat = { \"smollm2@v1\" = 100, \"smollm2@v2\" = 0 }",
    );
    let rss_before_v3 = resident_mib(pid);
    let (status, reload) = admin(addr, reqwest::Method::POST, "/admin/reload", None).await;
    assert_eq!(status, 200, "{reload}");
    assert_eq!(reload["changes"], json!(["load smollm2@v3"]));
    until_status(addr, "smollm2@v3", Some("ready")).await;
    let rss_with_v3 = resident_mib(pid);

    // Promote v3, then roll back to v2.
    let requested = Instant::now();
    let (status, alias) = admin(
        addr,
        reqwest::Method::POST,
        "/admin/aliases/chat/promote",
        Some(json!({"version": "smollm2@v3"})),
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    marks.push(("promote v3", requested, Instant::now()));
    wait_answered_since(&answered, last_mark(&marks), 8).await;
    let requested = Instant::now();
    let (status, alias) = admin(
        addr,
        reqwest::Method::POST,
        "/admin/aliases/chat/rollback",
        None,
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    assert_eq!(
        alias["weights"],
        json!({"smollm2@v1": 0, "smollm2@v2": 100})
    );
    marks.push(("roll back", requested, Instant::now()));
    wait_answered_since(&answered, last_mark(&marks), 8).await;

    // Unload the old version: refused while an alias routes to it (`smollm2`, the model's own name,
    // routes to its first version), accepted once that alias moved.
    let now = Instant::now();
    marks.push(("unload v1", now, now));
    let (status, refused) = admin(
        addr,
        reqwest::Method::DELETE,
        "/admin/models/smollm2/versions/v1",
        None,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "version_in_use");
    let (status, _) = admin(
        addr,
        reqwest::Method::PUT,
        "/admin/aliases/smollm2",
        Some(json!({"weights": {"smollm2@v2": 100}})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, deleted) = admin(
        addr,
        reqwest::Method::DELETE,
        "/admin/models/smollm2/versions/v1",
        None,
    )
    .await;
    assert_eq!(status, 202, "{deleted}");
    until_status(addr, "smollm2@v1", None).await;
    // Unload v3 as well (nothing routes to it after the roll back) and measure what comes back.
    let rss_before_unload = resident_mib(pid);
    let (status, _) = admin(
        addr,
        reqwest::Method::DELETE,
        "/admin/models/smollm2/versions/v3",
        None,
    )
    .await;
    assert_eq!(status, 202);
    until_status(addr, "smollm2@v3", None).await;
    // Its memory is trimmed after the engine's thread ended: the log line says when.
    let started = Instant::now();
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("version unloaded") && l.contains("smollm2@v3"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "v3 never logged its unload"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_after_unload = resident_mib(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = Instant::now();
    marks.push(("end", now, now));
    stop.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.unwrap());
    }

    // Zero failed requests, zero truncated streams, every answer named its version.
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:#?}",
        failures.len(),
        outcomes.len()
    );
    let mark = |name: &str| *marks.iter().find(|(n, _, _)| *n == name).unwrap();
    // A window opens when its change is in force and closes when the next is requested.
    let opens = |name: &str| mark(name).2;
    let closes = |name: &str| mark(name).1;
    let only = |from: &str, to: &str, version: &str| {
        let seen = versions_within(&outcomes, opens(from), closes(to));
        assert!(!seen.is_empty(), "no request between {from} and {to}");
        assert!(seen.iter().all(|v| v == version), "{from}..{to}: {seen:?}");
        seen.len()
    };
    only("start", "50/50", "smollm2@v1");
    only("0/100", "promote v3", "smollm2@v2");
    only("promote v3", "roll back", "smollm2@v3");
    only("roll back", "unload v1", "smollm2@v2");
    // The 50/50 split: Pearson's chi-square with one degree of freedom under 10.83 (p = 0.001).
    let split = versions_within(&outcomes, opens("50/50"), closes("0/100"));
    let v1 = split.iter().filter(|v| *v == "smollm2@v1").count() as f64;
    let v2 = split.iter().filter(|v| *v == "smollm2@v2").count() as f64;
    assert_eq!(v1 + v2, split.len() as f64);
    let expected = (v1 + v2) / 2.0;
    let chi_square = ((v1 - expected).powi(2) + (v2 - expected).powi(2)) / expected;
    assert!(
        split.len() >= 30 && chi_square < 10.83,
        "50/50 split: v1 {v1}, v2 {v2}"
    );
    eprintln!(
        "canary: {} requests, 0 failed; 50/50 split {v1}/{v2} (chi-square {chi_square:.2}); \
         RSS MiB: before v3 {rss_before_v3:.0}, with v3 {rss_with_v3:.0}, \
         before unloading v3 {rss_before_unload:.0}, after {rss_after_unload:.0}",
        outcomes.len()
    );
    // An unloaded version's memory comes back: at least half of its weights. (What loading it added is
    // printed, not asserted: memory the process freed meanwhile, such as v1's, is reused by the load,
    // and one run measured -4 MiB for it.)
    let weights_mib = std::fs::metadata(model_file()).unwrap().len() as f64 / (1024.0 * 1024.0);
    let returned = rss_before_unload - rss_after_unload;
    assert!(
        returned > weights_mib / 2.0,
        "unloading v3 returned {returned:.0} MiB of its {weights_mib:.0} MiB of weights"
    );

    signal(&child.0, "TERM");
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until every version named is ready.
async fn wait_ready_versions(addr: SocketAddr, ids: &[&str]) {
    for id in ids {
        until_status(addr, id, Some("ready")).await;
    }
}

#[actix_web::test]
async fn a_broken_models_file_changes_nothing_and_sighup_with_the_same_file_is_a_no_op() {
    let dir = temp_dir("reload");
    let file = models_file(&dir, &["v1"], "chat = { \"smollm2@v1\" = 100 }");
    let file_arg = file.display().to_string();
    // Reloads come from this test (and it checks what each changed): no polling beside them.
    let (child, addr, lines) = spawn_binary(&["--config", &file_arg, "--config-poll", "0"]);
    let mut child = Server(child);
    let (_, before) = admin(addr, reqwest::Method::GET, "/admin/models", None).await;

    // SIGHUP with the same file: nothing changes.
    signal(&child.0, "HUP");
    wait_log(&lines, "reload: nothing changed").await;
    let (_, after) = admin(addr, reqwest::Method::GET, "/admin/models", None).await;
    assert_eq!(shape(&before), shape(&after));

    // Broken files, by reload call and by SIGHUP: refused with the reason, nothing changes, still serving.
    let broken = [
        ("[[models]\nname = ", "TOML parse error"),
        (
            "[[models]]\nname = \"smollm2\"\n[[models.versions]]\nversion = \"v1\"\nsource = \"/no/such.gguf\"\n",
            "no such file",
        ),
        (
            "[[models]]\nname = \"smollm2\"\n[[models.versions]]\nversion = \"v1\"\n[aliases]\nchat = { \"smollm2@v9\" = 1 }\n",
            "no version `smollm2@v9`",
        ),
    ];
    for (text, reason) in broken {
        std::fs::write(&file, text).unwrap();
        let (status, refused) = admin(addr, reqwest::Method::POST, "/admin/reload", None).await;
        assert_eq!(status, 400, "{refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
        let (_, now) = admin(addr, reqwest::Method::GET, "/admin/models", None).await;
        assert_eq!(
            shape(&before),
            shape(&now),
            "a refused file changed the registry"
        );
    }
    signal(&child.0, "HUP");
    wait_log(&lines, "reload refused").await;
    let response = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(USER_KEY)
        .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["system_fingerprint"], "smollm2@v1");
    let (_, now) = admin(addr, reqwest::Method::GET, "/admin/models", None).await;
    assert_eq!(shape(&before), shape(&now));

    // Without a key the admin API answers 401, with a user key 403; health needs no key, and reports
    // each alias to a key that may read the models (to nobody else: issue 27).
    let response = client()
        .get(format!("http://{addr}/admin/models"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = client()
        .get(format!("http://{addr}/admin/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (status, anonymous) =
        crate::common::get_json(&format!("http://{addr}"), "/health/ready").await;
    assert_eq!(status, 200);
    assert_eq!(anonymous, json!({"status": "ok"}));
    let health: Value = client()
        .get(format!("http://{addr}/health/ready"))
        .bearer_auth(USER_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aliases: Vec<&str> = health["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(aliases, ["smollm2", "chat"]);

    signal(&child.0, "TERM");
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), 0);
    let _ = std::fs::remove_dir_all(dir);
}

/// A ConfigMap mounted as a directory, as the kubelet lays it out: the file is a link through `..data`,
/// itself a link to a timestamped directory, and an update swaps `..data` in one rename. Nobody signals
/// the server; `--config-poll` sees the content change and applies it (a new key), and a broken update is
/// refused with nothing changed.
#[actix_web::test]
async fn a_models_file_swapped_as_a_configmap_is_applied_without_a_signal() {
    let dir = temp_dir("configmap");
    let publish = |generation: &str, text: &str| {
        let data = dir.join(format!("..{generation}"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("llmserve.toml"), text).unwrap();
        let link = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("..{generation}"), &link).unwrap();
        std::fs::rename(&link, dir.join("..data")).unwrap();
    };
    let written = models_file(&dir, &["v1"], "chat = { \"smollm2@v1\" = 100 }");
    let first = std::fs::read_to_string(&written).unwrap();
    std::fs::remove_file(&written).unwrap();
    publish("2026_12_07_1", &first);
    std::os::unix::fs::symlink("..data/llmserve.toml", dir.join("llmserve.toml")).unwrap();
    let file_arg = dir.join("llmserve.toml").display().to_string();
    let (child, addr, lines) = spawn_binary(&["--config", &file_arg, "--config-poll", "1"]);
    let mut child = Server(child);

    const NEW_KEY: &str = "sk-test-new-after-swap-5b7d";
    let models = |key: &'static str| async move {
        client()
            .get(format!("http://{addr}/v1/models"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(models(NEW_KEY).await, 401);
    publish(
        "2026_12_07_2",
        &format!("{first}\n[[keys]]\nid = \"new\"\nkey = \"{NEW_KEY}\"\nrole = \"user\"\n"),
    );
    wait_log(&lines, "keys replaced").await;
    assert_eq!(models(NEW_KEY).await, 200);
    assert_eq!(models(USER_KEY).await, 200);

    publish("2026_12_07_3", "[[models]\nname = ");
    wait_log(&lines, "reload refused").await;
    assert_eq!(
        models(NEW_KEY).await,
        200,
        "a broken update changes nothing"
    );

    signal(&child.0, "TERM");
    assert_eq!(wait_exit(&mut child.0, Duration::from_secs(30)), 0);
    let _ = std::fs::remove_dir_all(dir);
}
