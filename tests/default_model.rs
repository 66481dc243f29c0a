//! The shipped default model loads in the engine and answers in the trained format.

mod common;

use candle_core::{DType, Device};
use mario::checkpoint::Checkpoint;
use mario::generate::{generate, GenerationParams, GenerationRequest};
use mario::rationale::parse_output;

#[test]
fn default_model_generates_a_rationale_ending_with_yes_or_no() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default");
    let ckpt = Checkpoint::load(&dir, DType::F32, &Device::Cpu).expect("models/default loads");
    assert_eq!(ckpt.generation.no_repeat_ngram_size, Some(3));
    let questions = [
        "Is Poseidon similar to the god Vulcan?",
        "Would someone on Venus be unlikely to experience hypothermia?",
        "Can furniture be made of hair?",
    ];
    let reqs: Vec<GenerationRequest> = questions
        .iter()
        .map(|q| GenerationRequest {
            input_ids: ckpt.tokenizer.encode(q).unwrap(),
            prefix: vec![],
            params: GenerationParams {
                max_new_tokens: 128,
                no_repeat_ngram_size: 3,
                ..Default::default()
            },
        })
        .collect();
    let outs = generate(&ckpt.model, &ckpt.tokenizer, &reqs).unwrap();
    let mut answered = 0;
    for out in &outs {
        let text = out.text.trim();
        if text.ends_with("So the answer is yes.") || text.ends_with("So the answer is no.") {
            answered += 1;
            let p = parse_output(text);
            assert!(matches!(p.answer.as_deref(), Ok("yes") | Ok("no")));
            assert!(!p.rationale.is_empty());
        }
    }
    assert!(
        answered >= 2,
        "outputs: {:?}",
        outs.iter().map(|o| &o.text).collect::<Vec<_>>()
    );
}
