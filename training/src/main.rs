//! `mario-train`: the MaRio training pipeline (tokenizer, init, SFT, rewards, QUARK loop).
//!
//! The stages are being written (see README, "Status"); today the binary only exists so the
//! workspace layout is in place.

use clap::Parser;

/// Train self-rationalizing T5 models with MaRio (multi-reward distillation).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {}

fn main() {
    let _ = Args::parse();
    eprintln!("mario-train: no stage is implemented yet; see README.md, \"Status\".");
    std::process::exit(2);
}
