//! The shipped default model (the proving ground's MaRio model, `models/default/README.md`)
//! loads in the engine, carries its MaRio control tokens, answers every example question its
//! card lists with the gold answer under the best control tokens, and the worst control tokens
//! change what it writes.

use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::control::ControlChoice;
use mario::generate::{generate, GenerationParams, GenerationRequest};
use mario::rationale::parse_output;

/// Greedy outputs of every example question under one control choice.
fn decode_examples(ckpt: &Checkpoint, choice: &ControlChoice) -> Vec<String> {
    let control = ckpt.control.as_ref().expect("mario.json");
    let bins = control.resolve(choice).unwrap();
    let prefix = control.prefix_ids(&bins, &ckpt.tokenizer);
    assert_eq!(prefix.len(), 4, "one control token per reward");
    let reqs: Vec<GenerationRequest> = ckpt
        .examples
        .iter()
        .map(|e| GenerationRequest {
            input_ids: ckpt.tokenizer.encode(&e.question).unwrap(),
            prefix: prefix.clone(),
            params: GenerationParams {
                max_new_tokens: 48,
                no_repeat_ngram_size: ckpt.generation.no_repeat_ngram_size.unwrap_or(0),
                ..Default::default()
            },
        })
        .collect();
    generate(&ckpt.model, &ckpt.tokenizer, &reqs)
        .unwrap()
        .into_iter()
        .map(|o| o.text.trim().to_string())
        .collect()
}

#[test]
fn default_model_answers_its_examples_with_the_best_tokens_and_the_worst_tokens_change_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let ckpt = Checkpoint::load(&dir, DType::F32, &Device::Cpu).expect("models/default loads");
    // trained and evaluated with plain greedy decoding
    assert_eq!(ckpt.generation.no_repeat_ngram_size, Some(0));
    let control = ckpt
        .control
        .as_ref()
        .expect("models/default is a MaRio model with mario.json");
    assert_eq!(
        control.reward_names(),
        ["consistency", "accuracy", "plausibility", "diversity"],
        "the rewards the default model was trained with, in prefix order"
    );
    assert!(
        ckpt.examples.len() >= 6,
        "the card promises example questions"
    );

    let best = decode_examples(&ckpt, &ControlChoice::Best);
    for (e, text) in ckpt.examples.iter().zip(&best) {
        let gold = e
            .gold
            .as_deref()
            .expect("every example has its gold answer");
        let parsed = parse_output(text);
        assert_eq!(
            parsed.answer.as_deref().ok(),
            Some(gold),
            "{:?} -> {text:?}",
            e.question
        );
        // the rationale states a fact about the question's entity (its name is the word
        // after "a" / "the food a"), not a vague sentence
        let entity = e
            .question
            .split_whitespace()
            .skip_while(|w| *w != "a")
            .nth(1)
            .expect("every example names an entity after \"a\"")
            .trim_end_matches('?');
        assert!(
            parsed.rationale.to_lowercase().contains(entity),
            "{entity:?} not in the rationale of {text:?}"
        );
    }

    let worst = decode_examples(&ckpt, &ControlChoice::Worst);
    let changed = best.iter().zip(&worst).filter(|(b, w)| b != w).count();
    assert!(
        changed * 2 >= best.len(),
        "the worst tokens changed only {changed} of {} outputs: {worst:?}",
        best.len()
    );
    let wrong = ckpt
        .examples
        .iter()
        .zip(&worst)
        .filter(|(e, w)| parse_output(w).answer.as_deref().ok() != e.gold.as_deref())
        .count();
    assert!(
        wrong >= 1,
        "the worst accuracy token never gave a wrong answer: {worst:?}"
    );
}
