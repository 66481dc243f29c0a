//! `mario-server`: serves a MaRio checkpoint over HTTP (see README, "Serving").

use std::process::ExitCode;

use clap::Parser;
use mario::server::{serve, ServerConfig};

/// Serve a MaRio self-rationalization model over HTTP.
///
/// Every flag can also be set with its MARIO_* environment variable. With no flags the
/// default model is served on 127.0.0.1:8080.
///
/// The model served is, in this order of precedence:
///   1. --model / MARIO_MODEL: a checkpoint folder, or a Hugging Face Hub model id (owner/name,
///      at --revision) when no such folder exists;
///   2. <directory of the executable>/../share/mario/models/default (an installed copy);
///   3. models/default of the repository the binary was built from, when it still exists.
///
/// Hub ids follow the Hugging Face conventions: the cache in HF_HUB_CACHE, else $HF_HOME/hub,
/// else ~/.cache/huggingface/hub; HF_TOKEN for private or gated models; HF_ENDPOINT for a
/// mirror; HF_HUB_OFFLINE=1 to use the cache only.
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    server: ServerConfig,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    print_openapi: bool,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
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
    // before the runtime starts: a Hub id is downloaded here, with its progress bars
    match cli.server.resolve_model() {
        Ok(model) => cli.server.resolved = Some(model),
        Err(e) => {
            eprintln!("mario-server: {e}");
            return ExitCode::from(2);
        }
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
