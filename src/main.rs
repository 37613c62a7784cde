//! `crier`: one binary for every role. Parses flags, validates them (exit 64 with one line per problem,
//! before any port is bound), then calls into the crates.
//!
//! - `cli`: flags and their translation into configs.
//! - `serve`: `dev`, `broker`, `edge`: bind, run until SIGTERM/SIGINT.
//! - `client`: `publish` and `token`.
//! - `security_args`: the edge's JWT, access, origin and limit flags.

mod cli;
mod client;
mod security_args;
mod serve;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::{Cli, Command, LogFormat};

/// BSD `EX_USAGE`: bad flags or configuration.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("crier: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(dispatch(cli.command))
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Dev(args) => serve::dev(args).await,
        Command::Broker(args) => serve::broker(args).await,
        Command::Edge(args) => serve::edge(*args).await,
        Command::Publish(args) => client::publish(args).await,
        Command::Token(args) => client::token(&args),
    }
}

/// Logs go to stderr; `RUST_LOG` (e.g. `crier_edge=debug`) refines the default `info`.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Prints each problem on its own line and returns exit code 64.
fn usage_error(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("crier: {problem}");
    }
    ExitCode::from(EXIT_USAGE)
}
