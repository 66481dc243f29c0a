//! A T5 whose weights are trainable variables, loaded from and saved as a Hugging Face folder.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use mario::model::{expected_tensors, weight_files, T5Config, T5Model, CONFIG_FILE};
use mario::tokenize::{TextTokenizer, TOKENIZER_FILE};

use crate::init::write_config;

/// A model being trained: its variables, the network built on them, its tokenizer.
pub struct TrainableModel {
    /// The variables, named as in the checkpoint.
    pub varmap: VarMap,
    /// The network (its weights are the variables).
    pub model: T5Model,
    /// The architecture.
    pub config: T5Config,
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
}

impl TrainableModel {
    /// Loads a checkpoint folder as trainable f32 variables on `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = T5Config::from_file(&dir.join(CONFIG_FILE))?;
        let tokenizer = TextTokenizer::from_file(&dir.join(TOKENIZER_FILE))?;
        let mut stored: HashMap<String, Tensor> = HashMap::new();
        for file in weight_files(dir)? {
            let tensors = candle_core::safetensors::load(&file, device)
                .with_context(|| format!("reading {}", file.display()))?;
            stored.extend(tensors);
        }
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().expect("varmap lock");
            for (name, shape) in expected_tensors(&cfg) {
                let t = match stored.get(&name) {
                    Some(t) => t,
                    None if name == "shared.weight" => stored
                        .get("encoder.embed_tokens.weight")
                        .ok_or_else(|| anyhow!("{}: no `shared.weight`", dir.display()))?,
                    None => return Err(anyhow!("{}: tensor `{name}` is missing", dir.display())),
                };
                if t.dims() != shape.as_slice() {
                    return Err(anyhow!(
                        "{}: tensor `{name}` has shape {:?}, config.json implies {shape:?}",
                        dir.display(),
                        t.dims()
                    ));
                }
                data.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = T5Model::load(vb, &cfg)?;
        Ok(Self {
            varmap,
            model,
            config: cfg,
            tokenizer,
        })
    }

    /// The variables by name.
    pub fn vars(&self) -> HashMap<String, Var> {
        self.varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.vars().values().map(|v| v.elem_count()).sum()
    }

    /// Writes the model as a Hugging Face folder (config, weights, tokenizer).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_config(&self.config, dir)?;
        let tensors: HashMap<String, Tensor> = self
            .vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        let path = dir.join(mario::model::WEIGHTS_FILE);
        // write then rename, so an interrupted save never leaves a truncated file
        let tmp = dir.join("model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)?;
        self.tokenizer.save(&dir.join(TOKENIZER_FILE))?;
        Ok(())
    }
}
