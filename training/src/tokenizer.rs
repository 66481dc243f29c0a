//! Training a SentencePiece-style Unigram tokenizer with T5's special tokens.
//!
//! `<pad>` = 0, `</s>` = 1, `<unk>` = 2; NFKC normalisation and collapsed runs of spaces;
//! Metaspace (`▁`) pre-tokenization; a post-processor that appends `</s>` as T5 does. The
//! Unigram trainer is not bit-deterministic (hash-map order changes float sums, so near-tied
//! pieces can swap ids), so training runs single-threaded and the vocabulary is put in a
//! canonical order afterwards: the same corpus always gives the same `tokenizer.json`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tokenizers::decoders::metaspace::Metaspace as MetaspaceDecoder;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{replace::Replace, unicode::NFKC, Sequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer};

/// T5's special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// The texts a tokenizer is trained on: unique, whitespace-normalised, at least 8 characters,
/// sorted (so the corpus does not depend on file order).
pub fn corpus<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<String> = texts
        .into_iter()
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| t.chars().count() >= 8 && t != crate::data::DUMMY_RATIONALE)
        .collect();
    set.into_iter().collect()
}

fn empty_tokenizer() -> Result<Tokenizer> {
    let mut tok = Tokenizer::new(ModelWrapper::Unigram(Unigram::default()));
    let normalizer = Sequence::new(vec![
        NormalizerWrapper::NFKC(NFKC),
        NormalizerWrapper::Replace(
            Replace::new(
                tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
                " ",
            )
            .map_err(|e| anyhow!("{e}"))?,
        ),
    ]);
    tok.with_normalizer(Some(normalizer))
        .map_err(|e| anyhow!("tokenizer normalizer: {e}"))?;
    tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)));
    tok.with_decoder(Some(MetaspaceDecoder::new(
        '▁',
        PrependScheme::Always,
        true,
    )));
    Ok(tok)
}

/// Trains a Unigram tokenizer of `vocab_size` pieces (specials included) on `texts`.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer> {
    if texts.is_empty() {
        return Err(anyhow!(
            "no training text (every string was shorter than 8 characters?)"
        ));
    }
    tokenizers::utils::parallelism::set_parallelism(false);
    let mut tok = empty_tokenizer()?;
    let trainer = UnigramTrainer::builder()
        .vocab_size(vocab_size as u32)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(t.to_string(), true))
                .collect(),
        )
        .unk_token(Some("<unk>".into()))
        .max_piece_length(16)
        .show_progress(false)
        .build()
        .map_err(|e| anyhow!("tokenizer trainer: {e}"))?;
    let mut trainer = TrainerWrapper::UnigramTrainer(trainer);
    tok.train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    let vocab: Vec<(String, f64)> = match tok.get_model() {
        ModelWrapper::Unigram(u) => u.iter().map(|(p, s)| (p.clone(), *s)).collect(),
        _ => unreachable!("a Unigram model was trained"),
    };
    let canonical = canonical_vocab(vocab)?;
    let model = Unigram::from(canonical, Some(2), false).map_err(|e| anyhow!("{e}"))?;
    tok.with_model(ModelWrapper::Unigram(model));
    tok.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single("$A </s>")
            .map_err(|e| anyhow!("{e}"))?
            .try_pair("$A </s> $B </s>")
            .map_err(|e| anyhow!("{e}"))?
            .special_tokens(vec![("</s>", 1)])
            .build()
            .map_err(|e| anyhow!("{e}"))?,
    ));
    for (id, t) in SPECIAL_TOKENS.iter().enumerate() {
        if tok.token_to_id(t) != Some(id as u32) {
            return Err(anyhow!("special token {t} did not get id {id}"));
        }
    }
    Ok(tok)
}

/// Specials first; then pieces by (score rounded to 1e-6, descending; piece); the trainer's
/// required-character tail (single characters scored below every multi-character piece) gets
/// its score multiset in character order.
fn canonical_vocab(vocab: Vec<(String, f64)>) -> Result<Vec<(String, f64)>> {
    let (specials, rest): (Vec<_>, Vec<_>) = vocab
        .into_iter()
        .partition(|(p, _)| SPECIAL_TOKENS.contains(&p.as_str()));
    if specials.len() != 3 {
        return Err(anyhow!("trained vocabulary lacks T5's special tokens"));
    }
    let round = |s: f64| (s * 1e6).round() / 1e6;
    let rest: Vec<(String, f64)> = rest.into_iter().map(|(p, s)| (p, round(s))).collect();
    let min_multi = rest
        .iter()
        .filter(|(p, _)| p.chars().count() > 1)
        .map(|(_, s)| *s)
        .fold(f64::INFINITY, f64::min);
    let (tail, mut head): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|(p, s)| p.chars().count() == 1 && *s < min_multi);
    head.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut chars: Vec<String> = tail.iter().map(|(p, _)| p.clone()).collect();
    let mut scores: Vec<f64> = tail.iter().map(|(_, s)| *s).collect();
    chars.sort();
    scores.sort_by(|a, b| b.total_cmp(a));
    let mut out: Vec<(String, f64)> = SPECIAL_TOKENS
        .iter()
        .map(|t| (t.to_string(), 0.0))
        .collect();
    out.extend(head);
    out.extend(chars.into_iter().zip(scores));
    Ok(out)
}

/// Writes `tokenizer.json`.
pub fn save_tokenizer(tok: &Tokenizer, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    tok.save(path, true)
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> Vec<String> {
        let base = [
            "Pears are less dense than water, so they float.",
            "The boys were racing their cars in the soapbox derby.",
            "Venus is the hottest planet in the solar system.",
            "Hypothermia typically occurs from exposure to extreme cold.",
            "When something is closer, it looks bigger.",
            "Latin verbs have four principal parts.",
        ];
        let mut out = Vec::new();
        for i in 0..40 {
            for b in base {
                out.push(format!("{b} Example number {i} of {}.", i * 7));
            }
        }
        corpus(out.iter().map(String::as_str))
    }

    #[test]
    fn tokenizer_has_t5_specials_and_appends_eos() {
        let tok = train_tokenizer(&texts(), 120).unwrap();
        assert_eq!(tok.token_to_id("<pad>"), Some(0));
        assert_eq!(tok.token_to_id("</s>"), Some(1));
        assert_eq!(tok.token_to_id("<unk>"), Some(2));
        let enc = tok.encode("Pears float.", true).unwrap();
        assert_eq!(enc.get_ids().last(), Some(&1));
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "Pears float.");
        assert!(tok.get_vocab_size(true) <= 120);
    }

    #[test]
    fn tokenizer_training_is_deterministic() {
        let a = train_tokenizer(&texts(), 150)
            .unwrap()
            .to_string(false)
            .unwrap();
        let b = train_tokenizer(&texts(), 150)
            .unwrap()
            .to_string(false)
            .unwrap();
        assert_eq!(a, b);
    }
}
