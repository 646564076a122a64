//! The `llmserve` binary: parse flags, set up logs, serve until stopped.

use std::process::ExitCode;

use clap::Parser;
use llmserve::config::Cli;
use llmserve::{server, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("llmserve: {error}");
            return ExitCode::from(2);
        }
    };
    // Dropped at the end of main: the last lines (drain, exit) are flushed.
    let _log_guard = telemetry::init(config.telemetry.log_format);
    let running = match server::start(config) {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(address = %running.local_addr, "listening; the model loads in the background (see /health/ready)");
    match running.serve_until_signalled().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "exiting");
            ExitCode::FAILURE
        }
    }
}
