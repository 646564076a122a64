//! Tests of the metric set: its buckets and the series a scrape shows.

use super::buckets::token_buckets;
use super::*;
use crate::engine::KvCacheState;

#[test]
fn token_buckets_follow_1_2_5_up_to_the_context() {
    assert_eq!(
        token_buckets(8192),
        vec![1., 2., 5., 10., 20., 50., 100., 200., 500., 1000., 2000., 5000.]
    );
}

/// The series an inference gateway's endpoint picker reads by name: one per server, KV use weighted
/// by each cache's size, and one cache-config series that follows a swapped model.
#[test]
fn the_server_load_is_one_series_each_whatever_the_models() {
    let metrics = Metrics::new();
    let series = |text: &str, name: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    metrics.set_server_load(0, 0, &[]);
    let text = metrics.render();
    assert_eq!(
        series(&text, "llmserve_kv_cache_usage_perc"),
        ["llmserve_kv_cache_usage_perc 0"]
    );
    assert!(series(&text, "llmserve_cache_config_info").is_empty());

    let cache = |total_blocks, usage| KvCacheState {
        block_size: 32,
        total_blocks,
        usage,
    };
    metrics.set_server_load(3, 7, &[cache(100, 0.5), cache(300, 0.1)]);
    let text = metrics.render();
    assert_eq!(
        series(&text, "llmserve_num_requests_running"),
        ["llmserve_num_requests_running 3"]
    );
    assert_eq!(
        series(&text, "llmserve_num_requests_waiting"),
        ["llmserve_num_requests_waiting 7"]
    );
    // (50 + 30) of 400 blocks.
    assert_eq!(
        series(&text, "llmserve_kv_cache_usage_perc"),
        ["llmserve_kv_cache_usage_perc 0.2"]
    );
    assert_eq!(
        series(&text, "llmserve_cache_config_info"),
        ["llmserve_cache_config_info{block_size=\"32\",num_gpu_blocks=\"400\"} 1"]
    );
    metrics.set_server_load(0, 0, &[cache(50, 1.0)]);
    let text = metrics.render();
    assert_eq!(
        series(&text, "llmserve_cache_config_info"),
        ["llmserve_cache_config_info{block_size=\"32\",num_gpu_blocks=\"50\"} 1"]
    );
    assert_eq!(
        series(&text, "llmserve_kv_cache_usage_perc"),
        ["llmserve_kv_cache_usage_perc 1"]
    );
}

#[test]
fn a_finished_stream_fills_the_request_series() {
    let metrics = Metrics::new();
    metrics.declare_model("m", "v");
    metrics.observe_request(&RequestOutcome {
        route: "/v1/chat/completions",
        method: "POST",
        status: 200,
        duration: Duration::from_millis(900),
        model: Some("m"),
        model_version: Some("v"),
        prompt_tokens: Some(12),
        completion_tokens: Some(5),
        finish_reason: Some("length"),
        queue_time: Some(Duration::from_millis(3)),
        time_to_first_token: Some(Duration::from_millis(120)),
        ..Default::default()
    });
    metrics.observe_token_gap("m", "v", Duration::from_millis(40), 2);
    let text = metrics.render();
    for line in [
        "llmserve_requests_total{finish_reason=\"length\",model=\"m\",model_version=\"v\",transport=\"http\"} 1",
        "llmserve_prompt_tokens_total{model=\"m\",model_version=\"v\"} 12",
        "llmserve_generation_tokens_total{model=\"m\",model_version=\"v\"} 5",
        "llmserve_time_to_first_token_seconds_count{model=\"m\",model_version=\"v\"} 1",
        "llmserve_inter_token_latency_seconds_count{model=\"m\",model_version=\"v\"} 2",
        "llmserve_inter_token_latency_seconds_bucket{model=\"m\",model_version=\"v\",le=\"0.025\"} 2",
        "llmserve_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"200\"} 1",
        "llmserve_requests_rejected_total{reason=\"overloaded\"} 0",
        "llmserve_client_disconnects_total{model=\"m\",model_version=\"v\"} 0",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains("process_resident_memory_bytes "));
    assert!(text.contains("llmserve_build_info{"));
}

#[test]
fn refusals_count_as_rejections_and_disconnects_as_aborts() {
    let metrics = Metrics::new();
    metrics.observe_request(&RequestOutcome {
        route: "/v1/completions",
        method: "POST",
        status: 429,
        model: Some("m"),
        model_version: Some("v"),
        error: Some("overloaded"),
        ..Default::default()
    });
    metrics.observe_request(&RequestOutcome {
        route: "/v1/completions",
        method: "POST",
        status: 200,
        model: Some("m"),
        model_version: Some("v"),
        queue_time: Some(Duration::ZERO),
        time_to_first_token: Some(Duration::from_millis(50)),
        completion_tokens: Some(3),
        client_disconnected: true,
        ..Default::default()
    });
    let text = metrics.render();
    assert!(text.contains("llmserve_requests_rejected_total{reason=\"overloaded\"} 1"));
    assert!(text.contains(
        "llmserve_requests_total{finish_reason=\"abort\",model=\"m\",model_version=\"v\",transport=\"http\"} 1"
    ));
    assert!(text.contains("llmserve_client_disconnects_total{model=\"m\",model_version=\"v\"} 1"));
}
