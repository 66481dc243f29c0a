//! Training a byte-level BPE tokenizer with T5's special tokens.
//!
//! `<pad>` = 0, `</s>` = 1, `<unk>` = 2; NFKC normalisation and collapsed runs of spaces;
//! byte-level pre-tokenization (GPT-2's: words with their leading space, punctuation apart); a
//! post-processor that appends `</s>` as T5 does. The model is BPE over bytes, so every text
//! encodes without `<unk>` (whatever its letters, emoji included) and decodes back exactly.
//!
//! Why not SentencePiece's Unigram, as T5 itself uses: the `tokenizers` Unigram trainer seeds
//! its pieces with substrings that repeat across *distinct words*, so a frequent word that
//! shares no substring with another (`the`, `name` in a templated corpus) never becomes a
//! piece, while every rare name does; and Metaspace pre-tokenization glues punctuation to words
//! (`yes.` and `yes?` are different pieces), so a word copied from the question into the
//! rationale changes its tokens. On the copy probe (`mario-train probe copy`) the Unigram
//! tokenizer split `the` into three pieces and kept each training name whole, so unseen names
//! (split into characters) looked like nothing the model had seen.
//!
//! `min_frequency` keeps a merge only when the pair occurs that often: a word seen a few times
//! stays in pieces that the model sees in many words, so a new word of the same kind is made of
//! familiar pieces.
//!
//! The corpus holds the questions, the rationales and the targets as SFT builds them
//! (`<rationale> So the answer is <answer>.`). Training runs single-threaded and is
//! deterministic: the same corpus and settings always give the same `tokenizer.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::normalizers::{replace::Replace, unicode::NFKC, Sequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, NormalizerWrapper, Tokenizer};

/// T5's special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 3] = ["<pad>", "</s>", "<unk>"];

/// How to train a tokenizer (the `[tokenizer]` section of a config file).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerSettings {
    /// Most pieces in the vocabulary (specials and the 256 bytes included); a small corpus
    /// may give fewer.
    pub vocab_size: usize,
    /// A pair of pieces is merged only if it occurs at least this often in the corpus.
    pub min_frequency: u64,
}

impl Default for TokenizerSettings {
    fn default() -> Self {
        Self {
            vocab_size: 8000,
            min_frequency: 8,
        }
    }
}

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

/// The tokenizer's training texts from data files, split layout (question, rationale and the
/// SFT target) or teacher layout (question, rationale, and the target with the gold label).
/// A file that is neither is an error naming it (the split reader's message).
pub fn corpus_from_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut texts: Vec<String> = Vec::new();
    for f in files {
        match crate::data::load_examples(f) {
            Ok(examples) => {
                for e in examples {
                    texts.extend(e.target());
                    texts.extend(e.rationale);
                    texts.push(e.question);
                }
            }
            Err(split_err) => match crate::data::load_teacher(f) {
                Ok(records) => {
                    for r in records {
                        texts.push(mario::rationale::build_target(
                            &r.predicted_rationale,
                            &r.gold_label,
                        ));
                        texts.push(r.question);
                        texts.push(r.predicted_rationale);
                    }
                }
                Err(_) => return Err(split_err.into()),
            },
        }
    }
    Ok(corpus(texts.iter().map(String::as_str)))
}

/// The characters of `text` that `tokenizer` encodes as `<unk>`, in order of appearance
/// (empty when it has no `<unk>` token or none occurs).
pub fn unknown_characters(
    tokenizer: &mario::tokenize::TextTokenizer,
    text: &str,
) -> Result<String> {
    let Some(unk) = tokenizer.token_id("<unk>") else {
        return Ok(String::new());
    };
    let enc = tokenizer
        .inner()
        .encode(text, false)
        .map_err(|e| anyhow!("tokenizer: {e}"))?;
    let mut out = String::new();
    for (&id, &(a, b)) in enc.get_ids().iter().zip(enc.get_offsets()) {
        if id == unk {
            for c in text
                .get(a..b)
                .unwrap_or("?")
                .chars()
                .filter(|c| !c.is_whitespace())
            {
                if !out.contains(c) {
                    out.push(c);
                }
            }
        }
    }
    Ok(out)
}

/// Refuses a data file whose SFT targets (`<rationale> So the answer is <answer>.`) the
/// tokenizer cannot encode without `<unk>`: a model trained on such targets learns to emit
/// `<unk>`, and a broken answer template parses no answer. The error names the file, the
/// record and the characters missing from the vocabulary.
pub fn check_targets(
    tokenizer: &mario::tokenize::TextTokenizer,
    path: &Path,
    examples: &[crate::data::Example],
) -> Result<()> {
    for e in examples {
        let Some(target) = e.target() else { continue };
        let missing = unknown_characters(tokenizer, &target)?;
        if !missing.is_empty() {
            let has = |t: &str| missing.chars().any(|c| t.contains(c));
            let field = if has(&e.answer) {
                "answer"
            } else if e.rationale.as_deref().is_some_and(has) {
                "rationale"
            } else {
                "target (the answer template)"
            };
            anyhow::bail!(
                "{}: record {}: field `{field}`: the target encodes as <unk> with {} \
                 (characters {missing:?} are not in its vocabulary); train the tokenizer on this \
                 data (`mario-train tokenizer` reads the targets too) or fix the record",
                path.display(),
                e.id,
                tokenizer.path().display(),
            );
        }
    }
    Ok(())
}

fn empty_tokenizer() -> Result<Tokenizer> {
    let mut tok = Tokenizer::new(ModelWrapper::BPE(BPE::default()));
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
    // a leading space on the first word too, so a word has the same pieces everywhere
    tok.with_pre_tokenizer(Some(ByteLevel::new(true, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    Ok(tok)
}

/// Trains a byte-level BPE tokenizer on `texts`.
pub fn train_tokenizer(texts: &[String], settings: &TokenizerSettings) -> Result<Tokenizer> {
    if texts.is_empty() {
        return Err(anyhow!(
            "no training text (every string was shorter than 8 characters?)"
        ));
    }
    tokenizers::utils::parallelism::set_parallelism(false);
    let mut tok = empty_tokenizer()?;
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(settings.vocab_size)
        .min_frequency(settings.min_frequency)
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(t.to_string(), true))
                .collect(),
        )
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);
    tok.train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
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

    fn settings(vocab_size: usize) -> TokenizerSettings {
        TokenizerSettings {
            vocab_size,
            min_frequency: 2,
        }
    }

    #[test]
    fn tokenizer_has_t5_specials_and_appends_eos() {
        let tok = train_tokenizer(&texts(), &settings(400)).unwrap();
        assert_eq!(tok.token_to_id("<pad>"), Some(0));
        assert_eq!(tok.token_to_id("</s>"), Some(1));
        assert_eq!(tok.token_to_id("<unk>"), Some(2));
        let enc = tok.encode("Pears float.", true).unwrap();
        assert_eq!(enc.get_ids().last(), Some(&1));
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), " Pears float.");
        let n = tok.get_vocab_size(true);
        assert!((259..=400).contains(&n), "{n}");
    }

    #[test]
    fn tokenizer_training_is_deterministic() {
        let a = train_tokenizer(&texts(), &settings(400))
            .unwrap()
            .to_string(false)
            .unwrap();
        let b = train_tokenizer(&texts(), &settings(400))
            .unwrap()
            .to_string(false)
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_corpus_without_capitals_still_encodes_the_answer_template() {
        // the bug this guards: a Unigram vocabulary built from lower-case text had no `S`, so
        // every target decoded as "o the answer is ..." and no answer parsed
        let lower: Vec<String> = texts().iter().map(|t| t.to_lowercase()).collect();
        let tok = train_tokenizer(&lower, &settings(400)).unwrap();
        let tok = mario::tokenize::TextTokenizer::new(tok, Path::new("t.json")).unwrap();
        for text in ["So the answer is yes.", "Ünïcödé 🙂 (B) Zebra?"] {
            assert_eq!(unknown_characters(&tok, text).unwrap(), "", "{text}");
            let ids = tok.encode(text).unwrap();
            assert!(!ids.contains(&2), "{text}: {ids:?}");
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn words_keep_their_pieces_next_to_punctuation() {
        let tok = train_tokenizer(&texts(), &settings(400)).unwrap();
        let pieces = |t: &str| tok.encode(t, false).unwrap().get_tokens().to_vec();
        let q = pieces("Is it venus?");
        let r = pieces("It is venus.");
        assert_eq!(q[q.len() - 2..q.len() - 1], r[r.len() - 2..r.len() - 1]);
        assert_eq!(q.last().unwrap(), "?");
    }

    #[test]
    fn the_corpus_reads_targets_and_teacher_files() {
        let dir = tempfile::tempdir().unwrap();
        let split = dir.path().join("train.jsonl");
        std::fs::write(
            &split,
            r#"{"question": "is ice cold?", "rationale": "ice is frozen water", "answer": "yes"}"#,
        )
        .unwrap();
        let teacher = dir.path().join("teacher.jsonl");
        std::fs::write(
            &teacher,
            r#"{"question": "is fire cold?", "gold_label": "no", "predicted_label": "yes", "predicted_rationale": "fire burns"}"#,
        )
        .unwrap();
        let c = corpus_from_files(&[split, teacher]).unwrap();
        assert!(
            c.contains(&"ice is frozen water. So the answer is yes.".to_string()),
            "{c:?}"
        );
        assert!(
            c.contains(&"fire burns. So the answer is no.".to_string()),
            "{c:?}"
        );
        assert!(c.contains(&"is fire cold?".to_string()));
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, "{\"text\": 1}\n").unwrap();
        let msg = format!("{:#}", corpus_from_files(&[bad]).unwrap_err());
        assert!(msg.contains("bad.jsonl"), "{msg}");
    }

    #[test]
    fn targets_with_unknown_characters_are_refused_naming_the_record() {
        // a Unigram tokenizer (as a user's T5 checkpoint brings) without `S` or `Z`
        let vocab: Vec<(String, f64)> = [
            "<pad>", "</s>", "<unk>", "▁", "o", "t", "h", "e", "a", "n", "s", "w", "r", "i", "y",
            ".", "c", "l", "d",
        ]
        .iter()
        .map(|p| (p.to_string(), -1.0))
        .collect();
        let model = tokenizers::models::unigram::Unigram::from(vocab, Some(2), false).unwrap();
        let mut inner = Tokenizer::new(ModelWrapper::Unigram(model));
        inner.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::metaspace::Metaspace::new(
            '▁',
            tokenizers::pre_tokenizers::metaspace::PrependScheme::Always,
            true,
        )));
        let tok = mario::tokenize::TextTokenizer::new(inner, Path::new("user.json")).unwrap();
        assert_eq!(
            unknown_characters(&tok, "So the answer is yes.").unwrap(),
            "S"
        );
        let ex = |id: &str, r: &str| crate::data::Example {
            id: id.into(),
            question: "is ice cold?".into(),
            rationale: Some(r.into()),
            answer: "yes".into(),
        };
        let msg = check_targets(&tok, Path::new("d/train.jsonl"), &[ex("1", "ice is cold")])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("d/train.jsonl: record 1") && msg.contains("\"S\""),
            "{msg}"
        );
        let msg = check_targets(&tok, Path::new("t.jsonl"), &[ex("7", "ice is Zcold")])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("record 7: field `rationale`") && msg.contains('Z'),
            "{msg}"
        );
    }
}
