//! Model-based rewards on the fixtures: the VERA-format plausibility head against
//! transformers (scripts/make_vera_reference.py), and the consistency scorer's bounds.

mod common;

use candle_core::{DType, Device};
use common::*;
use mario::checkpoint::Checkpoint;
use mario::rewards::consistency::{I2O_DIR, IR2O_DIR};
use mario::rewards::plausibility::{PlausibilityHead, PlausibilityInput, PLAUSIBILITY_FILE};
use mario::rewards::{ConsistencyScorer, PlausibilityScorer, Reward, RewardInput};
use serde::Deserialize;

#[derive(Deserialize)]
struct VeraReference {
    weight_row: usize,
    bias_row: usize,
    temperature_row: usize,
    texts: Vec<String>,
    logits: Vec<f32>,
    scores: Vec<f64>,
}

#[test]
fn vera_format_head_matches_transformers_on_a_fixture() {
    let name = "t5-v1_1-gated";
    let r: VeraReference = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir(name).join("vera_reference.json")).unwrap(),
    )
    .unwrap();
    let dir = copy_fixture(name);
    let head = PlausibilityHead {
        weight_row: r.weight_row,
        bias_row: r.bias_row,
        temperature_row: r.temperature_row,
        input: PlausibilityInput::Rationale,
        max_tokens: 128,
    };
    std::fs::write(
        dir.path().join(PLAUSIBILITY_FILE),
        serde_json::to_string(&head).unwrap(),
    )
    .unwrap();
    let scorer = PlausibilityScorer::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    // the texts as one padded batch: each row reads its own last token
    let logits = scorer.logits(&r.texts).unwrap();
    for (got, want) in logits.iter().zip(&r.logits) {
        assert!(
            (got - want).abs() < 1e-4,
            "logit {got} vs transformers {want}"
        );
    }
    let items: Vec<RewardInput> = r
        .texts
        .iter()
        .map(|t| RewardInput {
            question: "q",
            output: t,
            gold: None,
        })
        .collect();
    let scores = scorer.score(&items).unwrap();
    for (got, want) in scores.iter().zip(&r.scores) {
        assert!((got.unwrap() - want).abs() < 1e-4);
    }
    // without plausibility.json the VERA layout (rows 32099...) is assumed: refused here
    std::fs::remove_file(dir.path().join(PLAUSIBILITY_FILE)).unwrap();
    let err = PlausibilityScorer::load(dir.path(), DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("32099"), "{err}");
}

#[test]
fn consistency_scores_are_differences_of_probabilities() {
    let i2o = Checkpoint::load(&fixture_dir("t5-v1_0-tied"), DType::F32, &Device::Cpu).unwrap();
    let ir2o = Checkpoint::load(&fixture_dir("t5-v1_1-gated"), DType::F32, &Device::Cpu).unwrap();
    let scorer = ConsistencyScorer::new(i2o.clone(), ir2o.clone());
    let q = "Is a pear heavier than water?";
    let items = [
        RewardInput {
            question: q,
            output: "Pears float. So the answer is no.",
            gold: Some("no"),
        },
        RewardInput {
            question: q,
            output: "Pears float. So the answer is no.",
            gold: Some("yes"),
        },
        RewardInput {
            question: q,
            output: "x",
            gold: None,
        },
        RewardInput {
            question: q,
            output: "x",
            gold: Some("maybe"),
        },
    ];
    let s = scorer.score(&items).unwrap();
    let (a, b) = (s[0].unwrap(), s[1].unwrap());
    assert!(a.abs() < 1.0 && b.abs() < 1.0);
    // with two choices the two golds' scores are opposite
    assert!((a + b).abs() < 1e-6, "{a} + {b}");
    assert_eq!(s[2], None, "no gold: no score");
    assert_eq!(s[3], None, "gold not among the choices: no score");
    // batched scoring (mixed choice sets, several rationales) equals scoring one by one
    let outputs = [
        "Pears float. So the answer is no.",
        "A pear is mostly water and air pockets. So the answer is no.",
        "x",
    ];
    let mc = "Which is heavier? Answer Choices: (A) a pear (B) a brick";
    let mut many = Vec::new();
    for (k, o) in outputs.iter().enumerate() {
        many.push(RewardInput {
            question: q,
            output: o,
            gold: Some(if k % 2 == 0 { "no" } else { "yes" }),
        });
        many.push(RewardInput {
            question: mc,
            output: o,
            gold: Some("(B)"),
        });
    }
    let batched = scorer.score(&many).unwrap();
    // I2O depends on the question only: each question's choice probabilities are computed once
    assert_eq!(scorer.cached_questions(), 2);
    assert_eq!(
        scorer.score(&many).unwrap(),
        batched,
        "cached I2O, same scores"
    );
    for (item, got) in many.iter().zip(&batched) {
        // a fresh scorer, so that I2O is computed for the lone item too
        let fresh = ConsistencyScorer::new(i2o.clone(), ir2o.clone());
        let alone = fresh.score(std::slice::from_ref(item)).unwrap()[0];
        // a batch above 64 rows takes the general matrix product, a lone item the small-batch
        // kernel: equal up to f32 rounding
        let (g, a) = (got.expect("scored"), alone.expect("scored"));
        assert!((g - a).abs() < 1e-6, "{item:?}: {g} vs {a}");
    }
    let _ = (I2O_DIR, IR2O_DIR);
}

/// Per-token log-probabilities of `rationale` after `question`, decoded one token at a time
/// through the decoder cache (an independent path from the scorer's teacher-forced pass).
fn stepwise_log_probs(ck: &Checkpoint, question: &str, rationale: &str) -> Vec<f32> {
    use candle_core::Tensor;
    use mario::generate::log_softmax_at;
    use mario::model::{EncoderInput, Mode};
    let dev = Device::Cpu;
    let q = ck.tokenizer.encode(question).unwrap();
    let mut r = ck.tokenizer.encode(rationale).unwrap();
    r.pop(); // </s>
    let enc = ck
        .model
        .encode(
            &EncoderInput::from_rows(&[q], ck.tokenizer.pad_id(), &dev).unwrap(),
            Mode::Inference,
        )
        .unwrap();
    let mut cache = ck.model.new_cache(&enc, r.len() + 1).unwrap();
    let mut prev = ck.model.config().decoder_start();
    let mut out = Vec::new();
    for &t in &r {
        let ids = Tensor::new(&[[prev]], &dev).unwrap();
        let logits: Vec<f32> = ck
            .model
            .decode_step(&ids, &mut cache)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        out.push(log_softmax_at(&logits, t));
        prev = t;
    }
    out
}

/// Writes `scoring` as `dir`'s `plausibility.json` and loads the scorer.
fn load_likelihood(
    dir: &std::path::Path,
    scoring: mario::rewards::likelihood::LikelihoodScoring,
) -> PlausibilityScorer {
    use mario::rewards::plausibility::PlausibilitySpec;
    std::fs::write(
        dir.join(PLAUSIBILITY_FILE),
        PlausibilitySpec::Likelihood(scoring).to_json(),
    )
    .unwrap();
    PlausibilityScorer::load(dir, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn likelihood_scorer_scores_the_least_likely_rationale_token() {
    use mario::rewards::likelihood::{LikelihoodScoring, TokenPooling};
    use mario::rewards::plausibility::PlausibilitySpec;
    let name = "t5-v1_0-tied";
    let dir = copy_fixture(name);
    let scoring = LikelihoodScoring {
        pooling: TokenPooling::Min,
        bias: -9.0,
        temperature: 2.0,
        max_question_tokens: 64,
        max_rationale_tokens: 64,
        prompt: None,
        knowledge: None,
    };
    let scorer = load_likelihood(dir.path(), scoring.clone());
    let ck = Checkpoint::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let cases = [
        ("Is a pear heavier than water?", "Pears float on water."),
        (
            "Can pigs fly?",
            "Pigs have no wings and they are heavy animals.",
        ),
        ("Is ice hot?", "Ice is frozen water."),
    ];
    let outputs: Vec<String> = cases
        .iter()
        .map(|(_, r)| format!("{r} So the answer is no."))
        .collect();
    let items: Vec<RewardInput> = cases
        .iter()
        .zip(&outputs)
        .map(|((q, _), o)| RewardInput {
            question: q,
            output: o,
            gold: None,
        })
        .collect();
    // one padded batch
    let batch: Vec<f64> = scorer
        .score(&items)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    for (i, ((q, r), got)) in cases.iter().zip(&batch).enumerate() {
        let lps = stepwise_log_probs(&ck, q, r);
        let min = lps.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let want = scoring.score(min);
        assert!((got - want).abs() < 1e-4, "item {i}: {got} vs {want}");
        // alone equals batched
        let alone = scorer.score(&items[i..=i]).unwrap()[0].unwrap();
        assert!(
            (alone - got).abs() < 1e-5,
            "item {i}: alone {alone}, batched {got}"
        );
    }
    // the answer sentence is not scored
    let other = RewardInput {
        output: "Pears float on water. So the answer is yes.",
        ..items[0]
    };
    assert!((scorer.score(&[other]).unwrap()[0].unwrap() - batch[0]).abs() < 1e-6);
    // an empty rationale states nothing believable
    let empty = RewardInput {
        output: "So the answer is yes.",
        ..items[0]
    };
    assert_eq!(scorer.score(&[empty]).unwrap()[0], Some(0.0));
    // with a prompt, the rationale is scored after the prompt, whatever the question
    let prompted = LikelihoodScoring {
        prompt: Some("Is it true?".into()),
        ..scoring.clone()
    };
    let scorer = load_likelihood(dir.path(), prompted);
    let elsewhere = RewardInput {
        question: "Can pigs fly?",
        ..items[0]
    };
    let (a, b) = (
        scorer.score(&items[..1]).unwrap()[0].unwrap(),
        scorer.score(&[elsewhere]).unwrap()[0].unwrap(),
    );
    assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    let lps = stepwise_log_probs(&ck, "Is it true?", cases[0].1);
    let min = lps.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    assert!((a - scoring.score(min)).abs() < 1e-4, "{a}");
    assert!((a - batch[0]).abs() > 1e-6, "the question was read: {a}");
    // with knowledge, the rationale is scored after the statements naming the question's words
    use mario::rewards::knowledge_context::KnowledgeContext;
    let knowing = LikelihoodScoring {
        knowledge: Some(KnowledgeContext {
            max_statements_per_word: 1,
            statements: vec!["A pear is a fruit.".into(), "Ice is cold.".into()],
        }),
        ..scoring.clone()
    };
    let scorer = load_likelihood(dir.path(), knowing);
    let got: Vec<f64> = scorer
        .score(&items)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let read = [
        "A pear is a fruit. Is a pear heavier than water?",
        "Can pigs fly?",
        "Ice is cold. Is ice hot?",
    ];
    for (i, (input, (_, r))) in read.iter().zip(&cases).enumerate() {
        let lps = stepwise_log_probs(&ck, input, r);
        let min = lps.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        assert!(
            (got[i] - scoring.score(min)).abs() < 1e-4,
            "item {i}: {}",
            got[i]
        );
    }
    assert!(
        (got[0] - batch[0]).abs() > 1e-6,
        "no statement was read: {}",
        got[0]
    );
    assert!(
        (got[1] - batch[1]).abs() < 1e-5,
        "a question with no statement changed"
    );
    // a broken calibration is refused, naming the file
    let bad = LikelihoodScoring {
        temperature: 0.0,
        ..scoring
    };
    std::fs::write(
        dir.path().join(PLAUSIBILITY_FILE),
        PlausibilitySpec::Likelihood(bad).to_json(),
    )
    .unwrap();
    let err = PlausibilityScorer::load(dir.path(), DType::F32, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(PLAUSIBILITY_FILE) && msg.contains("temperature"),
        "{msg}"
    );
}
