//! The histograms' buckets: vLLM's, and the 1-2-5 token-count buckets.

/// vLLM's `time_to_first_token_seconds` buckets.
pub(super) const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's `inter_token_latency_seconds` buckets.
pub(super) const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's request-latency buckets (end to end, queue).
pub(super) const REQUEST_LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// Queue waits are usually far below a second: finer buckets at the low end, then vLLM's.
pub(super) const QUEUE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 60.0, 120.0, 240.0, 480.0,
];
pub(super) const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Token-count buckets reach this far (the largest contexts mistral.rs serves).
pub(super) const MAX_TOKEN_BUCKET: usize = 131_072;

/// vLLM's 1-2-5 buckets for token counts, up to the model's context.
pub(super) fn token_buckets(max: usize) -> Vec<f64> {
    let mut buckets = Vec::new();
    let mut magnitude = 1usize;
    'outer: loop {
        for step in [1, 2, 5] {
            let bound = step * magnitude;
            if bound > max {
                break 'outer;
            }
            buckets.push(bound as f64);
        }
        magnitude *= 10;
    }
    buckets
}
