//! The `llmserve` binary: parse flags, set up logs, serve until stopped.

use std::process::ExitCode;

use clap::Parser;
use llmserve::config::Cli;
use llmserve::{server, telemetry};

mod cpu_check;

#[tokio::main]
async fn main() -> ExitCode {
    // `llmserve keys new [ID]`: a fresh API key and its `[[keys]]` table, then exit.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("keys") {
        return match (args.get(2).map(String::as_str), args.get(3)) {
            (Some("new"), id) if args.len() <= 4 => {
                print!(
                    "{}",
                    llmserve::config::keys::new_key_text(id.map_or("my-key", |s| s.as_str()))
                );
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("usage: llmserve keys new [ID]");
                ExitCode::from(2)
            }
        };
    }
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
