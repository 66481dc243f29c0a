//! The settings of the MaRio stage: the `[mario]` table of a config file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bins::{Binning, TiedScores};
use super::rewards::RewardName;
use super::selection::SelectionMetric;
use crate::train::{AdamWConfig, Precision};

/// How rewards enter the control prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Every reward's token from the first round.
    Canonical,
    /// Rewards switched on one at a time, every `stage_rounds` rounds, in order.
    Additive,
}

/// Settings of the MaRio stage (the `[mario]` section of a config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarioSettings {
    /// Rewards in control-prefix order: `diversity`, `accuracy`, `consistency`,
    /// `plausibility`.
    pub rewards: Vec<RewardName>,
    /// Bins of each quantile reward.
    pub bins: usize,
    /// Sampling rounds.
    pub rounds: u32,
    /// Policy updates after each sampling round; 0 = sized from the pool, so that every pool
    /// item is drawn `passes_per_round` times on average (see [`round_steps`]).
    pub steps_per_round: u64,
    /// Mean draws of each pool item per round when `steps_per_round` is 0 (the released
    /// code's schedule draws each about 2.3 times).
    pub passes_per_round: f64,
    /// Questions sampled per round (0 = every unique training question, so that on-policy
    /// samples outgrow the silver data; see [`on_policy_share`]).
    pub questions_per_round: usize,
    /// Samples per question per round.
    pub rollouts: usize,
    /// Training-only examples (a generated world's reading and knowledge records: what SFT
    /// learnt the facts and the answer step from, never sampled) added to the pool's silver
    /// data at round 0, a seeded sample of at most this many; 0 = none. Without them the
    /// loop trains on the sampled questions alone and can forget what only those files taught.
    pub replay_examples: usize,
    /// Also sample the training questions the teacher never answered right (every sample of
    /// `teacher_gpt3_train.jsonl` missed the gold label, so `train.jsonl` has no rationale for
    /// them): QUARK's pool then covers the whole training split, not only its silver part, and
    /// the accuracy reward sees questions the SFT model has not memorised.
    pub sample_unsolved: bool,
    /// Put the teacher's samples that reached a wrong answer (`teacher_gpt3_train.jsonl`, on
    /// the questions the loop samples) into the pool at round 0, next to the silver data (not
    /// the released code's rule, whose expert rollouts are the silver data alone). A student
    /// that answers most training questions right samples few wrong answers, so the accuracy
    /// reward's wrong-answer token has little to learn from; the teacher's misses give it
    /// wrong answers reached the ways a teacher reaches them (a false fact, an answer that does
    /// not follow, a guess).
    pub teacher_wrong_answers: bool,
    /// Quantile rewards binned within each question: an item's score minus the mean score of
    /// its question's pool items is what the bins cut, so an output is ranked against other
    /// outputs for the same question (not the released code's rule, which ranks the raw
    /// scores of the whole pool). For a reward whose scores differ mostly between questions
    /// (consistency, `P_IR2O(gold) - P_I2O(gold)`, is bounded by how sure I2O already is), the
    /// global bins sort questions, not rationales, and the control token learns nothing the
    /// caller can steer with. Empty (default) = every reward binned over the whole pool.
    pub bins_within_question: Vec<RewardName>,
    /// How a quantile reward's equal scores are binned: `split` (default, the released code's
    /// cut of a sorted list: ties shuffled by the seed and cut like distinct scores, every bin
    /// N/K items) or `best_bin` (a tie group takes the best bin its first item reaches, so the
    /// bin depends on the score alone; with most of a pool tied at the top diversity score
    /// the worst bin then holds only repeating outputs, and the bins between stay empty).
    pub tied_scores: TiedScores,
    /// Per quantile reward, a step its scores (centred ones when binned within each question)
    /// are rounded to before binning, e.g. `{ consistency = 0.05 }`: scores closer than the
    /// step tie, and with `tied_scores = "best_bin"` share a bin instead of being ranked by
    /// noise. Empty (default) = every score as it is.
    pub score_steps: BTreeMap<RewardName, f64>,
    /// Quantile rewards cut on the right answers only (needs `accuracy` in `rewards`): the
    /// bins (and the question means of `bins_within_question`) are computed over the outputs
    /// whose answer is right, and each wrong answer takes a bin drawn in the proportions of
    /// those bins, so the reward's control token carries nothing about accuracy. Cut over the
    /// whole pool, consistency's worst bin is mostly wrong answers, and at inference the
    /// accuracy token (at its best bin) overrules it. Empty (default) = every item cut.
    pub bins_on_right_answers: Vec<RewardName>,
    /// Nucleus sampling mass (paper: 0.7).
    pub top_p: f64,
    /// Sampling temperature.
    pub temperature: f64,
    /// Most new tokens of a sample and of a dev evaluation [the SFT checkpoint's
    /// generation_config.json, else 128] (see [`crate::decoding`]).
    pub max_new_tokens: Option<usize>,
    /// n-gram blocking while sampling the pool (0 = plain nucleus sampling, the default:
    /// blocking makes the samples off-policy and removes the repetition the diversity reward
    /// exists to score).
    pub sample_no_repeat_ngram_size: usize,
    /// n-gram blocking of each dev evaluation: the first entry is the one reported as
    /// `dev_*` and used for selection, the others are logged as `dev_*_nr<N>` [empty: the SFT
    /// checkpoint's generation_config.json, else 0].
    pub eval_no_repeat_ngram_sizes: Vec<usize>,
    /// Encoder inputs are cut to this many tokens.
    pub max_input_tokens: usize,
    /// Pool items with longer outputs are not trained on.
    pub max_target_tokens: usize,
    /// Pool items per update.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up updates.
    pub warmup_steps: u64,
    /// Gradient-norm clip (paper: 1.0).
    pub max_grad_norm: f64,
    /// AdamW first-moment decay (paper: 0.9).
    pub beta1: f64,
    /// AdamW second-moment decay (paper: 0.99).
    pub beta2: f64,
    /// AdamW epsilon.
    pub eps: f64,
    /// AdamW decoupled weight decay (paper: 0).
    pub weight_decay: f64,
    /// Save `last/` every this many updates within a round as well as at its end (0 = only
    /// at the end), so that a stopped run resumes in the middle of a round.
    pub save_every: u64,
    /// β, the KL weight (paper: 0.1).
    pub kl_coef: f64,
    /// α, the entropy weight (paper: 0).
    pub entropy_coef: f64,
    /// Dropout of the policy while training (default 0, as the released policy trains: with
    /// dropout the KL term is never 0 and the control tokens compete with noise).
    pub dropout: f64,
    /// `f32`, or `bf16` mixed precision for the policy's updates and the reference's forward
    /// pass in the loss (for GPUs; see [`Precision`]); sampling and evaluation run in f32.
    pub precision: Precision,
    /// CANONICAL or ADDITIVE.
    pub variant: Variant,
    /// ADDITIVE: rounds between switching on the next reward.
    pub stage_rounds: u32,
    /// Start the policy from the SFT model (true, default) or from `--init`.
    pub policy_from_sft: bool,
    /// Dev metric that picks `best/` (higher is better), e.g. `dev_accuracy`,
    /// `dev_plausibility`, or `dev_reward_mean` (mean of the quantile rewards' dev means); see
    /// [`SelectionMetric`].
    pub selection: SelectionMetric,
    /// The most dev accuracy a round may lose against the SFT start and still compete for
    /// `best/` on `selection` (a share: 0.01 = one point); rounds that lose more rank after
    /// every round within it, by their dev accuracy (see
    /// [`super::selection::RoundRank`]). `None` (default): `selection` alone picks.
    pub selection_max_accuracy_drop: Option<f64>,
    /// Dev questions per evaluation (0 = all).
    pub eval_limit: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for MarioSettings {
    fn default() -> Self {
        Self {
            rewards: vec![
                RewardName::Consistency,
                RewardName::Accuracy,
                RewardName::Plausibility,
                RewardName::Diversity,
            ],
            bins: 5,
            rounds: 13,
            steps_per_round: 0,
            passes_per_round: 2.0,
            questions_per_round: 0,
            rollouts: 1,
            replay_examples: 0,
            sample_unsolved: false,
            teacher_wrong_answers: false,
            bins_within_question: Vec::new(),
            tied_scores: TiedScores::Split,
            score_steps: BTreeMap::new(),
            bins_on_right_answers: Vec::new(),
            top_p: 0.7,
            temperature: 1.0,
            max_new_tokens: None,
            sample_no_repeat_ngram_size: 0,
            eval_no_repeat_ngram_sizes: Vec::new(),
            max_input_tokens: 256,
            max_target_tokens: 192,
            batch_size: 4,
            lr: 3e-5,
            warmup_steps: 1000,
            max_grad_norm: 1.0,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            save_every: 200,
            kl_coef: 0.1,
            entropy_coef: 0.0,
            dropout: 0.0,
            precision: Precision::F32,
            variant: Variant::Canonical,
            stage_rounds: 1,
            policy_from_sft: true,
            selection: SelectionMetric::ACCURACY,
            selection_max_accuracy_drop: None,
            eval_limit: 0,
            seed: 1,
        }
    }
}

impl MarioSettings {
    /// Refuses a reward that the `[mario]` option `option` lists but that is not in `rewards`,
    /// or that is binary (its two bins, correct and wrong, are fixed): the binning options
    /// apply to the run's quantile rewards only.
    fn check_quantile_rewards_of_run<'a>(
        &self,
        option: &str,
        listed: impl IntoIterator<Item = &'a RewardName>,
    ) -> anyhow::Result<()> {
        for n in listed {
            if !self.rewards.contains(n) {
                anyhow::bail!(
                    "[mario] {option} lists `{n}`, which is not in [mario] rewards ({:?})",
                    self.rewards.iter().map(|r| r.as_str()).collect::<Vec<_>>()
                );
            }
            if n.kind() == mario::control::RewardKind::Binary {
                anyhow::bail!(
                    "[mario] {option} lists `{n}`, a binary reward (its bins are correct and \
                     wrong); only quantile rewards can be listed"
                );
            }
        }
        Ok(())
    }

    /// Per reward (in `rewards` order), whether the `[mario]` option `option` lists it, after
    /// [`Self::check_quantile_rewards_of_run`].
    fn quantile_reward_mask(
        &self,
        option: &str,
        listed: &[RewardName],
    ) -> anyhow::Result<Vec<bool>> {
        self.check_quantile_rewards_of_run(option, listed)?;
        Ok(self.rewards.iter().map(|r| listed.contains(r)).collect())
    }

    /// Per reward (in `rewards` order), whether it is binned within each question; refuses a
    /// listed reward that is not in `rewards` or that is binary (its two bins are fixed).
    pub fn within_question_mask(&self) -> anyhow::Result<Vec<bool>> {
        self.quantile_reward_mask("bins_within_question", &self.bins_within_question)
    }

    /// Per reward (in `rewards` order), the step its scores are rounded to before binning;
    /// refuses a step that is not a positive number or names a reward that is not a quantile
    /// reward of the run.
    pub fn score_step_list(&self) -> anyhow::Result<Vec<Option<f64>>> {
        self.check_quantile_rewards_of_run("score_steps", self.score_steps.keys())?;
        for (n, &step) in &self.score_steps {
            if !(step.is_finite() && step > 0.0) {
                anyhow::bail!("[mario] score_steps: `{n}` = {step}; use a positive number");
            }
        }
        Ok(self
            .rewards
            .iter()
            .map(|r| self.score_steps.get(r).copied())
            .collect())
    }

    /// Per reward (in `rewards` order), whether it is cut on the right answers only; refuses a
    /// listed reward that is not a quantile reward of the run, or a run without `accuracy`.
    pub fn right_answers_only_mask(&self) -> anyhow::Result<Vec<bool>> {
        let mask =
            self.quantile_reward_mask("bins_on_right_answers", &self.bins_on_right_answers)?;
        if !self.bins_on_right_answers.is_empty() && !self.rewards.contains(&RewardName::Accuracy) {
            anyhow::bail!(
                "[mario] bins_on_right_answers needs `accuracy` in [mario] rewards: it is what \
                 says which answers are right"
            );
        }
        Ok(mask)
    }

    /// How the run cuts the pool into bins: [`Self::within_question_mask`], `tied_scores`,
    /// [`Self::score_step_list`] and [`Self::right_answers_only_mask`].
    pub fn binning(&self) -> anyhow::Result<Binning> {
        Ok(Binning {
            within_question: self.within_question_mask()?,
            ties: self.tied_scores,
            steps: self.score_step_list()?,
            right_answers_only: self.right_answers_only_mask()?,
        })
    }

    /// Refuses a `selection_max_accuracy_drop` outside [0, 1].
    pub fn check_selection_max_accuracy_drop(&self) -> anyhow::Result<()> {
        match self.selection_max_accuracy_drop {
            Some(drop) if !(0.0..=1.0).contains(&drop) => anyhow::bail!(
                "[mario] selection_max_accuracy_drop = {drop}: use a share of the dev questions \
                 in [0, 1] (0.01 = one point)"
            ),
            _ => Ok(()),
        }
    }

    /// The optimizer these settings ask for.
    pub fn optimizer(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that each `(toml, words)` case parses but `binning()` refuses it, with an
    /// error naming `option` and containing `words`.
    fn assert_binning_refuses(option: &str, cases: &[(&str, &str)]) {
        for (toml, words) in cases {
            let s: MarioSettings = toml::from_str(toml).unwrap();
            let e = s.binning().unwrap_err().to_string();
            assert!(e.contains(option) && e.contains(words), "{toml}: {e}");
        }
    }

    #[test]
    fn tied_scores_reads_split_and_best_bin_only() {
        let s: MarioSettings = toml::from_str("").unwrap();
        assert_eq!(s.binning().unwrap().ties, TiedScores::Split);
        let s: MarioSettings = toml::from_str("tied_scores = \"best_bin\"").unwrap();
        assert_eq!(s.binning().unwrap().ties, TiedScores::BestBin);
        let err = toml::from_str::<MarioSettings>("tied_scores = \"mean_rank\"").unwrap_err();
        assert!(err.to_string().contains("best_bin"), "{err}");
    }

    #[test]
    fn bins_within_question_takes_quantile_rewards_of_the_run_only() {
        let s: MarioSettings = toml::from_str("bins_within_question = [\"consistency\"]").unwrap();
        // default order: consistency, accuracy, plausibility, diversity
        assert_eq!(
            s.within_question_mask().unwrap(),
            vec![true, false, false, false]
        );
        assert_eq!(
            MarioSettings::default().within_question_mask().unwrap(),
            vec![false; 4]
        );
        let s: MarioSettings = toml::from_str("bins_within_question = [\"accuracy\"]").unwrap();
        let e = s.within_question_mask().unwrap_err().to_string();
        assert!(e.contains("accuracy") && e.contains("binary"), "{e}");
        let s: MarioSettings =
            toml::from_str("rewards = [\"diversity\"]\nbins_within_question = [\"plausibility\"]")
                .unwrap();
        let e = s.within_question_mask().unwrap_err().to_string();
        assert!(
            e.contains("plausibility") && e.contains("not in [mario] rewards"),
            "{e}"
        );
        assert!(toml::from_str::<MarioSettings>("bins_within_question = [\"fluency\"]").is_err());
    }

    #[test]
    fn score_steps_take_positive_steps_of_the_runs_quantile_rewards() {
        let s: MarioSettings = toml::from_str("score_steps = { consistency = 0.05 }").unwrap();
        assert_eq!(
            s.binning().unwrap().steps,
            vec![Some(0.05), None, None, None]
        );
        assert_eq!(
            MarioSettings::default().binning().unwrap().steps,
            vec![None; 4]
        );
        assert_binning_refuses(
            "score_steps",
            &[
                ("score_steps = { accuracy = 0.1 }", "binary"),
                ("score_steps = { consistency = 0.0 }", "positive"),
                ("score_steps = { consistency = -0.1 }", "positive"),
                (
                    "rewards = [\"diversity\"]\nscore_steps = { plausibility = 0.1 }",
                    "not in [mario] rewards",
                ),
            ],
        );
        assert!(toml::from_str::<MarioSettings>("score_steps = { fluency = 0.1 }").is_err());
    }

    #[test]
    fn bins_on_right_answers_takes_quantile_rewards_of_a_run_with_accuracy() {
        let s: MarioSettings = toml::from_str("bins_on_right_answers = [\"consistency\"]").unwrap();
        assert_eq!(
            s.binning().unwrap().right_answers_only,
            vec![true, false, false, false]
        );
        assert_binning_refuses(
            "bins_on_right_answers",
            &[
                ("bins_on_right_answers = [\"accuracy\"]", "binary"),
                (
                    "rewards = [\"consistency\", \"diversity\"]\nbins_on_right_answers = [\"consistency\"]",
                    "needs `accuracy`",
                ),
                (
                    "rewards = [\"accuracy\"]\nbins_on_right_answers = [\"consistency\"]",
                    "not in [mario] rewards",
                ),
            ],
        );
    }

    #[test]
    fn an_accuracy_drop_outside_zero_to_one_is_refused() {
        let with = |d: f64| MarioSettings {
            selection_max_accuracy_drop: Some(d),
            ..Default::default()
        };
        assert!(with(0.01).check_selection_max_accuracy_drop().is_ok());
        assert!(MarioSettings::default()
            .check_selection_max_accuracy_drop()
            .is_ok());
        let e = with(1.5)
            .check_selection_max_accuracy_drop()
            .unwrap_err()
            .to_string();
        assert!(e.contains("selection_max_accuracy_drop = 1.5"), "{e}");
        assert!(with(-0.01).check_selection_max_accuracy_drop().is_err());
    }
}
