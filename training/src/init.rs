//! A randomly initialised T5, written as a Hugging Face folder.
//!
//! The initialisation is transformers' `T5PreTrainedModel._init_weights` (factor =
//! `initializer_factor`): embedding and untied head `N(0, f)`, `q` `N(0, f (d_model d_kv)^-½)`,
//! `k`, `v` `N(0, f d_model^-½)`, `o` `N(0, f (heads d_kv)^-½)`, relative bias
//! `N(0, f d_model^-½)`, `wi*` `N(0, f d_model^-½)`, `wo` `N(0, f d_ff^-½)`, layer norms 1.
//! The draws come from one seeded generator in a fixed tensor order, so a seed names a model.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::{Device, Tensor};
use mario::model::{expected_tensors, T5Config, CONFIG_FILE, WEIGHTS_FILE};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Standard deviation of a tensor under transformers' T5 initialisation (`None`: ones).
fn init_std(name: &str, cfg: &T5Config) -> Option<f64> {
    let f = cfg.initializer_factor;
    let d = cfg.d_model as f64;
    if name.ends_with("layer_norm.weight") {
        return None;
    }
    let std = if name == "shared.weight" || name == "lm_head.weight" {
        f
    } else if name.ends_with("relative_attention_bias.weight") {
        f * d.powf(-0.5)
    } else if name.ends_with(".q.weight") {
        f * (d * cfg.d_kv as f64).powf(-0.5)
    } else if name.ends_with(".k.weight") || name.ends_with(".v.weight") {
        f * d.powf(-0.5)
    } else if name.ends_with(".o.weight") {
        f * ((cfg.num_heads * cfg.d_kv) as f64).powf(-0.5)
    } else if name.ends_with(".wo.weight") {
        f * (cfg.d_ff as f64).powf(-0.5)
    } else {
        // wi, wi_0, wi_1
        f * d.powf(-0.5)
    };
    Some(std)
}

/// Random weights for `cfg`, named as in a Hugging Face checkpoint.
pub fn init_weights(cfg: &T5Config, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match init_std(&name, cfg) {
            None => vec![1.0; n],
            Some(std) => (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    (z * std) as f32
                })
                .collect(),
        };
        out.insert(name, Tensor::from_vec(values, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// `config.json` as transformers writes it for a T5 (the fields mario reads plus the ones
/// transformers expects).
pub fn hf_config_json(cfg: &T5Config) -> Result<serde_json::Value> {
    let (act, gated) = cfg.activation().map_err(|e| anyhow!(e))?;
    let mut v = serde_json::to_value(cfg)?;
    let obj = v.as_object_mut().expect("config serializes to an object");
    obj.insert("model_type".into(), "t5".into());
    obj.insert(
        "architectures".into(),
        serde_json::json!(["T5ForConditionalGeneration"]),
    );
    obj.insert("is_encoder_decoder".into(), true.into());
    obj.insert("use_cache".into(), true.into());
    obj.insert("dense_act_fn".into(), act.hf_name().into());
    obj.insert("is_gated_act".into(), gated.into());
    obj.insert(
        "num_decoder_layers".into(),
        serde_json::json!(cfg.decoder_layers()),
    );
    obj.insert(
        "decoder_start_token_id".into(),
        serde_json::json!(cfg.decoder_start()),
    );
    Ok(v)
}

/// Writes `config.json` into `dir`.
pub fn write_config(cfg: &T5Config, dir: &Path) -> Result<()> {
    let path = dir.join(CONFIG_FILE);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&hf_config_json(cfg)?)? + "\n",
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// Writes a complete model folder: `config.json`, `model.safetensors` and the tokenizer.
pub fn write_model_folder(
    dir: &Path,
    cfg: &T5Config,
    weights: &HashMap<String, Tensor>,
    tokenizer_json: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_config(cfg, dir)?;
    candle_core::safetensors::save(weights, dir.join(WEIGHTS_FILE))
        .with_context(|| format!("writing {}", dir.join(WEIGHTS_FILE).display()))?;
    let dest = dir.join(mario::tokenize::TOKENIZER_FILE);
    if tokenizer_json != dest {
        std::fs::copy(tokenizer_json, &dest).with_context(|| {
            format!("copying {} to {}", tokenizer_json.display(), dest.display())
        })?;
    }
    Ok(())
}

/// The architecture for `--arch`: a preset name or a `config.json` path; the vocabulary size
/// comes from the tokenizer.
pub fn resolve_arch(arch: &str, vocab_size: usize) -> Result<T5Config> {
    if let Some(cfg) = T5Config::preset(arch, vocab_size) {
        return Ok(cfg);
    }
    let path = Path::new(arch);
    if path.is_file() {
        let mut cfg = T5Config::from_file(path)?;
        cfg.vocab_size = vocab_size;
        cfg.validate()
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        return Ok(cfg);
    }
    Err(anyhow!(
        "--arch {arch:?}: not a preset (tiny, small, base, large) nor a config.json file"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_follows_transformers_scales_and_is_seeded() {
        let cfg = T5Config::preset("tiny", 1000).unwrap();
        assert_eq!((cfg.num_heads, cfg.d_kv), (8, 32));
        let w = init_weights(&cfg, 3).unwrap();
        let std = |name: &str| {
            let v: Vec<f32> = w[name].flatten_all().unwrap().to_vec1().unwrap();
            let m = v.iter().sum::<f32>() / v.len() as f32;
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt()
        };
        let close = |got: f32, want: f64| (got as f64 - want).abs() < 0.05 * want;
        assert!(close(std("shared.weight"), 1.0));
        assert!(close(
            std("encoder.block.0.layer.0.SelfAttention.q.weight"),
            // transformers: (d_model * d_kv)^-0.5; the tiny preset has 8 heads of 32
            (256.0f64 * 32.0).powf(-0.5)
        ));
        assert!(close(
            std("encoder.block.0.layer.0.SelfAttention.k.weight"),
            256f64.powf(-0.5)
        ));
        assert!(close(
            std("decoder.block.1.layer.2.DenseReluDense.wo.weight"),
            1024f64.powf(-0.5)
        ));
        let ln: Vec<f32> = w["decoder.final_layer_norm.weight"].to_vec1().unwrap();
        assert!(ln.iter().all(|&x| x == 1.0));
        let again = init_weights(&cfg, 3).unwrap();
        let a: Vec<f32> = w["shared.weight"].flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = again["shared.weight"]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
    }
}
