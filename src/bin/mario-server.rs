//! `mario-server`: serves a MaRio checkpoint over HTTP.
//!
//! The HTTP layer is not written yet (see README, "Status"). Today this binary loads and
//! checks a checkpoint folder and reports what it found, so a folder can be validated before
//! the server exists.

use std::path::PathBuf;
use std::process::ExitCode;

use candle_core::DType;
use clap::Parser;
use mario::checkpoint::Checkpoint;
use mario::device::DeviceChoice;

/// Serve a MaRio self-rationalization model.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Checkpoint folder (config.json, model.safetensors, tokenizer.json, optional mario.json).
    #[arg(long, env = "MARIO_MODEL", default_value = "models/default")]
    model: PathBuf,
    /// Where the model runs: cpu, cuda or auto.
    #[arg(long, env = "MARIO_DEVICE", default_value = "cpu")]
    device: DeviceChoice,
    /// Weight precision: f32 or bf16.
    #[arg(long, env = "MARIO_DTYPE", default_value = "f32", value_parser = parse_dtype)]
    dtype: DType,
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype `{other}`: use f32 or bf16")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.model.join("config.json").exists()
        && args.model.as_path() == std::path::Path::new("models/default")
    {
        eprintln!(
            "mario-server: no default model is shipped yet (models/default/ is empty; see \
             models/README.md), and the HTTP server is not written yet. Pass --model DIR to \
             check a checkpoint folder."
        );
        return ExitCode::from(2);
    }
    let device = match args.device.open() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("mario-server: --device: {e}");
            return ExitCode::from(2);
        }
    };
    match Checkpoint::load(&args.model, args.dtype, &device) {
        Ok(ckpt) => {
            let cfg = ckpt.model.config();
            println!(
                "{}: T5 d_model={} layers={}+{} heads={} vocab={} ff={} ({} head); control \
                 rewards: {}",
                args.model.display(),
                cfg.d_model,
                cfg.num_layers,
                cfg.decoder_layers(),
                cfg.num_heads,
                cfg.vocab_size,
                cfg.feed_forward_proj,
                if cfg.tie_word_embeddings {
                    "tied"
                } else {
                    "untied"
                },
                ckpt.control
                    .as_ref()
                    .map(|c| c.reward_names().join(", "))
                    .unwrap_or_else(|| "none (no mario.json)".into())
            );
            println!("The HTTP server is not written yet; the checkpoint is valid.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mario-server: {e}");
            ExitCode::from(1)
        }
    }
}
