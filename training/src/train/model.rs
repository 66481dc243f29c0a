//! A T5 whose weights are trainable variables, loaded from and saved as a Hugging Face folder.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use mario::model::{expected_tensors, weight_files, T5Config, T5Model, CONFIG_FILE};
use mario::tokenize::{TextTokenizer, TOKENIZER_FILE};

use rand::SeedableRng;

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

    /// The network computing in `dtype` on this model's variables (mixed precision): each
    /// weight is a cast of its f32 variable, so gradients flow back through the casts into the
    /// variables, which stay f32 (as do the optimizer's moments). The casts are copies: build
    /// the network again after every update. `F32` gives a copy of [`TrainableModel::model`].
    pub fn cast_network(&self, dtype: DType) -> Result<T5Model> {
        let device = self.model.device().clone();
        let tensors = self
            .vars()
            .into_iter()
            .map(|(k, v)| Ok((k, v.as_tensor().to_dtype(dtype)?)))
            .collect::<Result<HashMap<String, Tensor>>>()?;
        let vb = VarBuilder::from_tensors(tensors, dtype, &device);
        Ok(T5Model::load(vb, &self.config)?)
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

    /// Registers `tokens` as special tokens and, when the embedding has no room for them, adds
    /// embedding rows (and head rows when untied) drawn per dimension from `N(mean, std)` of
    /// the existing rows, as the released MaRio code initialises its control tokens. Returns
    /// the tokens' ids.
    pub fn add_tokens(&mut self, tokens: &[String], seed: u64) -> Result<Vec<u32>> {
        let ids = self.tokenizer.add_special_tokens(tokens)?;
        let needed = ids.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
        if needed > self.config.vocab_size {
            let extra = needed - self.config.vocab_size;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            {
                let mut data = self.varmap.data().lock().expect("varmap lock");
                for name in ["shared.weight", "lm_head.weight"] {
                    let Some(var) = data.get(name) else { continue };
                    let w = var.as_tensor().clone(); // (V, D)
                    let (_, d) = w.dims2()?;
                    let mean: Vec<f32> = w.mean(0)?.to_vec1()?;
                    let std: Vec<f32> = w
                        .broadcast_sub(&w.mean_keepdim(0)?)?
                        .sqr()?
                        .mean(0)?
                        .sqrt()?
                        .to_vec1()?;
                    let mut rows = Vec::with_capacity(extra * d);
                    for _ in 0..extra {
                        for k in 0..d {
                            let z: f32 = rand_distr::Distribution::sample(
                                &rand_distr::StandardNormal,
                                &mut rng,
                            );
                            rows.push(mean[k] + std[k] * z);
                        }
                    }
                    let rows = Tensor::from_vec(rows, (extra, d), w.device())?;
                    let grown = Tensor::cat(&[&w, &rows], 0)?;
                    data.insert(name.to_string(), Var::from_tensor(&grown)?);
                }
            }
            self.config.vocab_size = needed;
            let vb = VarBuilder::from_varmap(&self.varmap, DType::F32, self.model.device());
            self.model = T5Model::load(vb, &self.config)?;
        }
        Ok(ids)
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
