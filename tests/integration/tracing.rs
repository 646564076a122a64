//! W3C `traceparent` continued into OTLP/HTTP spans, received by a small in-test OTLP/HTTP collector.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{client, model_name, start_server};

/// Export requests received: content type and JSON body.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// Accepts `POST /v1/traces` (OTLP/HTTP, JSON) on loopback and keeps every body it receives.
fn start_collector() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(connection) = connection else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(connection.try_clone().unwrap());
                let mut writer = connection;
                // Several requests may come on one kept-alive connection.
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    let mut content_type = String::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => content_type = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    assert!(
                        request_line.starts_with("POST /v1/traces "),
                        "{request_line}"
                    );
                    let body: Value = serde_json::from_slice(&body).expect("OTLP/JSON body");
                    store.lock().unwrap().push((content_type, body));
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                        .unwrap();
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// Every span received so far, flattened out of their resource and scope envelopes.
fn spans(received: &Mutex<Vec<(String, Value)>>) -> Vec<Value> {
    let received = received.lock().unwrap();
    let mut spans = Vec::new();
    for (content_type, body) in received.iter() {
        assert_eq!(content_type, "application/json");
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "llmserve"}})
        );
        spans.extend(
            resource["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    spans
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
        .unwrap_or_else(|| panic!("no attribute {key} in {span}"))
}

#[tokio::test]
async fn a_traceparent_is_continued_into_exported_spans() {
    let (collector, received) = start_collector();
    let base = start_server(move |config| config.telemetry.otlp_endpoint = Some(collector));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let response = client()
        .post(format!("{base}/v1/chat/completions"))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                      "temperature": 0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.bytes().await.unwrap();
    // A request without a traceparent starts a trace of its own.
    client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = spans(&received);
        if spans.iter().filter(|s| s["traceId"] == trace_id).count() >= 3
            && spans.iter().any(|s| s["name"] == "GET /v1/models")
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans so far: {spans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let server = spans
        .iter()
        .find(|s| s["traceId"] == trace_id && s["kind"] == 2)
        .expect("the server span");
    assert_eq!(server["parentSpanId"], parent);
    assert_eq!(server["name"], "POST /v1/chat/completions");
    assert_eq!(
        attribute(server, "gen_ai.request.model")["stringValue"],
        model_name()
    );
    assert_eq!(
        attribute(server, "gen_ai.usage.output_tokens")["intValue"],
        "4"
    );
    assert_eq!(
        attribute(server, "http.response.status_code")["intValue"],
        "200"
    );
    assert_eq!(server["status"]["code"], 0);
    let start: u128 = server["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = server["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end > start);
    for child in ["llmserve.queue", "llmserve.generate"] {
        let span = spans
            .iter()
            .find(|s| s["name"] == child && s["traceId"] == trace_id)
            .unwrap_or_else(|| panic!("no {child} span"));
        assert_eq!(span["parentSpanId"], server["spanId"]);
    }
    let models = spans
        .iter()
        .find(|s| s["name"] == "GET /v1/models")
        .unwrap();
    assert_ne!(models["traceId"], trace_id);
    assert_eq!(models["parentSpanId"], "");
}
