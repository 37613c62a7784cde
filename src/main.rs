//! `crier`: one binary for every role. Parses flags, validates them (exit 64 with one line per problem,
//! before any port is bound), then calls into the crates.
//!
//! - `cli`: flags and their translation into configs.
//! - `serve`: `dev`, `broker`, `edge`: bind, run until SIGTERM/SIGINT.
//! - `client`: `publish` and `token`.
//! - `redis_args`: the Redis flags of broker and edge.
//! - `security_args`: the edge's JWT, access, origin and limit flags.
//! - `tls_args`: TLS flags of the servers and of `publish`, with their file checks.

mod cli;
mod client;
mod redis_args;
mod security_args;
mod serve;
mod tls_args;

use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use crier_store::telemetry::{self, OtlpConfig, TelemetryError};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

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
    let otlp = match cli.command.role().map(|role| cli::otlp_config(&cli, role)).transpose() {
        Ok(otlp) => otlp.flatten(),
        Err(problems) => return usage_error(&problems),
    };
    let runtime = match runtime(cli.worker_threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("crier: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's gRPC channel must be created inside the runtime.
    let (provider, _log_writer) =
        match runtime.block_on(async { init_logging(cli.log_format, otlp.as_ref()) }) {
            Ok(logging) => logging,
            Err(err) => return usage_error(&[err.to_string()]),
        };
    let code = runtime.block_on(dispatch(cli.command));
    if let Some(provider) = provider
        && let Err(err) = provider.shutdown()
    {
        eprintln!("crier: flushing traces: {err}");
    }
    code
}

/// The async runtime: one worker thread per usable CPU, or `--worker-threads`. With one, a current-thread
/// runtime: no work-stealing queues and no waking of idle sibling workers. Measured with `crier-bench redis`
/// at 5,000 publishes/s on two CPUs, broker CPU per publish: two workers 36, one multi-thread worker 23,
/// current-thread 21 (CPU-s per million deliveries).
fn runtime(worker_threads: Option<NonZeroUsize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = worker_threads.or_else(|| std::thread::available_parallelism().ok());
    let mut builder = match threads.map(NonZeroUsize::get) {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
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

/// Logs go to stderr; `RUST_LOG` (e.g. `crier_edge=debug`) refines the default `info`. With `otlp`, spans
/// are also exported; the returned provider must be shut down on exit to flush them.
///
/// Lines are written by a background thread (tracing-appender), so a log line costs the serving threads a
/// formatted copy, not a `write` syscall (connection events are logged at info: 3 lines per connection).
/// Under a flood that outruns stderr, lines are dropped rather than stalling the server. The returned guard
/// flushes what is queued when dropped: keep it until exit.
fn init_logging(
    format: LogFormat,
    otlp: Option<&OtlpConfig>,
) -> Result<(Option<SdkTracerProvider>, WorkerGuard), TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let ansi = std::io::stderr().is_terminal();
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).with_filter(filter).boxed(),
    };
    let provider = otlp.map(telemetry::otlp_tracer_provider).transpose()?;
    let otel = provider.as_ref().map(telemetry::otel_layer);
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok((provider, guard))
}

/// Prints each problem on its own line and returns exit code 64.
fn usage_error(problems: &[String]) -> ExitCode {
    for problem in problems {
        eprintln!("crier: {problem}");
    }
    ExitCode::from(EXIT_USAGE)
}
