//! Export (`mario-train export`): a checkpoint copied for shipping, its weights converted.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::device::WeightType;

/// Copies the checkpoint `model` to `out` with its weights in `dtype` (one
/// `model.safetensors`), its `config.json`, `tokenizer.json`, `mario.json` and
/// `generation_config.json`, the last with `no_repeat_ngram_size` when given. Returns the
/// size of the weights file in bytes.
pub fn export_checkpoint(
    model: &Path,
    out: &Path,
    dtype: WeightType,
    no_repeat_ngram_size: Option<usize>,
) -> Result<u64> {
    // loading checks every file first
    Checkpoint::load(model, DType::F32, &Device::Cpu)
        .with_context(|| format!("checking {}", model.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for f in [
        "config.json",
        "tokenizer.json",
        "mario.json",
        "generation_config.json",
    ] {
        let src = model.join(f);
        if src.is_file() {
            std::fs::copy(&src, out.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    let mut tensors = std::collections::HashMap::new();
    for file in mario::model::weight_files(model)? {
        for (name, t) in candle_core::safetensors::load(&file, &Device::Cpu)? {
            tensors.insert(name, t.to_dtype(dtype.dtype())?);
        }
    }
    let dest = out.join(mario::model::WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    if let Some(n) = no_repeat_ngram_size {
        let path = out.join(mario::checkpoint::GENERATION_CONFIG_FILE);
        let mut gen = mario::checkpoint::GenerationDefaults::from_dir(out)?;
        gen.no_repeat_ngram_size = Some(n);
        std::fs::write(&path, serde_json::to_string_pretty(&gen)? + "\n")?;
    }
    Ok(std::fs::metadata(&dest)?.len())
}
