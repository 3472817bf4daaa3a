//! The `orchestrator` binary: parses the command line and hands over to
//! the library.

use std::process::ExitCode;

use clap::Parser;

mod cli;

/// glibc's allocator took a quarter of `serve`'s CPU time at saturation
/// (BENCHMARKS.md); mimalloc is a drop-in replacement.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    // Logs go to stderr so command output stays clean; they carry ids,
    // steps and outcomes, never personal data.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOCKET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
