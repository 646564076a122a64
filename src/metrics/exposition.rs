//! The Prometheus text exposition of every series, rendered at `/metrics`.

use prometheus::{Encoder, TextEncoder};

use super::Metrics;

impl Metrics {
    pub fn render(&self) -> String {
        self.process.refresh();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of valid metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}
