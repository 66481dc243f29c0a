//! One source of decoding defaults. `eval`, the sweep and the MaRio dev evaluations decode with
//! [`Decoding::resolve`], which merges, field by field, each layer over the ones before it:
//!
//! 1. built-in defaults ([`Decoding::BUILT_IN`]);
//! 2. the checkpoint's `generation_config.json` (what `mario-server` honours too);
//! 3. the run's configuration file (`[eval]` for `eval --config`; `[mario]` `max_new_tokens`
//!    and the first of `eval_no_repeat_ngram_sizes` for the sweep and the MaRio dev
//!    evaluations);
//! 4. command-line flags.
//!
//! So a checkpoint decodes the same through `eval` as through the server unless a config or a
//! flag says otherwise, and every report states the result ([`Decoding::describe`]).

use std::path::Path;

use anyhow::{Context, Result};
use mario::checkpoint::GenerationDefaults;
use serde::{Deserialize, Serialize};

use crate::quark::run::MarioSettings;

/// One layer of decoding settings: `None` leaves the value to the layers below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DecodingOverrides {
    /// Most new tokens per output.
    pub max_new_tokens: Option<usize>,
    /// Never repeat an n-gram of this many tokens (0 = plain decoding).
    pub no_repeat_ngram_size: Option<usize>,
    /// Sampling temperature (when sampling).
    pub temperature: Option<f64>,
    /// Nucleus mass (when sampling).
    pub top_p: Option<f64>,
}

impl From<&GenerationDefaults> for DecodingOverrides {
    fn from(g: &GenerationDefaults) -> Self {
        Self {
            max_new_tokens: g.max_new_tokens,
            no_repeat_ngram_size: g.no_repeat_ngram_size,
            ..Self::default()
        }
    }
}

/// The MaRio run's decoding: `max_new_tokens` and the first of `eval_no_repeat_ngram_sizes`
/// (the one reported as `dev_*`), where the config sets them.
impl From<&MarioSettings> for DecodingOverrides {
    fn from(s: &MarioSettings) -> Self {
        Self {
            max_new_tokens: s.max_new_tokens,
            no_repeat_ngram_size: s.eval_no_repeat_ngram_sizes.first().copied(),
            ..Self::default()
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    /// [`Decoding::BUILT_IN`].
    #[serde(rename = "built-in")]
    BuiltIn,
    /// The checkpoint's `generation_config.json`.
    #[serde(rename = "generation_config.json")]
    Checkpoint,
    /// The configuration file.
    #[serde(rename = "config")]
    Config,
    /// A command-line flag.
    #[serde(rename = "flag")]
    Flag,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::BuiltIn => "built-in",
            Self::Checkpoint => "generation_config.json",
            Self::Config => "config",
            Self::Flag => "flag",
        })
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// Its layer.
    pub from: Source,
}

/// The decoding an entry point uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decoding {
    /// Most new tokens per output.
    pub max_new_tokens: Setting<usize>,
    /// n-gram blocking (0 = plain decoding).
    pub no_repeat_ngram_size: Setting<usize>,
    /// Sampling temperature (unused by greedy decoding).
    pub temperature: Setting<f64>,
    /// Nucleus mass (unused by greedy decoding).
    pub top_p: Setting<f64>,
}

impl Decoding {
    /// What every entry point used before checkpoints could say otherwise.
    pub const BUILT_IN: Self = Self {
        max_new_tokens: Setting {
            value: 128,
            from: Source::BuiltIn,
        },
        no_repeat_ngram_size: Setting {
            value: 0,
            from: Source::BuiltIn,
        },
        temperature: Setting {
            value: 1.0,
            from: Source::BuiltIn,
        },
        top_p: Setting {
            value: 0.9,
            from: Source::BuiltIn,
        },
    };

    /// Built-in defaults < `checkpoint` < `config` < `flags`, field by field.
    pub fn resolve(
        checkpoint: &GenerationDefaults,
        config: &DecodingOverrides,
        flags: &DecodingOverrides,
    ) -> Self {
        let layers = [
            (DecodingOverrides::from(checkpoint), Source::Checkpoint),
            (*config, Source::Config),
            (*flags, Source::Flag),
        ];
        let mut d = Self::BUILT_IN;
        for (layer, from) in layers {
            fn set<T>(s: &mut Setting<T>, v: Option<T>, from: Source) {
                if let Some(value) = v {
                    *s = Setting { value, from };
                }
            }
            set(&mut d.max_new_tokens, layer.max_new_tokens, from);
            set(
                &mut d.no_repeat_ngram_size,
                layer.no_repeat_ngram_size,
                from,
            );
            set(&mut d.temperature, layer.temperature, from);
            set(&mut d.top_p, layer.top_p, from);
        }
        d
    }

    /// [`Self::resolve`] with the `generation_config.json` of the checkpoint folder `dir`.
    pub fn for_checkpoint(
        dir: &Path,
        config: &DecodingOverrides,
        flags: &DecodingOverrides,
    ) -> Result<Self> {
        let file = GenerationDefaults::from_dir(dir)
            .with_context(|| format!("reading the decoding defaults of {}", dir.display()))?;
        Ok(Self::resolve(&file, config, flags))
    }

    /// One line for reports, e.g. `greedy, max_new_tokens 128 (built-in), no_repeat_ngram_size
    /// 3 (generation_config.json)`; with `samples` > 1 also the temperature and nucleus mass.
    pub fn describe(&self, samples: usize) -> String {
        let mut s = if samples > 1 {
            format!(
                "sampled ({samples} per question, majority vote), temperature {} ({}), top_p \
                 {} ({}), ",
                self.temperature.value, self.temperature.from, self.top_p.value, self.top_p.from
            )
        } else {
            "greedy, ".to_string()
        };
        s.push_str(&format!(
            "max_new_tokens {} ({}), no_repeat_ngram_size {} ({})",
            self.max_new_tokens.value,
            self.max_new_tokens.from,
            self.no_repeat_ngram_size.value,
            self.no_repeat_ngram_size.from
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_field_by_field() {
        let file = GenerationDefaults {
            no_repeat_ngram_size: Some(3),
            max_new_tokens: Some(64),
        };
        // nothing anywhere: the built-in defaults
        let none = DecodingOverrides::default();
        let d = Decoding::resolve(&GenerationDefaults::default(), &none, &none);
        assert_eq!(d, Decoding::BUILT_IN);
        // the checkpoint over the built-ins
        let d = Decoding::resolve(&file, &none, &none);
        assert_eq!(
            (d.max_new_tokens.value, d.no_repeat_ngram_size.value),
            (64, 3)
        );
        assert_eq!(d.no_repeat_ngram_size.from, Source::Checkpoint);
        assert_eq!(d.temperature, Decoding::BUILT_IN.temperature);
        // a config over the checkpoint (an explicit 0 included), a flag over both
        let config = DecodingOverrides {
            no_repeat_ngram_size: Some(0),
            temperature: Some(0.7),
            ..none
        };
        let flags = DecodingOverrides {
            max_new_tokens: Some(16),
            temperature: Some(0.5),
            ..none
        };
        let d = Decoding::resolve(&file, &config, &flags);
        assert_eq!(
            d.max_new_tokens,
            Setting {
                value: 16,
                from: Source::Flag
            }
        );
        assert_eq!(
            d.no_repeat_ngram_size,
            Setting {
                value: 0,
                from: Source::Config
            }
        );
        assert_eq!(d.temperature.value, 0.5);
        assert_eq!(d.top_p, Decoding::BUILT_IN.top_p);
        assert_eq!(
            d.describe(1),
            "greedy, max_new_tokens 16 (flag), no_repeat_ngram_size 0 (config)"
        );
        assert!(d
            .describe(5)
            .starts_with("sampled (5 per question, majority vote), temperature 0.5 (flag)"));
    }

    #[test]
    fn a_checkpoint_folder_without_the_file_gives_the_built_ins() {
        let dir = tempfile::tempdir().unwrap();
        let none = DecodingOverrides::default();
        let d = Decoding::for_checkpoint(dir.path(), &none, &none).unwrap();
        assert_eq!(d, Decoding::BUILT_IN);
        std::fs::write(
            dir.path().join(mario::checkpoint::GENERATION_CONFIG_FILE),
            r#"{"no_repeat_ngram_size": 2, "decoder_start_token_id": 0}"#,
        )
        .unwrap();
        let d = Decoding::for_checkpoint(dir.path(), &none, &none).unwrap();
        assert_eq!(d.no_repeat_ngram_size.value, 2);
        assert_eq!(d.max_new_tokens, Decoding::BUILT_IN.max_new_tokens);
    }
}
