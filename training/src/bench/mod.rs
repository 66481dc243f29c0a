//! Throughput benchmarks whose rows are compared with peers run on the same folders and
//! inputs: generation (`mario-train bench-generate`, peers in `../shared/bench/peers/`) and
//! training updates (`mario-train bench-train`, peer `bench/train_throughput/torch_train.py`).

pub mod generate;
pub mod train;

pub use generate::{
    bench_generate, bench_models, markdown, read_inputs, GenerateBench, GenerateRow,
};

/// The median of `xs` (the upper one of an even count); `xs` must not be empty.
pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
