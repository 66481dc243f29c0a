//! What a caller asks of one generation and what it gets back.

use serde::{Deserialize, Serialize};

/// Temperatures below this decode greedily. The sampler divides logits by the temperature in
/// f32, where one under ~1e-45 is 0 and makes every probability NaN; one under this samples
/// differently from argmax only among logits within ~1e-4 of the largest (vLLM's threshold too).
pub const MIN_SAMPLING_TEMPERATURE: f64 = 1e-5;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; `0` (or anything below [`MIN_SAMPLING_TEMPERATURE`]) means greedy
    /// (argmax), and `top_k` / `top_p` are then unused.
    pub temperature: f64,
    /// Keep only the `k` most likely tokens before sampling.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (nucleus).
    pub top_p: Option<f64>,
}

impl SamplingParams {
    /// Greedy decoding.
    pub const GREEDY: SamplingParams = SamplingParams {
        temperature: 0.0,
        top_k: None,
        top_p: None,
    };

    /// True when decoding is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature < MIN_SAMPLING_TEMPERATURE
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::GREEDY
    }
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    /// Most tokens to generate (the forced prefix does not count; an EOS does).
    pub max_new_tokens: usize,
    /// EOS is suppressed until this many tokens were generated.
    pub min_new_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Seed of this row's random generator (unused when greedy). The same seed gives the same
    /// output whatever else is in the batch.
    pub seed: u64,
    /// Generation stops when the decoded text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Return the log-probability of each generated token.
    pub logprobs: bool,
    /// Never repeat an n-gram of this size within the generated text (0 = off), as
    /// transformers' `no_repeat_ngram_size`.
    pub no_repeat_ngram_size: usize,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            min_new_tokens: 0,
            sampling: SamplingParams::GREEDY,
            seed: 0,
            stop: Vec::new(),
            logprobs: false,
            no_repeat_ngram_size: 0,
        }
    }
}

/// Tokens that would complete an n-gram already present in `history` (`n >= 1`).
pub fn banned_ngram_tokens(history: &[u32], n: usize) -> Vec<u32> {
    if n == 0 || history.len() < n {
        return Vec::new();
    }
    let prefix = &history[history.len() + 1 - n..];
    let mut banned = Vec::new();
    for start in 0..=history.len() - n {
        if &history[start..start + n - 1] == prefix {
            banned.push(history[start + n - 1]);
        }
    }
    banned
}

#[cfg(test)]
mod tests {
    use super::banned_ngram_tokens;

    #[test]
    fn ngram_blocking_like_transformers() {
        // history "a b c a b": the 3-gram "a b c" exists, so after "a b" the token c is banned
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 3), vec![3]);
        assert_eq!(banned_ngram_tokens(&[1, 2, 3, 1, 2], 2), vec![3]);
        assert_eq!(banned_ngram_tokens(&[5, 5], 2), vec![5]);
        assert_eq!(banned_ngram_tokens(&[1, 2], 3), Vec::<u32>::new());
        assert_eq!(banned_ngram_tokens(&[1, 2, 3], 0), Vec::<u32>::new());
        // n = 1: no token may repeat
        let mut b = banned_ngram_tokens(&[4, 7, 4], 1);
        b.sort();
        assert_eq!(b, vec![4, 4, 7]);
    }
}

/// One row to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Encoder input ids (ending with `</s>`).
    pub input_ids: Vec<u32>,
    /// Decoder tokens forced after the start token (the control tokens), not returned.
    pub prefix: Vec<u32>,
    /// Settings.
    pub params: GenerationParams,
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced `</s>`.
    Eos,
    /// `max_new_tokens` were generated.
    Length,
    /// The text reached a stop string.
    Stop,
}

impl FinishReason {
    /// The wire name (`eos`, `length`, `stop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Length => "length",
            Self::Stop => "stop",
        }
    }
}

/// The result of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    /// Generated ids after the forced prefix, including a final `</s>` if one was produced.
    pub token_ids: Vec<u32>,
    /// The decoded text without special tokens, cut before a stop string.
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Log-probability of each generated token under the model (temperature 1, no
    /// filtering), when requested.
    pub logprobs: Option<Vec<f32>>,
}
