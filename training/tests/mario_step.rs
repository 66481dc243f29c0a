//! The MaRio update step on a micro model: with the shipped default (no dropout) the policy's
//! loss on a batch is a function of the weights alone, so the control tokens do not compete
//! with dropout noise and the KL term is exactly 0 where policy and reference agree.

mod common;

use candle_core::Device;
use mario::model::{DropoutRng, Mode};
use mario_training::quark::run::{control_table, step_loss, MarioSettings};
use mario_training::train::loss::Seq2SeqExample;
use mario_training::train::TrainableModel;

fn rows(policy: &TrainableModel, prefix: &[u32]) -> Vec<Seq2SeqExample> {
    common::synthetic_rows(4, 0)
        .into_iter()
        .map(|(q, r, a)| Seq2SeqExample {
            input_ids: policy.tokenizer.encode(&q).unwrap(),
            prefix: prefix.to_vec(),
            target_ids: policy
                .tokenizer
                .encode(&format!("{r} So the answer is {a}."))
                .unwrap(),
        })
        .collect()
}

#[test]
fn the_default_mario_step_has_no_dropout_noise_and_no_kl_without_controls() {
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, _, _) = common::micro_setup(dir.path());
    let device = Device::Cpu;
    let reference = TrainableModel::load(&model_dir, &device).unwrap();
    let mut policy = TrainableModel::load(&model_dir, &device).unwrap();
    let s = MarioSettings::default();
    assert_eq!(s.dropout, 0.0, "MaRio trains without dropout by default");
    let table = control_table(&s);
    policy.add_tokens(&table.all_tokens(), 1).unwrap();
    let prefix = table.prefix_ids(&vec![0; table.rewards.len()], &policy.tokenizer);
    let start = policy.config.decoder_start();
    let pad = policy.tokenizer.pad_id();
    let loss = |rows: &[&Seq2SeqExample], active: usize, rng: &DropoutRng| {
        step_loss(
            &policy.model,
            &reference.model,
            rows,
            active,
            &s,
            Mode::Training(rng),
            start,
            pad,
        )
        .unwrap()
    };

    // no controls: policy = reference, so KL is 0 under the default settings
    let plain = rows(&policy, &[]);
    let refs: Vec<&Seq2SeqExample> = plain.iter().collect();
    let rng = DropoutRng::new(s.dropout, 7);
    let l = loss(&refs, 0, &rng);
    assert!(l.kl.abs() < 1e-6, "KL {} with identical models", l.kl);
    // ... which dropout breaks (the old default of 0.1)
    let noisy = DropoutRng::new(0.1, 7);
    let l = loss(&refs, 0, &noisy);
    assert!(
        l.kl > 1e-4,
        "dropout 0.1 should perturb the policy: KL {}",
        l.kl
    );

    // with controls: the same batch twice gives the same loss (no noise between updates)
    let ctrl = rows(&policy, &prefix);
    let refs: Vec<&Seq2SeqExample> = ctrl.iter().collect();
    let m = prefix.len();
    let a = loss(&refs, m, &rng);
    let b = loss(&refs, m, &rng);
    assert_eq!((a.nll, a.kl), (b.nll, b.kl));
}
