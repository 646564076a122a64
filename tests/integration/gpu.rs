//! GPU checks, for a CUDA machine: `cargo test --release --features cuda --test integration gpu -- --ignored`
//! (after `eval "$(scripts/cuda-toolchain.sh)"` where no CUDA toolkit is installed).

use futures::future::join_all;
use serde_json::json;

use crate::common::{post_sse, sse_data, start_server};

#[tokio::test]
#[ignore = "needs a CUDA GPU and a build with --features cuda"]
async fn paged_attention_serves_sixteen_concurrent_streams() {
    let base = start_server(|config| {
        config.engine.paged_attention = Some(llmserve::config::PagedAttention {
            memory: llmserve::config::GpuMemory::Utilization(0.5),
            block_size: 32,
        });
    });
    let requests = (0..16).map(|i| {
        let body = json!({"prompt": format!("{i}, {}, {},", i + 1, i + 2), "max_tokens": 32, "temperature": 0, "stream": true});
        let base = base.clone();
        async move { post_sse(&base, "/v1/completions", body).await.1 }
    });
    for raw in join_all(requests).await {
        let data = sse_data(&raw);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert!(raw.contains("\"finish_reason\":\"length\""), "{raw}");
    }
}
