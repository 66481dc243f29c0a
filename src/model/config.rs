//! `config.json` of a Hugging Face T5 checkpoint.
//!
//! Both T5 v1.0 (`feed_forward_proj = "relu"`, tied embeddings) and T5 v1.1 / Flan-T5
//! (`"gated-gelu"`, untied `lm_head`) are described by the same fields. Unknown fields are
//! ignored (a `config.json` written by transformers carries many generation settings), but
//! every field the model uses is checked by [`T5Config::validate`].

use serde::{Deserialize, Serialize};
use std::path::Path;

use super::ModelError;

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `max(x, 0)` (T5 v1.0).
    Relu,
    /// GELU, tanh approximation (`gelu_new` in transformers; T5 v1.1 / Flan-T5).
    GeluNew,
    /// GELU, exact erf form (`gelu` in transformers).
    Gelu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "relu" => Some(Self::Relu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluNew),
            "gelu" => Some(Self::Gelu),
            _ => None,
        }
    }

    /// The name transformers uses for this activation.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::GeluNew => "gelu_new",
            Self::Gelu => "gelu",
        }
    }
}

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_dropout() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ff_proj() -> String {
    "relu".to_string()
}
fn default_true() -> bool {
    true
}
fn default_init_factor() -> f64 {
    1.0
}

/// One token id or a list of them (transformers accepts both for `eos_token_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids, any of which ends generation.
    Many(Vec<u32>),
}

impl TokenIds {
    /// All ids as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        self.as_slice().to_vec()
    }

    /// All ids, borrowed (no allocation: read on every decoding step).
    pub fn as_slice(&self) -> &[u32] {
        match self {
            TokenIds::One(id) => std::slice::from_ref(id),
            TokenIds::Many(ids) => ids,
        }
    }
}

/// The architecture of a T5 model, as in a Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct T5Config {
    /// Rows of the token embedding (and of the output head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// Width of the feed-forward hidden layer.
    pub d_ff: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Decoder blocks (defaults to `num_layers`).
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Relative-position buckets.
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Distance beyond which all relative positions share the last bucket.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// Dropout probability used in training mode.
    #[serde(default = "default_dropout")]
    pub dropout_rate: f64,
    /// Epsilon of the RMS layer norms.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// Initialisation scale (used by `mario-train init`).
    #[serde(default = "default_init_factor")]
    pub initializer_factor: f64,
    /// `"relu"` (T5 v1.0), `"gated-gelu"` (T5 v1.1, Flan-T5) or `"[gated-]<act>"`.
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
    /// Whether the output head shares the input embedding (and the decoder output is scaled
    /// by `d_model^-0.5` before it).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Whether the decoder output is scaled by `d_model^-0.5` before the head. Written by
    /// transformers 5, which always ties the head; older configs imply it from
    /// `tie_word_embeddings`. See [`T5Config::scales_decoder_output`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    /// Padding id (also the decoder start token in T5).
    #[serde(default)]
    pub pad_token_id: u32,
    /// End of sequence.
    #[serde(default = "default_eos")]
    pub eos_token_id: TokenIds,
    /// First decoder input.
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
}

fn default_eos() -> TokenIds {
    TokenIds::One(1)
}

impl T5Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let cfg: T5Config = serde_json::from_str(&text).map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        cfg.validate().map_err(|problem| ModelError::BadFile {
            path: path.to_path_buf(),
            problem,
        })?;
        Ok(cfg)
    }

    /// Checks the fields the model relies on; returns a message naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_decoder_layers", self.decoder_layers()),
            ("num_heads", self.num_heads),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
            (
                "relative_attention_max_distance",
                self.relative_attention_max_distance,
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("field `{name}` must be positive"));
            }
        }
        if self.relative_attention_num_buckets < 4 {
            return Err("field `relative_attention_num_buckets` must be at least 4".into());
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return Err(format!(
                "field `dropout_rate` must be in [0, 1), got {}",
                self.dropout_rate
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err("field `layer_norm_epsilon` must be positive".into());
        }
        self.activation()?;
        for id in self.eos_token_id.to_vec() {
            if id as usize >= self.vocab_size {
                return Err(format!(
                    "field `eos_token_id` ({id}) is not below vocab_size ({})",
                    self.vocab_size
                ));
            }
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err("field `pad_token_id` is not below vocab_size".into());
        }
        if let Some(id) = self.decoder_start_token_id {
            if id as usize >= self.vocab_size {
                return Err(format!(
                    "field `decoder_start_token_id` ({id}) is not below vocab_size ({})",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Number of decoder blocks.
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Inner width of attention (`num_heads * d_kv`).
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// The feed-forward activation and whether it is gated, parsed as transformers does.
    pub fn activation(&self) -> Result<(Activation, bool), String> {
        let parts: Vec<&str> = self.feed_forward_proj.split('-').collect();
        let (gated, act) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => {
                return Err(format!(
                    "field `feed_forward_proj` = {:?} is not `<act>` or `gated-<act>`",
                    self.feed_forward_proj
                ))
            }
        };
        // transformers maps "gated-gelu" to the tanh approximation for backwards compatibility.
        let act = if gated && act == "gelu" {
            "gelu_new"
        } else {
            act
        };
        let act = Activation::parse(act).ok_or_else(|| {
            format!(
                "field `feed_forward_proj` = {:?}: unsupported activation `{act}`",
                self.feed_forward_proj
            )
        })?;
        Ok((act, gated))
    }

    /// Whether the decoder output is multiplied by `d_model^-0.5` before the head: T5 v1.0
    /// does it (tied head), T5 v1.1 / Flan-T5 do not.
    pub fn scales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    /// The id the decoder starts from.
    pub fn decoder_start(&self) -> u32 {
        self.decoder_start_token_id.unwrap_or(self.pad_token_id)
    }

    /// The end-of-sequence ids.
    pub fn eos_ids(&self) -> &[u32] {
        self.eos_token_id.as_slice()
    }

    /// A named architecture: `tiny`, `small`, `base`, `large` (T5 v1.0 shapes) with the given
    /// vocabulary size.
    pub fn preset(name: &str, vocab_size: usize) -> Option<Self> {
        let (d_model, d_ff, layers, heads) = match name {
            // 8 heads of 32: on the copy probe 8 heads copied unseen names far sooner than
            // 4 of 64 (training/reports/copy-probe/)
            "tiny" => (256, 1024, 4, 8),
            "small" | "t5-small" => (512, 2048, 6, 8),
            "base" | "t5-base" => (768, 3072, 12, 12),
            "large" | "t5-large" => (1024, 4096, 24, 16),
            _ => return None,
        };
        Some(Self {
            vocab_size,
            d_model,
            d_kv: d_model / heads,
            d_ff,
            num_layers: layers,
            num_decoder_layers: Some(layers),
            num_heads: heads,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            initializer_factor: 1.0,
            feed_forward_proj: "relu".into(),
            tie_word_embeddings: true,
            scale_decoder_outputs: None,
            pad_token_id: 0,
            eos_token_id: TokenIds::One(1),
            decoder_start_token_id: Some(0),
        })
    }
}
