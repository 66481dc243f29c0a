//! T5 for conditional generation: encoder stack, decoder stack, output head.
//!
//! Shapes: `B` batch, `S` encoder length, `T` decoder length, `D` = `d_model`, `H` heads,
//! `V` vocabulary.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::{Attention, AttentionBias, KeyWindows};
use super::cache::{DecoderCache, LayerCache};
use super::config::T5Config;
use super::layers::{FeedForward, Linear, Mode, RmsNorm};
use super::position::RelativeBias;

/// Right-padded encoder input: ids `(B, S)` and the true length of each row.
#[derive(Debug, Clone)]
pub struct EncoderInput {
    /// `(B, S)` u32 token ids, padded on the right.
    pub ids: Tensor,
    /// Number of real tokens in each row (each at least 1).
    pub lengths: Vec<usize>,
}

impl EncoderInput {
    /// Pads `rows` on the right with `pad_id` into one `(B, max_len)` tensor.
    pub fn from_rows(rows: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Self> {
        if rows.is_empty() {
            candle_core::bail!("EncoderInput::from_rows: no rows");
        }
        if rows.iter().any(|r| r.is_empty()) {
            candle_core::bail!("EncoderInput::from_rows: an input row has no tokens");
        }
        let (ids, lengths) = pad_rows(rows, pad_id);
        let s = lengths.iter().copied().max().unwrap_or(0);
        Ok(Self {
            ids: Tensor::from_vec(ids, (rows.len(), s), device)?,
            lengths,
        })
    }

    /// Rows in the batch.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }
}

/// Right-pads rows to the longest; returns the flat ids and each row's length.
pub fn pad_rows(rows: &[Vec<u32>], pad_id: u32) -> (Vec<u32>, Vec<usize>) {
    let max = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * max);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(pad_id, max - r.len()));
    }
    (ids, rows.iter().map(|r| r.len()).collect())
}

/// The encoder's output for a batch.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// `(B, S, D)` last hidden state (after the final layer norm); padding positions hold
    /// values that no attention ever reads.
    pub hidden: Tensor,
    /// True length of each row.
    pub lengths: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Block {
    self_norm: RmsNorm,
    self_attn: Attention,
    /// Decoder blocks only.
    cross: Option<(RmsNorm, Attention)>,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

#[derive(Debug, Clone)]
struct Stack {
    blocks: Vec<Block>,
    relative_bias: RelativeBias,
    final_norm: RmsNorm,
}

fn linear(vb: &VarBuilder, out_dim: usize, in_dim: usize, name: &str) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out_dim, in_dim), &format!("{name}.weight"))?,
    ))
}

fn rms(vb: &VarBuilder, cfg: &T5Config) -> Result<RmsNorm> {
    Ok(RmsNorm::new(
        vb.get(cfg.d_model, "layer_norm.weight")?,
        cfg.layer_norm_epsilon,
    ))
}

fn attention(vb: &VarBuilder, cfg: &T5Config) -> Result<Attention> {
    let (d, inner) = (cfg.d_model, cfg.inner_dim());
    Ok(Attention::new(
        linear(vb, inner, d, "q")?,
        linear(vb, inner, d, "k")?,
        linear(vb, inner, d, "v")?,
        linear(vb, d, inner, "o")?,
        cfg.num_heads,
        cfg.d_kv,
    ))
}

fn feed_forward(vb: &VarBuilder, cfg: &T5Config) -> Result<FeedForward> {
    let (act, gated) = cfg.activation().map_err(candle_core::Error::msg)?;
    let vb = vb.pp("DenseReluDense");
    let (d, ff) = (cfg.d_model, cfg.d_ff);
    let (wi, gate) = if gated {
        (
            linear(&vb, ff, d, "wi_0")?,
            Some(linear(&vb, ff, d, "wi_1")?),
        )
    } else {
        (linear(&vb, ff, d, "wi")?, None)
    };
    Ok(FeedForward::new(wi, gate, linear(&vb, d, ff, "wo")?, act))
}

impl Stack {
    fn load(vb: VarBuilder, cfg: &T5Config, decoder: bool) -> Result<Self> {
        let n = if decoder {
            cfg.decoder_layers()
        } else {
            cfg.num_layers
        };
        let mut blocks = Vec::with_capacity(n);
        for i in 0..n {
            let layer = vb.pp(format!("block.{i}.layer"));
            let l0 = layer.pp("0");
            let self_attn = attention(&l0.pp("SelfAttention"), cfg)?;
            let self_norm = rms(&l0, cfg)?;
            let (cross, ff_idx) = if decoder {
                let l1 = layer.pp("1");
                (
                    Some((rms(&l1, cfg)?, attention(&l1.pp("EncDecAttention"), cfg)?)),
                    "2",
                )
            } else {
                (None, "1")
            };
            let lf = layer.pp(ff_idx);
            blocks.push(Block {
                self_norm,
                self_attn,
                cross,
                ff_norm: rms(&lf, cfg)?,
                ff: feed_forward(&lf, cfg)?,
            });
        }
        let bias_w = vb.get(
            (cfg.relative_attention_num_buckets, cfg.num_heads),
            "block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        )?;
        Ok(Self {
            blocks,
            relative_bias: RelativeBias::new(
                bias_w,
                !decoder,
                cfg.relative_attention_max_distance,
            )?,
            final_norm: RmsNorm::new(
                vb.get(cfg.d_model, "final_layer_norm.weight")?,
                cfg.layer_norm_epsilon,
            ),
        })
    }
}

/// The embedding and encoder stack of a T5: what a `T5EncoderModel` checkpoint holds (e.g. the
/// VERA plausibility scorer), and the first half of [`T5Model`].
#[derive(Debug, Clone)]
pub struct T5Encoder {
    cfg: T5Config,
    /// `(V, D)` token embedding.
    shared: Tensor,
    encoder: Stack,
    dtype: DType,
    device: Device,
}

impl T5Encoder {
    /// Builds the encoder from `shared.weight` and `encoder.*` weights.
    pub fn load(vb: VarBuilder, cfg: &T5Config) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let shared = vb.get((cfg.vocab_size, cfg.d_model), "shared.weight")?;
        let encoder = Stack::load(vb.pp("encoder"), cfg, false)?;
        Ok(Self {
            cfg: cfg.clone(),
            dtype: shared.dtype(),
            device: shared.device().clone(),
            shared,
            encoder,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &T5Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The `(V, D)` token embedding.
    pub fn embedding(&self) -> &Tensor {
        &self.shared
    }

    /// `(B, T)` ids -> `(B, T, D)` embeddings.
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.shared
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.d_model))
    }

    /// Runs the encoder: `(B, S)` ids -> `(B, S, D)` hidden states.
    pub fn encode(&self, input: &EncoderInput, mode: Mode) -> Result<EncoderOutput> {
        let (b, s) = input.ids.dims2()?;
        if input.lengths.len() != b {
            candle_core::bail!("encode: {} lengths for {b} rows", input.lengths.len());
        }
        // (1, H, S, S) position bias and each row's length, shared by all blocks
        let bias = AttentionBias::new(
            Some(self.encoder.relative_bias.forward(0, s, s)?),
            KeyWindows::lengths(&input.lengths),
            s,
            s,
            self.dtype(),
            self.device(),
            mode,
        )?;
        let mut x = mode.dropout(&self.embed(&input.ids)?)?;
        for block in &self.encoder.blocks {
            let h = block.self_norm.forward(&x, mode)?;
            x = (x + mode.dropout(&block.self_attn.self_attention(&h, &bias, mode)?)?)?;
            let h = block.ff_norm.forward(&x, mode)?;
            x = (x + mode.dropout(&block.ff.forward(&h, mode)?)?)?;
        }
        let hidden = mode.dropout(&self.encoder.final_norm.forward(&x, mode)?)?;
        Ok(EncoderOutput {
            hidden,
            lengths: input.lengths.clone(),
        })
    }
}

/// T5 encoder-decoder with its language-model head.
///
/// Built from a [`VarBuilder`], so the same code serves inference (memory-mapped
/// safetensors) and training (a `VarMap` of trainable variables).
#[derive(Debug, Clone)]
pub struct T5Model {
    /// Embedding (shared by encoder, decoder and, when tied, the head) and encoder.
    enc: T5Encoder,
    decoder: Stack,
    /// `(V, D)` untied output head.
    lm_head: Option<Linear>,
    /// `(1, V)`: 0, and -inf at the EOS ids; built on first use (`eos_logit_mask`).
    eos_mask: std::sync::OnceLock<Tensor>,
}

impl T5Model {
    /// Builds the model from weights named as in a Hugging Face T5 checkpoint.
    pub fn load(vb: VarBuilder, cfg: &T5Config) -> Result<Self> {
        let enc = T5Encoder::load(vb.clone(), cfg)?;
        let decoder = Stack::load(vb.pp("decoder"), cfg, true)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(linear(&vb, cfg.vocab_size, cfg.d_model, "lm_head")?)
        };
        Ok(Self {
            enc,
            decoder,
            lm_head,
            eos_mask: std::sync::OnceLock::new(),
        })
    }

    /// `(1, V)`, the model's dtype and device: 0, and -inf at the EOS ids. Added to logits, it
    /// keeps an argmax off EOS (`min_new_tokens`). Built once per model.
    pub fn eos_logit_mask(&self) -> Result<Tensor> {
        if let Some(m) = self.eos_mask.get() {
            return Ok(m.clone());
        }
        let v = self.enc.cfg.vocab_size;
        let mut mask = vec![0f32; v];
        for &e in self.enc.cfg.eos_ids() {
            if let Some(m) = mask.get_mut(e as usize) {
                *m = f32::NEG_INFINITY;
            }
        }
        let m = Tensor::from_vec(mask, (1, v), self.device())?.to_dtype(self.dtype())?;
        Ok(self.eos_mask.get_or_init(|| m).clone())
    }

    /// The architecture.
    pub fn config(&self) -> &T5Config {
        &self.enc.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.enc.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.enc.dtype
    }

    /// The embedding and encoder.
    pub fn encoder(&self) -> &T5Encoder {
        &self.enc
    }

    /// Runs the encoder: `(B, S)` ids -> `(B, S, D)` hidden states.
    pub fn encode(&self, input: &EncoderInput, mode: Mode) -> Result<EncoderOutput> {
        self.enc.encode(input, mode)
    }

    /// Decoder hidden states -> logits, with T5 v1.0's `d_model^-0.5` scaling.
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.enc.cfg.scales_decoder_output() {
            (x * (self.enc.cfg.d_model as f64).powf(-0.5))?
        } else {
            x.clone()
        };
        match &self.lm_head {
            Some(head) => head.forward(&x),
            None => Linear::new(self.enc.shared.clone()).forward(&x),
        }
    }

    /// Teacher-forced decoder pass without a cache: `(B, T)` decoder input ids ->
    /// `(B, T, V)` logits for every position.
    pub fn decode(
        &self,
        decoder_ids: &Tensor,
        encoder: &EncoderOutput,
        mode: Mode,
    ) -> Result<Tensor> {
        let (b, t) = decoder_ids.dims2()?;
        let s = encoder.hidden.dim(1)?;
        let self_bias = AttentionBias::new(
            Some(self.decoder.relative_bias.forward(0, t, t)?),
            KeyWindows {
                lo: vec![0; b],
                hi: vec![t; b],
                causal_offset: Some(0),
            },
            t,
            t,
            self.dtype(),
            self.device(),
            mode,
        )?;
        let cross_bias = AttentionBias::new(
            None,
            KeyWindows::lengths(&encoder.lengths),
            t,
            s,
            self.dtype(),
            self.device(),
            mode,
        )?;
        let mut x = mode.dropout(&self.enc.embed(decoder_ids)?)?;
        for block in &self.decoder.blocks {
            let h = block.self_norm.forward(&x, mode)?;
            x = (x + mode.dropout(&block.self_attn.self_attention(&h, &self_bias, mode)?)?)?;
            let (norm, cross) = block
                .cross
                .as_ref()
                .expect("decoder block has cross-attention");
            let h = norm.forward(&x, mode)?;
            let q = cross.query(&h)?;
            let (k, v) = cross.key_value(&encoder.hidden)?;
            x = (x + mode.dropout(&cross.attend(&q, &k, &v, &cross_bias, mode)?)?)?;
            let h = block.ff_norm.forward(&x, mode)?;
            x = (x + mode.dropout(&block.ff.forward(&h, mode)?)?)?;
        }
        let x = mode.dropout(&self.decoder.final_norm.forward(&x, mode)?)?;
        self.head(&x)
    }

    /// A decoder cache for a batch: computes every block's cross-attention K/V once and
    /// preallocates `capacity` self-attention slots.
    pub fn new_cache(&self, encoder: &EncoderOutput, capacity: usize) -> Result<DecoderCache> {
        let b = encoder.lengths.len();
        let capacity = capacity.max(1);
        let mut layers = Vec::with_capacity(self.decoder.blocks.len());
        for block in &self.decoder.blocks {
            let (_, cross) = block
                .cross
                .as_ref()
                .expect("decoder block has cross-attention");
            let (cross_k, cross_v) = cross.key_value(&encoder.hidden)?;
            let cfg = self.config();
            let shape = (b, cfg.num_heads, capacity, cfg.d_kv);
            layers.push(LayerCache {
                self_k: Tensor::zeros(shape, self.dtype(), self.device())?,
                self_v: Tensor::zeros(shape, self.dtype(), self.device())?,
                cross_k,
                cross_v,
            });
        }
        Ok(DecoderCache {
            layers,
            encoder_lengths: encoder.lengths.clone(),
            row_start: vec![0; b],
            len: 0,
            capacity,
            num_heads: self.config().num_heads,
            d_kv: self.config().d_kv,
        })
    }

    /// Feeds `(B, Q)` new decoder tokens through the cache and returns the logits of the last
    /// one, `(B, V)`. Inference only.
    pub fn decode_step(&self, ids: &Tensor, cache: &mut DecoderCache) -> Result<Tensor> {
        let (b, q) = ids.dims2()?;
        if b != cache.batch_size() {
            candle_core::bail!(
                "decode_step: {b} rows of input for a cache of {}",
                cache.batch_size()
            );
        }
        let mode = Mode::Inference;
        cache.reserve(cache.len + q)?;
        let k_len = cache.len + q;
        // (1, H, Q, K) position bias over slots and each row's visible slots
        let bias = AttentionBias::new(
            Some(self.decoder.relative_bias.forward(cache.len, q, k_len)?),
            cache.self_windows(q),
            q,
            k_len,
            self.dtype(),
            self.device(),
            mode,
        )?;
        let cross_bias = AttentionBias::new(
            None,
            cache.cross_windows(),
            q,
            cache.encoder_width(),
            self.dtype(),
            self.device(),
            mode,
        )?;
        let mut x = self.enc.embed(ids)?;
        for (block, lc) in self.decoder.blocks.iter().zip(cache.layers.iter_mut()) {
            let h = block.self_norm.forward(&x, mode)?;
            let qh = block.self_attn.query(&h)?;
            let (k_new, v_new) = block.self_attn.key_value(&h)?;
            lc.self_k.slice_set(&k_new, 2, cache.len)?;
            lc.self_v.slice_set(&v_new, 2, cache.len)?;
            let k = lc.self_k.narrow(2, 0, k_len)?;
            let v = lc.self_v.narrow(2, 0, k_len)?;
            x = (x + block.self_attn.attend(&qh, &k, &v, &bias, mode)?)?;
            let (norm, cross) = block
                .cross
                .as_ref()
                .expect("decoder block has cross-attention");
            let h = norm.forward(&x, mode)?;
            let qc = cross.query(&h)?;
            x = (x + cross.attend(&qc, &lc.cross_k, &lc.cross_v, &cross_bias, mode)?)?;
            let h = block.ff_norm.forward(&x, mode)?;
            x = (x + block.ff.forward(&h, mode)?)?;
        }
        cache.len = k_len;
        let last = x.narrow(1, q - 1, 1)?;
        let last = self.decoder.final_norm.forward(&last, mode)?;
        self.head(&last)?.squeeze(1)
    }
}
