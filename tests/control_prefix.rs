//! Control tokens as the decoder prefix: generating after a forced prefix equals teacher
//! forcing that prefix, and the bins requested through `mario.json` become that prefix.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use common::*;
use mario::checkpoint::Checkpoint;
use mario::control::{ControlChoice, ControlTokens, CONTROL_FILE};
use mario::generate::{generate, log_softmax_at, GenerationParams, GenerationRequest};
use mario::model::{EncoderInput, Mode};

/// Greedy generation after `prefix`, checked against one teacher-forced decoder pass over
/// `[start, prefix, generated]`: every generated token is the argmax there, with the same
/// log-probability.
fn assert_prefix_equals_teacher_forcing(ckpt: &Checkpoint, input: &[u32], prefix: &[u32]) {
    let model = &ckpt.model;
    let dev = model.device();
    let req = GenerationRequest {
        input_ids: input.to_vec(),
        prefix: prefix.to_vec(),
        params: GenerationParams {
            max_new_tokens: 16,
            min_new_tokens: 16,
            logprobs: true,
            ..Default::default()
        },
    };
    let out = generate(model, &ckpt.tokenizer, &[req]).unwrap().remove(0);
    assert_eq!(
        out.token_ids.len(),
        16,
        "the prefix is not part of the output"
    );
    let mut dec = vec![model.config().decoder_start()];
    dec.extend_from_slice(prefix);
    dec.extend_from_slice(&out.token_ids[..15]);
    let enc = model
        .encode(
            &EncoderInput::from_rows(&[input.to_vec()], 0, dev).unwrap(),
            Mode::Inference,
        )
        .unwrap();
    let logits = model
        .decode(
            &Tensor::new(dec.as_slice(), dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            &enc,
            Mode::Inference,
        )
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for (k, &tok) in out.token_ids.iter().enumerate() {
        let row = &logits[prefix.len() + k];
        assert_eq!(mario::generate::argmax(row), tok, "step {k}");
        let lp = log_softmax_at(row, tok);
        let got = out.logprobs.as_ref().unwrap()[k];
        assert!(
            (lp - got).abs() < 1e-4,
            "step {k}: logprob {got} vs teacher-forced {lp}"
        );
    }
}

#[test]
fn control_prefix_generation_equals_teacher_forcing_the_prefix() {
    for name in FIXTURES {
        let ckpt = load(name, DType::F32);
        let input = &reference(name).inputs[1].input_ids;
        assert_prefix_equals_teacher_forcing(&ckpt, input, &[17, 250, 3]);
    }
}

#[test]
fn control_tokens_from_mario_json_are_registered_and_rendered_in_reward_order() {
    for name in FIXTURES {
        // 12 new rows: 5 + 3 quantile bins and 2 binary tokens need 10.
        let dir = with_extra_vocab(name, 12);
        let table = ControlTokens::quark(&[("plausibility", 5), ("diversity", 3)], &["accuracy"]);
        table.save(&dir.path().join(CONTROL_FILE)).unwrap();
        let ckpt = Checkpoint::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
        let loaded = ckpt.control.as_ref().expect("mario.json is read");
        assert_eq!(loaded, &table);
        // every control token got its own id inside the embedding, after the base vocabulary
        let ids: Vec<u32> = table
            .all_tokens()
            .iter()
            .map(|t| ckpt.tokenizer.token_id(t).unwrap())
            .collect();
        assert!(
            ids.iter().all(|&id| id >= 512 && (id as usize) < 524),
            "{ids:?}"
        );
        // control tokens are one token each and never appear in decoded text
        let enc = ckpt
            .tokenizer
            .inner()
            .encode("_TOKEN1_00002", false)
            .unwrap();
        assert_eq!(
            enc.get_ids(),
            &[ckpt.tokenizer.token_id("_TOKEN1_00002").unwrap()]
        );
        assert_eq!(ckpt.tokenizer.decode(&ids).unwrap(), "");

        let bins = table
            .resolve(&ControlChoice::Bins(BTreeMap::from([(
                "diversity".to_string(),
                2,
            )])))
            .unwrap();
        assert_eq!(bins, vec![0, 2, 0]);
        assert_eq!(
            table.render(&bins),
            vec!["_TOKEN0_00000", "_TOKEN1_00002", "CORRECT_LABEL"]
        );
        let prefix = table.prefix_ids(&bins, &ckpt.tokenizer);
        let worst = table.prefix_ids(
            &table.resolve(&ControlChoice::Worst).unwrap(),
            &ckpt.tokenizer,
        );
        assert_eq!(
            table.render(&table.resolve(&ControlChoice::Worst).unwrap()),
            vec!["_TOKEN0_00004", "_TOKEN1_00002", "WRONG_LABEL"]
        );
        let input = &reference(name).inputs[0].input_ids;
        assert_prefix_equals_teacher_forcing(&ckpt, input, &prefix);
        assert_prefix_equals_teacher_forcing(&ckpt, input, &worst);
    }
}

#[test]
fn control_choices_outside_the_table_are_refused() {
    let table = ControlTokens::quark(&[("plausibility", 5)], &["accuracy"]);
    let err = table
        .resolve(&ControlChoice::Bins(BTreeMap::from([(
            "fluency".to_string(),
            0,
        )])))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown reward `fluency`"),
        "{err}"
    );
    let err = table
        .resolve(&ControlChoice::Bins(BTreeMap::from([(
            "accuracy".to_string(),
            2,
        )])))
        .unwrap_err();
    assert!(err.to_string().contains("bin 2 is out of range"), "{err}");
}

/// A batch of several rows with a forced prefix (prefill of more than one token per row)
/// gives every row what it gets alone.
#[test]
fn control_prefix_in_a_batch_equals_single_runs() {
    for name in FIXTURES {
        let ckpt = load(name, DType::F32);
        let reference = reference(name);
        let req = |ids: &[u32]| GenerationRequest {
            input_ids: ids.to_vec(),
            prefix: vec![17, 250, 3],
            params: GenerationParams {
                max_new_tokens: 12,
                min_new_tokens: 12,
                ..Default::default()
            },
        };
        let reqs: Vec<GenerationRequest> =
            reference.inputs.iter().map(|c| req(&c.input_ids)).collect();
        let together = generate(&ckpt.model, &ckpt.tokenizer, &reqs).unwrap();
        for (r, t) in reqs.iter().zip(&together) {
            let alone = generate(&ckpt.model, &ckpt.tokenizer, std::slice::from_ref(r)).unwrap();
            assert_eq!(t.token_ids, alone[0].token_ids, "{name}");
        }
    }
}
