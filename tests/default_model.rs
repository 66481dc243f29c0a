//! The shipped default model loads in the engine, carries its MaRio control tokens, and answers
//! each of its three tasks in the trained format when decoded with the best control tokens.

mod common;

use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;
use mario::generate::{generate, GenerationParams, GenerationRequest};
use mario::rationale::parse_output;

/// NumerSense's twelve choices, as its questions list them.
const NUMBER_CHOICES: &str =
    "\n (A) no (B) zero (C) one (D) two (E) three (F) four (G) five (H) six \
     (I) seven (J) eight (K) nine (L) ten";

#[test]
fn default_model_answers_its_three_tasks_in_format_with_the_best_control_tokens() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let ckpt = Checkpoint::load(&dir, DType::F32, &Device::Cpu).expect("models/default loads");
    assert_eq!(ckpt.generation.no_repeat_ngram_size, Some(3));
    let control = ckpt
        .control
        .as_ref()
        .expect("models/default is a MaRio model with mario.json");
    assert_eq!(
        control.reward_names(),
        ["consistency", "accuracy", "plausibility", "diversity"],
        "the rewards the default model was trained with, in prefix order"
    );
    let best = control.resolve(&ControlChoice::Best).unwrap();
    let prefix = control.prefix_ids(&best, &ckpt.tokenizer);
    assert_eq!(prefix.len(), 4);

    let yes_no: &[&str] = &["yes", "no"];
    let a_b: &[&str] = &["(A)", "(B)"];
    let letters: Vec<String> = ('A'..='L').map(|c| format!("({c})")).collect();
    let letters: Vec<&str> = letters.iter().map(String::as_str).collect();
    // (question, the answers its task allows), written in the style of each task's dev split.
    let questions: Vec<(String, &[&str])> =
        vec![
        ("Is Poseidon similar to the god Vulcan?".into(), yes_no),
        ("Can furniture be made of hair?".into(), yes_no),
        (
            "A toy car rolls farther on the kitchen tile than on the carpet because the _____ \
             has more friction. (A) tile (B) carpet"
                .into(),
            a_b,
        ),
        (
            "Mike's sled goes faster on ice than on snow. Which surface makes the sled heat up \
             more? (A) ice (B) snow"
                .into(),
            a_b,
        ),
        (format!("A square has <mask> sides. {NUMBER_CHOICES}"), &letters),
        (format!("Most birds have <mask> wings. {NUMBER_CHOICES}"), &letters),
    ];
    let reqs: Vec<GenerationRequest> = questions
        .iter()
        .map(|(q, _)| GenerationRequest {
            input_ids: ckpt.tokenizer.encode(q).unwrap(),
            prefix: prefix.clone(),
            params: GenerationParams {
                max_new_tokens: 128,
                no_repeat_ngram_size: 3,
                ..Default::default()
            },
        })
        .collect();
    let outs = generate(&ckpt.model, &ckpt.tokenizer, &reqs).unwrap();
    let texts: Vec<&str> = outs.iter().map(|o| o.text.trim()).collect();
    // Every task's pair: at least one output of the pair ends in one of that task's answers.
    for (pair, chunk) in questions.chunks(2).zip(texts.chunks(2)) {
        let allowed = pair[0].1;
        let answered = chunk
            .iter()
            .filter(|t| {
                let p = parse_output(t);
                !p.rationale.is_empty() && p.answer.as_deref().is_ok_and(|a| allowed.contains(&a))
            })
            .count();
        assert!(
            answered >= 1,
            "no answer among {allowed:?} in the outputs {chunk:?} of {:?}",
            pair.iter().map(|(q, _)| q).collect::<Vec<_>>()
        );
    }
}
