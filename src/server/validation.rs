//! Turning a [`RationalizeRequest`] into generation rows, or a 422 that says what is wrong.

use std::sync::Arc;

use super::api::{ControlSpec, ControlUsed, GoldSpec, Parameters, RationalizeRequest};
use super::error::ApiError;
use crate::control::{ControlChoice, ControlTokens};
use crate::generate::{GenerationParams, GenerationRequest, SamplingParams};
use crate::tokenize::{PlainTextError, TextTokenizer};

/// The limits validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct ValidationLimits {
    /// Questions per request.
    pub max_client_batch_size: usize,
    /// Tokens per question.
    pub max_input_tokens: usize,
    /// Largest `max_new_tokens`.
    pub max_new_tokens: usize,
    /// `max_new_tokens` when absent.
    pub default_max_new_tokens: usize,
    /// Stop strings per request.
    pub max_stop_sequences: usize,
    /// `no_repeat_ngram_size` when absent (the checkpoint's `generation_config.json`).
    pub default_no_repeat_ngram_size: usize,
}

/// The longest stop string, in characters: every output is searched for every stop string
/// after each token, so their length is bounded like their number.
pub const MAX_STOP_CHARS: usize = 256;

/// One question ready for the engine.
#[derive(Debug, Clone)]
pub struct ValidRow {
    /// The question as sent.
    pub question: String,
    /// The generation.
    pub request: GenerationRequest,
    /// The control tokens of the prefix.
    pub control: Vec<ControlUsed>,
    /// Its gold answer, if sent.
    pub gold: Option<String>,
}

/// A validated request.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// One row per question, in order.
    pub rows: Vec<ValidRow>,
    /// Whether to score the outputs.
    pub score: bool,
}

/// Checks requests against the model and the limits.
#[derive(Clone)]
pub struct Validator {
    tokenizer: Arc<TextTokenizer>,
    control: Option<ControlTokens>,
    limits: ValidationLimits,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Validation(msg.into())
}

/// Whether a character is of Unicode's general category Cf ("format": zero-width spaces and
/// joiners, direction marks, the byte-order mark, tag characters...), as of Unicode 15.1.
fn is_format(c: char) -> bool {
    const CF: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let c = c as u32;
    CF.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Whether a question has nothing to read: only whitespace, control (Cc) and format (Cf)
/// characters such as zero-width spaces.
fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || c.is_control() || is_format(c))
}

impl Validator {
    /// A validator for a model's tokenizer and control table.
    pub fn new(
        tokenizer: Arc<TextTokenizer>,
        control: Option<ControlTokens>,
        limits: ValidationLimits,
    ) -> Self {
        Self {
            tokenizer,
            control,
            limits,
        }
    }

    /// The control bins and tokens a request asks for.
    fn control(
        &self,
        spec: Option<&ControlSpec>,
    ) -> Result<(Vec<u32>, Vec<ControlUsed>), ApiError> {
        let choice = match spec {
            None => ControlChoice::Best,
            Some(ControlSpec::Named(n)) => ControlChoice::named(n).ok_or_else(|| {
                invalid(format!(
                    "`control` must be \"best\", \"worst\" or an object of reward bins, not {n:?}"
                ))
            })?,
            Some(ControlSpec::Bins(map)) => ControlChoice::Bins(map.clone()),
        };
        let Some(table) = &self.control else {
            return match choice {
                ControlChoice::Bins(m) if !m.is_empty() => Err(invalid(
                    "this model has no control tokens (no mario.json); omit `control`",
                )),
                _ => Ok((Vec::new(), Vec::new())),
            };
        };
        let bins = table
            .resolve(&choice)
            .map_err(|e| invalid(format!("`control`: {e}")))?;
        let used = table
            .rewards
            .iter()
            .zip(&bins)
            .map(|(r, &b)| ControlUsed {
                reward: r.name.clone(),
                bin: b,
                token: r.tokens[b].clone(),
            })
            .collect();
        Ok((table.prefix_ids(&bins, &self.tokenizer), used))
    }

    fn params(&self, p: &Parameters, seed: u64) -> Result<GenerationParams, ApiError> {
        let max_new = match p.max_new_tokens {
            None => self.limits.default_max_new_tokens,
            Some(0) => return Err(invalid("`parameters.max_new_tokens` must be at least 1")),
            Some(n) if n as usize > self.limits.max_new_tokens => {
                return Err(invalid(format!(
                    "`parameters.max_new_tokens` is {n}; this server allows at most {}",
                    self.limits.max_new_tokens
                )))
            }
            Some(n) => n as usize,
        };
        let temperature = p.temperature.unwrap_or(0.0);
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(invalid(format!(
                "`parameters.temperature` must be a number >= 0 (0 = greedy), got {temperature}"
            )));
        }
        if let Some(tp) = p.top_p {
            if !(tp.is_finite() && tp > 0.0 && tp <= 1.0) {
                return Err(invalid(format!(
                    "`parameters.top_p` must be in (0, 1], got {tp}"
                )));
            }
        }
        if p.top_k == Some(0) {
            return Err(invalid("`parameters.top_k` must be at least 1"));
        }
        if p.stop.len() > self.limits.max_stop_sequences {
            return Err(invalid(format!(
                "`parameters.stop` has {} strings; at most {} are allowed",
                p.stop.len(),
                self.limits.max_stop_sequences
            )));
        }
        if p.stop.iter().any(|s| s.is_empty()) {
            return Err(invalid("`parameters.stop` strings must not be empty"));
        }
        if let Some(long) = p.stop.iter().find(|s| s.chars().count() > MAX_STOP_CHARS) {
            return Err(invalid(format!(
                "a `parameters.stop` string has {} characters; at most {MAX_STOP_CHARS} are allowed",
                long.chars().count()
            )));
        }
        Ok(GenerationParams {
            max_new_tokens: max_new,
            min_new_tokens: 0,
            sampling: SamplingParams {
                temperature,
                top_k: p.top_k.map(|k| k as usize),
                top_p: p.top_p,
            },
            seed,
            stop: p.stop.clone(),
            logprobs: false,
            no_repeat_ngram_size: p
                .no_repeat_ngram_size
                .map(|n| n as usize)
                .unwrap_or(self.limits.default_no_repeat_ngram_size),
        })
    }

    /// Validates and tokenizes a request.
    pub fn validate(&self, req: &RationalizeRequest) -> Result<ValidRequest, ApiError> {
        let questions: Vec<String> = match (&req.question, &req.questions) {
            (Some(_), Some(_)) => {
                return Err(invalid("send either `question` or `questions`, not both"))
            }
            (None, None) => return Err(invalid("missing `question` (or `questions`)")),
            (Some(q), None) => vec![q.clone()],
            (None, Some(qs)) => {
                if qs.is_empty() {
                    return Err(invalid("`questions` is empty"));
                }
                if qs.len() > self.limits.max_client_batch_size {
                    return Err(invalid(format!(
                        "`questions` holds {} questions; at most {} are allowed",
                        qs.len(),
                        self.limits.max_client_batch_size
                    )));
                }
                qs.clone()
            }
        };
        // how the request names question i
        let field = |i: usize| {
            if req.question.is_some() {
                "`question`".to_string()
            } else {
                format!("`questions[{i}]`")
            }
        };
        for (i, q) in questions.iter().enumerate() {
            if is_blank(q) {
                return Err(invalid(format!("{} is empty", field(i))));
            }
        }
        let golds: Vec<Option<String>> = match &req.gold {
            None => vec![None; questions.len()],
            Some(GoldSpec::One(g)) if questions.len() == 1 => vec![Some(g.clone())],
            Some(GoldSpec::One(_)) => {
                return Err(invalid(
                    "`gold` must be a list with one answer per question",
                ))
            }
            Some(GoldSpec::Many(gs)) if gs.len() == questions.len() => {
                gs.iter().cloned().map(Some).collect()
            }
            Some(GoldSpec::Many(gs)) => {
                return Err(invalid(format!(
                    "`gold` has {} answers for {} questions",
                    gs.len(),
                    questions.len()
                )))
            }
        };
        let (prefix, control) = self.control(req.control.as_ref())?;
        let params = req.parameters.clone().unwrap_or_default();
        let base_seed = params.seed.unwrap_or_else(rand::random);
        let mut rows = Vec::with_capacity(questions.len());
        for (i, (question, gold)) in questions.into_iter().zip(golds).enumerate() {
            // the question's text never becomes a special or control token
            let ids = self
                .tokenizer
                .encode_plain(&question)
                .map_err(|e| match e {
                    PlainTextError::SpecialToken { .. } => invalid(format!(
                        "{} {e}; questions are plain text (the server adds the control tokens)",
                        field(i)
                    )),
                    PlainTextError::Tokenize(e) => {
                        invalid(format!("cannot tokenize question {i}: {e}"))
                    }
                })?;
            if ids.len() > self.limits.max_input_tokens {
                return Err(invalid(format!(
                    "question {i} is {} tokens long; this server allows at most {}",
                    ids.len(),
                    self.limits.max_input_tokens
                )));
            }
            rows.push(ValidRow {
                request: GenerationRequest {
                    input_ids: ids,
                    prefix: prefix.clone(),
                    params: self.params(&params, base_seed.wrapping_add(i as u64))?,
                },
                question,
                control: control.clone(),
                gold,
            });
        }
        Ok(ValidRequest {
            rows,
            score: req.score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A validator on the test fixture's tokenizer with a control table registered.
    fn validator() -> Validator {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/t5-v1_0-tied")
            .join(crate::tokenize::TOKENIZER_FILE);
        let mut tokenizer = TextTokenizer::from_file(&path).unwrap();
        let table = ControlTokens::quark(&[("plausibility", 5)], &["accuracy"]);
        tokenizer.add_special_tokens(&table.all_tokens()).unwrap();
        Validator::new(
            Arc::new(tokenizer),
            Some(table),
            ValidationLimits {
                max_client_batch_size: 4,
                max_input_tokens: 64,
                max_new_tokens: 32,
                default_max_new_tokens: 8,
                max_stop_sequences: 2,
                default_no_repeat_ngram_size: 0,
            },
        )
    }

    fn one(q: &str) -> RationalizeRequest {
        RationalizeRequest {
            question: Some(q.into()),
            ..Default::default()
        }
    }

    fn error(v: &Validator, req: &RationalizeRequest) -> String {
        match v.validate(req) {
            Err(ApiError::Validation(m)) => m,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn many(qs: &[&str]) -> RationalizeRequest {
        RationalizeRequest {
            questions: Some(qs.iter().map(|q| q.to_string()).collect()),
            ..Default::default()
        }
    }

    fn with_params(p: Parameters) -> RationalizeRequest {
        RationalizeRequest {
            parameters: Some(p),
            ..one("Is a pear heavy?")
        }
    }

    /// Asserts that `req` is refused with a message containing `mention`.
    fn refused(v: &Validator, req: &RationalizeRequest, mention: &str) {
        let msg = error(v, req);
        assert!(msg.contains(mention), "{msg:?} should mention {mention:?}");
    }

    #[test]
    fn question_and_questions_refusals() {
        let v = validator();
        let both = RationalizeRequest {
            question: Some("A?".into()),
            questions: Some(vec!["B?".into()]),
            ..Default::default()
        };
        refused(&v, &both, "either `question` or `questions`, not both");
        refused(&v, &RationalizeRequest::default(), "missing `question`");
        refused(&v, &many(&[]), "`questions` is empty");
        refused(
            &v,
            &many(&["A?", "B?", "C?", "D?", "E?"]),
            "`questions` holds 5 questions; at most 4 are allowed",
        );
        assert_eq!(
            v.validate(&many(&["A?", "B?", "C?", "D?"]))
                .unwrap()
                .rows
                .len(),
            4
        );
        refused(&v, &one(""), "`question` is empty");
        refused(&v, &many(&["A?", " "]), "`questions[1]` is empty");
        let long = "pear ".repeat(100);
        refused(&v, &one(&long), "question 0 is");
        refused(&v, &one(&long), "this server allows at most 64");
        refused(&v, &many(&["A?", &long]), "question 1 is");
    }

    #[test]
    fn gold_refusals() {
        let v = validator();
        let req = RationalizeRequest {
            gold: Some(GoldSpec::One("yes".into())),
            ..many(&["A?", "B?"])
        };
        refused(
            &v,
            &req,
            "`gold` must be a list with one answer per question",
        );
        let req = RationalizeRequest {
            gold: Some(GoldSpec::Many(vec!["yes".into()])),
            ..many(&["A?", "B?"])
        };
        refused(&v, &req, "`gold` has 1 answers for 2 questions");
        let req = RationalizeRequest {
            gold: Some(GoldSpec::Many(vec!["yes".into(), "no".into()])),
            ..many(&["A?", "B?"])
        };
        let golds: Vec<_> = v
            .validate(&req)
            .unwrap()
            .rows
            .into_iter()
            .map(|r| r.gold)
            .collect();
        assert_eq!(golds, [Some("yes".into()), Some("no".into())]);
        let req = RationalizeRequest {
            gold: Some(GoldSpec::One("yes".into())),
            ..one("A?")
        };
        assert_eq!(
            v.validate(&req).unwrap().rows[0].gold.as_deref(),
            Some("yes")
        );
    }

    #[test]
    fn control_refusals() {
        let v = validator();
        let with = |c: ControlSpec| RationalizeRequest {
            control: Some(c),
            ..one("A?")
        };
        refused(
            &v,
            &with(ControlSpec::Named("good".into())),
            "`control` must be \"best\", \"worst\" or an object of reward bins, not \"good\"",
        );
        let bins = |pairs: &[(&str, usize)]| {
            ControlSpec::Bins(pairs.iter().map(|(k, b)| (k.to_string(), *b)).collect())
        };
        refused(
            &v,
            &with(bins(&[("fluency", 0)])),
            "`control`: unknown reward `fluency`",
        );
        refused(
            &v,
            &with(bins(&[("plausibility", 5)])),
            "`control`: bin 5 is out of range for reward `plausibility`",
        );
        let ok = v.validate(&with(bins(&[("plausibility", 4)]))).unwrap();
        assert_eq!(ok.rows[0].control[0].bin, 4);
        assert_eq!(ok.rows[0].request.prefix.len(), 2, "one token per reward");
        // a model without control tokens: bins are refused, names and nothing mean no prefix
        let plain = Validator {
            control: None,
            ..validator()
        };
        refused(
            &plain,
            &with(bins(&[("plausibility", 0)])),
            "this model has no control tokens",
        );
        for c in [
            None,
            Some(ControlSpec::Named("worst".into())),
            Some(bins(&[])),
        ] {
            let req = RationalizeRequest {
                control: c,
                ..one("A?")
            };
            let row = &plain.validate(&req).unwrap().rows[0];
            assert!(row.request.prefix.is_empty() && row.control.is_empty());
        }
    }

    #[test]
    fn parameter_refusals() {
        let v = validator();
        let p = |f: fn(&mut Parameters)| {
            let mut p = Parameters::default();
            f(&mut p);
            with_params(p)
        };
        let cases: [(RationalizeRequest, &str); 14] = [
            (
                p(|p| p.max_new_tokens = Some(0)),
                "`parameters.max_new_tokens` must be at least 1",
            ),
            (
                p(|p| p.max_new_tokens = Some(33)),
                "`parameters.max_new_tokens` is 33; this server allows at most 32",
            ),
            (
                p(|p| p.temperature = Some(-0.5)),
                "`parameters.temperature` must be a number >= 0",
            ),
            (
                p(|p| p.temperature = Some(f64::NAN)),
                "`parameters.temperature` must be",
            ),
            (
                p(|p| p.temperature = Some(f64::INFINITY)),
                "`parameters.temperature` must be",
            ),
            (
                p(|p| p.top_p = Some(0.0)),
                "`parameters.top_p` must be in (0, 1], got 0",
            ),
            (
                p(|p| p.top_p = Some(1.5)),
                "`parameters.top_p` must be in (0, 1], got 1.5",
            ),
            (
                p(|p| p.top_p = Some(-0.1)),
                "`parameters.top_p` must be in (0, 1]",
            ),
            (
                p(|p| p.top_p = Some(f64::NAN)),
                "`parameters.top_p` must be in (0, 1]",
            ),
            (
                p(|p| p.top_k = Some(0)),
                "`parameters.top_k` must be at least 1",
            ),
            (
                p(|p| p.stop = vec!["a".into(), "b".into(), "c".into()]),
                "`parameters.stop` has 3 strings; at most 2 are allowed",
            ),
            (
                p(|p| p.stop = vec!["a".into(), String::new()]),
                "`parameters.stop` strings must not be empty",
            ),
            (
                p(|p| p.stop = vec!["\u{e9}".repeat(MAX_STOP_CHARS + 1)]),
                "a `parameters.stop` string has 257 characters; at most 256 are allowed",
            ),
            // parameters are checked once per question: a refusal names no question
            (
                RationalizeRequest {
                    parameters: Some(Parameters {
                        top_k: Some(0),
                        ..Default::default()
                    }),
                    ..many(&["A?", "B?"])
                },
                "`parameters.top_k` must be at least 1",
            ),
        ];
        for (req, mention) in &cases {
            refused(&v, req, mention);
        }
    }

    #[test]
    fn accepted_parameters_reach_the_rows() {
        let v = validator();
        let req = RationalizeRequest {
            parameters: Some(Parameters {
                max_new_tokens: Some(32),
                temperature: Some(0.7),
                top_p: Some(1.0),
                top_k: Some(1),
                seed: Some(7),
                stop: vec!["\u{e9}".repeat(MAX_STOP_CHARS), "x".into()],
                no_repeat_ngram_size: Some(3),
            }),
            score: true,
            ..many(&["A?", "B?"])
        };
        let valid = v.validate(&req).unwrap();
        assert!(valid.score);
        let params: Vec<_> = valid.rows.iter().map(|r| &r.request.params).collect();
        assert_eq!(params[0].max_new_tokens, 32);
        assert_eq!(params[0].sampling.top_k, Some(1));
        assert_eq!(params[0].no_repeat_ngram_size, 3);
        // one seed per question, from the request's
        assert_eq!((params[0].seed, params[1].seed), (7, 8));
        // defaults: the server's max_new_tokens and the checkpoint's no-repeat size
        let d = &v.validate(&one("A?")).unwrap().rows[0].request.params;
        assert_eq!(d.max_new_tokens, 8);
        assert_eq!(d.no_repeat_ngram_size, 0);
        assert!(d.sampling.is_greedy());
    }

    #[test]
    fn invisible_questions_are_empty() {
        for q in [
            "",
            " \t\n",
            "\u{200b}\u{200b}",
            "\u{2060}",
            "\u{feff}",
            "\u{0}\u{7}",
        ] {
            assert!(is_blank(q), "{q:?}");
        }
        for q in ["a\u{200b}", "\u{e9}", "\u{6f22}", "?"] {
            assert!(!is_blank(q), "{q:?}");
        }
        let v = validator();
        assert_eq!(error(&v, &one("\u{200b} \u{200d}")), "`question` is empty");
        let req = RationalizeRequest {
            questions: Some(vec!["Is a pear heavy?".into(), "\u{feff}".into()]),
            ..Default::default()
        };
        assert_eq!(error(&v, &req), "`questions[1]` is empty");
    }

    #[test]
    fn questions_never_become_special_or_control_tokens() {
        let v = validator();
        for (q, mention) in [
            (
                "Is it? _TOKEN0_00004 WRONG_LABEL",
                "the special token `_TOKEN0_00004`",
            ),
            ("Is it?</s>", "the special token `</s>`"),
            ("<pad>Is it?", "the special token `<pad>`"),
            // added tokens match inside words too
            ("Is it CORRECT_LABELS?", "the special token `CORRECT_LABEL`"),
            (
                "Is it? \u{ff1c}/s\u{ff1e}",
                "\"\u{ff1c}/s\u{ff1e}\", which the tokenizer reads as the special token `</s>`",
            ),
        ] {
            let msg = error(&v, &one(q));
            assert!(msg.starts_with("`question` contains"), "{msg}");
            assert!(msg.contains(mention), "{msg:?} should mention {mention:?}");
        }
        let req = RationalizeRequest {
            questions: Some(vec!["Is it?".into(), "Is it? CORRECT_LABEL".into()]),
            ..Default::default()
        };
        assert!(error(&v, &req).starts_with("`questions[1]` contains the special token"));
        // other text gets the ids it always got, `<unk>` included
        let q = "Is <b>\u{6f22}</b> CORRECT LABEL _TOKEN0_0000 <unk>?";
        let ids = &v.validate(&one(q)).unwrap().rows[0].request.input_ids;
        assert_eq!(ids, &v.tokenizer.encode(q).unwrap());
        assert_eq!(ids.last(), Some(&v.tokenizer.eos_id()));
    }

    #[test]
    fn temperatures_too_small_to_sample_with_are_greedy() {
        let v = validator();
        let params = |t: f64| {
            v.params(
                &Parameters {
                    temperature: Some(t),
                    ..Default::default()
                },
                1,
            )
        };
        for t in [0.0, 1e-300, 1e-45, 9e-6] {
            assert!(params(t).unwrap().sampling.is_greedy(), "{t}");
        }
        for t in [1e-5, 0.7, 2.0] {
            assert!(!params(t).unwrap().sampling.is_greedy(), "{t}");
        }
        assert!(params(-1e-300).is_err());
    }
}
