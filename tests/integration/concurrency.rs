//! Continuous batching: concurrent streams all make progress; none waits for another to finish.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use serde_json::json;

use crate::common::{open_sse, start_server};

#[tokio::test]
async fn two_concurrent_streams_both_progress_before_either_finishes() {
    let base = start_server(|_| {});
    let timeline: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let prompts = ["1, 2, 3, 4, 5,", "Here is a list of fruits: apple, banana,"];
    let mut tasks = Vec::new();
    for (id, prompt) in prompts.into_iter().enumerate() {
        let (base, timeline) = (base.clone(), timeline.clone());
        tasks.push(tokio::spawn(async move {
            let body =
                json!({"prompt": prompt, "max_tokens": 40, "temperature": 0, "stream": true});
            let mut events = open_sse(&base, "/v1/completions", &body).await;
            while let Some(bytes) = events.next().await {
                let bytes = bytes.unwrap();
                if String::from_utf8_lossy(&bytes).contains("\"text\":\"") {
                    timeline.lock().unwrap().push((id, Instant::now()));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let timeline = timeline.lock().unwrap();
    let first = |id| timeline.iter().find(|(i, _)| *i == id).unwrap().1;
    let last = |id| timeline.iter().rev().find(|(i, _)| *i == id).unwrap().1;
    assert!(
        first(1) < last(0),
        "stream 1 started only after stream 0 finished"
    );
    assert!(
        first(0) < last(1),
        "stream 0 started only after stream 1 finished"
    );
    let switches = timeline.windows(2).filter(|w| w[0].0 != w[1].0).count();
    println!(
        "{} chunks, {} switches between the two streams",
        timeline.len(),
        switches
    );
    assert!(
        switches >= 4,
        "the streams were not interleaved: {switches} switches"
    );
}
