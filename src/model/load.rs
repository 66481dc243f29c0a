//! Loading a T5 from a Hugging Face folder: `config.json` and `model.safetensors` (or the
//! shards listed in `model.safetensors.index.json`).
//!
//! Every tensor the architecture needs is checked (present, right shape) before the model is
//! built, so a bad checkpoint is refused with a message that names the file and the tensor.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::T5Config;
use super::t5::{T5Encoder, T5Model};
use super::ModelError;

/// File name of the architecture.
pub const CONFIG_FILE: &str = "config.json";
/// File name of single-file weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the shard index of sharded weights.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// Name and shape of every tensor a T5 with this config reads, in load order.
pub fn expected_tensors(cfg: &T5Config) -> Vec<(String, Vec<usize>)> {
    let (d, inner, ff, v) = (cfg.d_model, cfg.inner_dim(), cfg.d_ff, cfg.vocab_size);
    let gated = cfg.activation().map(|(_, g)| g).unwrap_or(false);
    let mut out = vec![("shared.weight".to_string(), vec![v, d])];
    for (stack, n, decoder) in [
        ("encoder", cfg.num_layers, false),
        ("decoder", cfg.decoder_layers(), true),
    ] {
        for i in 0..n {
            let p = format!("{stack}.block.{i}.layer");
            let mut attn = |prefix: String| {
                for w in ["q", "k", "v"] {
                    out.push((format!("{prefix}.{w}.weight"), vec![inner, d]));
                }
                out.push((format!("{prefix}.o.weight"), vec![d, inner]));
            };
            attn(format!("{p}.0.SelfAttention"));
            if decoder {
                attn(format!("{p}.1.EncDecAttention"));
            }
            if i == 0 {
                out.push((
                    format!("{p}.0.SelfAttention.relative_attention_bias.weight"),
                    vec![cfg.relative_attention_num_buckets, cfg.num_heads],
                ));
            }
            out.push((format!("{p}.0.layer_norm.weight"), vec![d]));
            let f = if decoder {
                out.push((format!("{p}.1.layer_norm.weight"), vec![d]));
                2
            } else {
                1
            };
            let dense = format!("{p}.{f}.DenseReluDense");
            if gated {
                out.push((format!("{dense}.wi_0.weight"), vec![ff, d]));
                out.push((format!("{dense}.wi_1.weight"), vec![ff, d]));
            } else {
                out.push((format!("{dense}.wi.weight"), vec![ff, d]));
            }
            out.push((format!("{dense}.wo.weight"), vec![d, ff]));
            out.push((format!("{p}.{f}.layer_norm.weight"), vec![d]));
        }
        out.push((format!("{stack}.final_layer_norm.weight"), vec![d]));
    }
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    out
}

/// The safetensors files of a checkpoint folder: `model.safetensors`, or every shard named in
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if !index.is_file() {
        return Err(ModelError::MissingFile {
            path: single,
            what: "the weights (model.safetensors or model.safetensors.index.json)",
        });
    }
    let text = std::fs::read_to_string(&index).map_err(|e| ModelError::Io {
        path: index.clone(),
        source: e,
    })?;
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let parsed: Index = serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
        path: index.clone(),
        problem: format!("not a safetensors index: {e}"),
    })?;
    let shards: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if shards.is_empty() {
        return Err(ModelError::BadFile {
            path: index,
            problem: "`weight_map` is empty".into(),
        });
    }
    let mut files = Vec::with_capacity(shards.len());
    for shard in shards {
        if shard.contains('/') || shard.contains('\\') || shard.contains("..") {
            return Err(ModelError::BadFile {
                path: index.clone(),
                problem: format!("shard name {shard:?} is not a plain file name"),
            });
        }
        let path = dir.join(&shard);
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                path,
                what: "a weight shard listed in model.safetensors.index.json",
            });
        }
        files.push(path);
    }
    Ok(files)
}

/// Maps each file (without reading its data) and returns tensor name -> (file, shape).
fn read_headers(files: &[PathBuf]) -> Result<HashMap<String, (PathBuf, Vec<usize>)>, ModelError> {
    let mut out = HashMap::new();
    for path in files {
        // SAFETY: read-only mapping; only the header is parsed here.
        let st =
            unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(|e| {
                ModelError::BadFile {
                    path: path.clone(),
                    problem: format!("not a valid safetensors file: {e}"),
                }
            })?;
        for (name, view) in st.tensors() {
            out.insert(name, (path.clone(), view.shape().to_vec()));
        }
    }
    Ok(out)
}

/// Loads a T5 from a checkpoint folder onto `device` in `dtype` (weights are converted).
pub fn load_t5(dir: &Path, dtype: DType, device: &Device) -> Result<T5Model, ModelError> {
    let (vb, cfg) = checked_weights(dir, dtype, device, |_| true)?;
    Ok(T5Model::load(vb, &cfg)?)
}

/// Loads only the embedding and encoder of a T5 folder (a `T5EncoderModel` checkpoint such as
/// VERA's, or the encoder half of a full T5).
pub fn load_t5_encoder(dir: &Path, dtype: DType, device: &Device) -> Result<T5Encoder, ModelError> {
    let (vb, cfg) = checked_weights(dir, dtype, device, |name| {
        name == "shared.weight" || name.starts_with("encoder.")
    })?;
    Ok(T5Encoder::load(vb, &cfg)?)
}

/// Reads `config.json`, checks that every tensor `wanted` by the architecture is present with
/// the right shape, and maps the weights.
fn checked_weights(
    dir: &Path,
    dtype: DType,
    device: &Device,
    wanted: impl Fn(&str) -> bool,
) -> Result<(VarBuilder<'static>, T5Config), ModelError> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.is_file() {
        return Err(ModelError::MissingFile {
            path: config_path,
            what: "the model architecture (config.json)",
        });
    }
    let cfg = T5Config::from_file(&config_path)?;
    let files = weight_files(dir)?;
    let headers = read_headers(&files)?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let files_desc = names.join(", ");

    // Some exporters store the embedding only under the stacks' names.
    let shared_alias = if headers.contains_key("shared.weight") {
        None
    } else {
        ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
            .into_iter()
            .find(|n| headers.contains_key(*n))
    };
    for (name, shape) in expected_tensors(&cfg) {
        if !wanted(&name) {
            continue;
        }
        let stored = if name == "shared.weight" {
            shared_alias.unwrap_or("shared.weight")
        } else {
            name.as_str()
        };
        match headers.get(stored) {
            None => {
                return Err(ModelError::MissingTensor {
                    files: files_desc,
                    name,
                })
            }
            Some((file, found)) if *found != shape => {
                return Err(ModelError::BadFile {
                    path: file.clone(),
                    problem: format!(
                        "tensor `{stored}` has shape {found:?}, but {} implies {shape:?}",
                        config_path.display()
                    ),
                })
            }
            Some(_) => {}
        }
    }
    // SAFETY: the files are memory-mapped read-only; they must not be modified while loaded.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
    let vb = match shared_alias {
        Some(alias) => vb.rename_f(move |name: &str| {
            if name == "shared.weight" {
                alias.to_string()
            } else {
                name.to_string()
            }
        }),
        None => vb,
    };
    Ok((vb, cfg))
}
