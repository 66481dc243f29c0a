//! Training throughput of mario on synthetic batches, for the comparison with transformers in
//! `bench/train_throughput/`. One step = forward, backward, gradient clipping and an AdamW
//! update, exactly as `mario-train sft` does it.
//!
//! ```bash
//! cargo run --release -p mario-training --example train_throughput -- \
//!     --model target/peer-models/tiny --batch 16 --src 32 --tgt 48 --steps 10
//! ```

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::Parser;
use mario::model::{DropoutRng, Mode};
use mario_training::train::loss::{nll_loss, Seq2SeqBatch, Seq2SeqExample};
use mario_training::train::optim::clip_factor;
use mario_training::train::{AdamW, AdamWConfig, TrainableModel};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    /// Model folder.
    #[arg(long)]
    model: std::path::PathBuf,
    /// Examples per batch.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Encoder tokens per example.
    #[arg(long, default_value_t = 32)]
    src: usize,
    /// Target tokens per example.
    #[arg(long, default_value_t = 48)]
    tgt: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Dropout during the timed steps.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn main() -> Result<()> {
    let a = Args::parse();
    mario::device::configure_threads(Some(a.threads)).map_err(anyhow::Error::msg)?;
    mario::device::run_in_pool(|| bench(&a))
}

fn bench(a: &Args) -> Result<()> {
    let dev = Device::Cpu;
    let model = TrainableModel::load(&a.model, &dev)?;
    let vocab = model.config.vocab_size as u32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let examples: Vec<Seq2SeqExample> = (0..a.batch)
        .map(|_| {
            let mut tok = |n: usize| {
                let mut v: Vec<u32> = (0..n - 1).map(|_| rng.random_range(3..vocab)).collect();
                v.push(1);
                v
            };
            Seq2SeqExample {
                input_ids: tok(a.src),
                prefix: vec![],
                target_ids: tok(a.tgt),
            }
        })
        .collect();
    let rows: Vec<&Seq2SeqExample> = examples.iter().collect();
    let batch = Seq2SeqBatch::new(&rows, 0, 0, &dev)?;
    let mut opt = AdamW::new(
        model.vars(),
        AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let dropout = DropoutRng::new(a.dropout, 0);
    let phases = std::cell::RefCell::new([0f64; 3]);
    let step = |opt: &mut AdamW| -> Result<f32> {
        let t0 = Instant::now();
        let loss = nll_loss(&model.model, &batch, Mode::Training(&dropout))?;
        let v = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        let norm = opt.grad_norm(&grads)?;
        opt.step(&grads, 1e-4, clip_factor(norm, 1.0))?;
        let mut p = phases.borrow_mut();
        p[0] += (t1 - t0).as_secs_f64();
        p[1] += (t2 - t1).as_secs_f64();
        p[2] += t2.elapsed().as_secs_f64();
        Ok(v)
    };
    for _ in 0..2 {
        step(&mut opt)?;
    }
    *phases.borrow_mut() = [0.0; 3];
    let mut times = Vec::with_capacity(a.steps);
    for _ in 0..a.steps {
        let t = Instant::now();
        step(&mut opt)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens = (a.batch * (a.src + a.tgt)) as f64;
    println!(
        "{}",
        serde_json::json!({
            "engine": "mario", "model": a.model.file_name().map(|s| s.to_string_lossy().to_string()),
            "batch": a.batch, "src": a.src, "tgt": a.tgt, "threads": a.threads,
            "step_s_median": median, "tokens_per_s": tokens / median,
            "params": model.num_params(),
            "forward_s": phases.borrow()[0] / a.steps as f64,
            "backward_s": phases.borrow()[1] / a.steps as f64,
            "optimizer_s": phases.borrow()[2] / a.steps as f64,
        })
    );
    let _ = Tensor::zeros(1, candle_core::DType::F32, &dev)?;
    Ok(())
}
