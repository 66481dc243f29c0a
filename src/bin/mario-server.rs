//! `mario-server`: serves a MaRio checkpoint over HTTP (see README, "Serving").

use std::process::ExitCode;

use clap::Parser;
use mario::server::{serve, ServerConfig};

/// Serve a MaRio self-rationalization model over HTTP.
///
/// Every flag can also be set with its MARIO_* environment variable. With no flags the
/// embedded default model (models/default/) is served on 127.0.0.1:8080.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(flatten)]
    server: ServerConfig,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_openapi {
        print!("{}", mario::server::openapi::openapi_json());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MARIO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if cli.server.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Err(e) = mario::device::configure_threads(cli.server.threads) {
        eprintln!("mario-server: --threads: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = cli.server.validate() {
        eprintln!("mario-server: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    if !cli.server.model.join("config.json").is_file() {
        eprintln!(
            "mario-server: {} is not a model folder (no config.json). The default model is \
             models/default/; pass --model DIR (or MARIO_MODEL) for another checkpoint.",
            cli.server.model.display()
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mario-server: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(cli.server, |addr| {
        eprintln!("mario-server listening on http://{addr} (docs: http://{addr}/docs)")
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mario-server: {e:#}");
            ExitCode::from(1)
        }
    }
}
