//! The records of a run's `metrics.jsonl`, written and read here: [`TrainRecord`] for the
//! training loop's runs (SFT, the answer models, the plausibility scorer), [`MarioRecord`] for
//! a MaRio run. Each line is a JSON object tagged by `kind`, its keys in alphabetical order (a
//! record is written through `serde_json::Value`, whose map is sorted, as the logs always
//! were); a non-finite number is written as `null`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metric values by name, as an evaluation reports them; `None` is a value written as `null`
/// (not finite).
pub type MetricValues = BTreeMap<String, Option<f64>>;

/// The values of `metrics` by name.
pub fn metric_values(metrics: &[(String, f64)]) -> MetricValues {
    metrics.iter().map(|(k, v)| (k.clone(), Some(*v))).collect()
}

/// A number written as `null` (not finite) reads back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A line of the training loop's log (`crate::train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TrainRecord {
    /// The means of a window of updates.
    Train(TrainWindowRecord),
    /// An evaluation.
    Eval(EvalRecord),
}

/// `kind: "train"` of the training loop: the means of the updates since the last such line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainWindowRecord {
    /// Updates done.
    pub step: u64,
    /// Mean loss.
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Learning rate of the last update.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Mean gradient norm (before clipping).
    #[serde(deserialize_with = "nan_if_null")]
    pub grad_norm: f64,
    /// Training tokens per second over the window.
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_s: f64,
    /// Epoch.
    pub epoch: u64,
    /// Training time of the run so far, in seconds (all invocations).
    #[serde(deserialize_with = "nan_if_null")]
    pub elapsed_s: f64,
}

/// `kind: "eval"` of the training loop: the task's evaluation metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Updates done.
    pub step: u64,
    /// The metrics, by name.
    #[serde(flatten)]
    pub metrics: MetricValues,
}

impl TrainRecord {
    /// Updates done when the line was written.
    pub fn step(&self) -> u64 {
        match self {
            TrainRecord::Train(r) => r.step,
            TrainRecord::Eval(r) => r.step,
        }
    }
}

/// A line of a MaRio run's log (`crate::quark::run`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MarioRecord {
    /// A round's samples, scored and pooled.
    Sample(SampleRecord),
    /// A round's bins over the whole pool.
    Bins(BinsRecord),
    /// The means of a window of updates.
    Train(MarioTrainRecord),
    /// A dev evaluation (of the SFT reference, or of the policy after a round).
    Eval(MarioEvalRecord),
}

impl MarioRecord {
    /// The round (-1: the SFT reference's evaluation before round 0).
    pub fn round(&self) -> i64 {
        match self {
            MarioRecord::Sample(r) => r.round.into(),
            MarioRecord::Bins(r) => r.round.into(),
            MarioRecord::Train(r) => r.round.into(),
            MarioRecord::Eval(r) => r.round,
        }
    }

    /// Updates done when the line was written.
    pub fn step(&self) -> u64 {
        match self {
            MarioRecord::Sample(r) => r.step,
            MarioRecord::Bins(r) => r.step,
            MarioRecord::Train(r) => r.step,
            MarioRecord::Eval(r) => r.step,
        }
    }
}

/// `kind: "sample"`: how many outputs a round asked for and kept, the pool's size, and each
/// reward's mean over the round's scored samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Round.
    pub round: u32,
    /// Updates done.
    pub step: u64,
    /// Outputs asked for.
    pub sampled: usize,
    /// Outputs with "So the answer is" (pooled).
    pub valid: usize,
    /// Pool size after the round's samples.
    pub pool: usize,
    /// `sample_<reward>` (mean) and `sample_<reward>_n` (outputs scored) of every reward.
    #[serde(flatten)]
    pub rewards: RewardSamples,
}

/// Each reward's mean over a round's samples and the number of samples it scored, written as
/// `sample_<reward>` and `sample_<reward>_n`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RewardSamples(pub Vec<RewardSample>);

/// One reward's [`RewardSamples`] entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardSample {
    /// Reward name.
    pub name: String,
    /// Mean score (NaN when not finite; written as `null`).
    pub mean: f64,
    /// Samples scored.
    pub n: usize,
}

impl RewardSamples {
    /// The mean of reward `name`, if logged.
    pub fn mean(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|r| r.name == name).map(|r| r.mean)
    }
}

impl Serialize for RewardSamples {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2 * self.0.len()))?;
        for r in &self.0 {
            map.serialize_entry(&format!("sample_{}", r.name), &r.mean)?;
            map.serialize_entry(&format!("sample_{}_n", r.name), &r.n)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RewardSamples {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let mut out: Vec<RewardSample> = Vec::new();
        fn slot<'a>(out: &'a mut Vec<RewardSample>, name: &str) -> &'a mut RewardSample {
            match out.iter().position(|r| r.name == name) {
                Some(i) => &mut out[i],
                None => {
                    out.push(RewardSample {
                        name: name.to_string(),
                        mean: f64::NAN,
                        n: 0,
                    });
                    out.last_mut().expect("just pushed")
                }
            }
        }
        for (key, value) in &map {
            let Some(rest) = key.strip_prefix("sample_") else {
                return Err(D::Error::custom(format!("unknown field `{key}`")));
            };
            match rest.strip_suffix("_n").filter(|_| value.is_u64()) {
                Some(name) => {
                    let n = value.as_u64().unwrap_or(0);
                    slot(&mut out, name).n = usize::try_from(n).map_err(D::Error::custom)?;
                }
                None => slot(&mut out, rest).mean = value.as_f64().unwrap_or(f64::NAN),
            }
        }
        Ok(RewardSamples(out))
    }
}

/// `kind: "bins"`: items per bin of every reward (bin 0 first), `bins_<reward>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinsRecord {
    /// Round.
    pub round: u32,
    /// Updates done.
    pub step: u64,
    /// Items per bin, keyed `bins_<reward>`.
    #[serde(flatten)]
    pub counts: BTreeMap<String, Vec<usize>>,
}

/// `kind: "train"` of a MaRio round: the means of the updates since the last such line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarioTrainRecord {
    /// Round.
    pub round: u32,
    /// Updates done.
    pub step: u64,
    /// Mean loss (NLL + β·KL).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    /// Mean NLL term.
    #[serde(deserialize_with = "nan_if_null")]
    pub nll: f64,
    /// Mean KL term.
    #[serde(deserialize_with = "nan_if_null")]
    pub kl: f64,
    /// Learning rate at `step`.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Seconds of the round's training so far (this invocation).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_s: f64,
    /// Updates per second over the window.
    #[serde(deserialize_with = "nan_if_null")]
    pub updates_per_s: f64,
    /// Training tokens per second over the window.
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_s: f64,
}

/// Which model a MaRio dev evaluation decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluatedModel {
    /// The SFT reference, without control tokens (round -1).
    Sft,
    /// The policy after a round, with the best control tokens.
    Policy,
}

/// `kind: "eval"` of a MaRio run: the dev metrics of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarioEvalRecord {
    /// Round (-1 for the SFT reference).
    pub round: i64,
    /// Updates done.
    pub step: u64,
    /// The model decoded.
    pub model: EvaluatedModel,
    /// The decoding and where each value came from (on the SFT reference's line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoding: Option<String>,
    /// The dev metrics (`dev_*`), by name.
    #[serde(flatten)]
    pub metrics: MetricValues,
}

/// The loss points and evaluations of a log, for its curves.
pub trait CurveRecord {
    /// `(step, loss)` of a training line.
    fn loss(&self) -> Option<(u64, f64)>;
    /// `(step, metrics)` of an evaluation line.
    fn evaluation(&self) -> Option<(u64, &MetricValues)>;
}

impl CurveRecord for TrainRecord {
    fn loss(&self) -> Option<(u64, f64)> {
        match self {
            TrainRecord::Train(r) => Some((r.step, r.loss)),
            TrainRecord::Eval(_) => None,
        }
    }
    fn evaluation(&self) -> Option<(u64, &MetricValues)> {
        match self {
            TrainRecord::Eval(r) => Some((r.step, &r.metrics)),
            TrainRecord::Train(_) => None,
        }
    }
}

impl CurveRecord for MarioRecord {
    fn loss(&self) -> Option<(u64, f64)> {
        match self {
            MarioRecord::Train(r) => Some((r.step, r.loss)),
            _ => None,
        }
    }
    fn evaluation(&self) -> Option<(u64, &MetricValues)> {
        match self {
            MarioRecord::Eval(r) => Some((r.step, &r.metrics)),
            _ => None,
        }
    }
}

/// The JSON line of `record`, with its keys in alphabetical order.
fn sorted<T: Serialize>(record: &T) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(record)?)
}

/// Appends `record` to the log at `path`.
pub fn append<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    crate::jsonl::append_one(path, &sorted(record)?)
}

/// Every record of the log at `path` (errors name the file and the line).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    crate::jsonl::read(path)
}

/// Replaces the log at `path` with `records`.
pub fn write<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let lines = records.iter().map(sorted).collect::<Result<Vec<_>>>()?;
    crate::jsonl::write(path, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the logs write them (sorted keys, null for a non-finite value, -0.0 and
    /// integers as they are), read and written back, give the bytes that reading and writing
    /// them as `serde_json::Value`s (the logs' former records) gives: the same lines, but for
    /// the last digit of a number that serde_json's parser does not round exactly (two
    /// below, in both).
    #[test]
    fn lines_round_trip_byte_for_byte() {
        let train = [
            r#"{"elapsed_s":0.212489475,"epoch":1,"grad_norm":1.2661198983367297,"kind":"train","loss":5.9459563255310055,"lr":0.0024000000000000002,"step":5,"tokens_per_s":19503.88663889258}"#,
            r#"{"dev_accuracy":0.0,"dev_loss":5.1803131103515625,"dev_x":null,"kind":"eval","step":6}"#,
        ];
        let mario = [
            r#"{"decoding":"greedy","dev_accuracy":0.0,"dev_reward_mean":0.47434304578420444,"kind":"eval","model":"sft","round":-1,"step":0}"#,
            r#"{"kind":"sample","pool":22,"round":0,"sample_accuracy":-0.0,"sample_accuracy_n":0,"sample_consistency":null,"sample_consistency_n":3,"sampled":32,"step":0,"valid":0}"#,
            r#"{"bins_accuracy":[22,0],"bins_consistency":[11,11],"kind":"bins","round":0,"step":0}"#,
            r#"{"kind":"train","kl":0.01,"loss":2.5,"lr":0.001,"nll":2.4,"round":1,"step":20,"tokens_per_s":100.5,"train_s":3.0,"updates_per_s":1.5}"#,
            r#"{"dev_accuracy":0.5,"kind":"eval","model":"policy","round":0,"step":5}"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        let check = |name: &str, lines: &[&str], rewrite: &dyn Fn(&Path, &Path)| {
            let (a, b) = (
                dir.path().join(name),
                dir.path().join(format!("{name}.out")),
            );
            std::fs::write(&a, lines.join("\n") + "\n").unwrap();
            rewrite(&a, &b);
            let as_values: String = (lines.iter())
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .unwrap()
                        .to_string()
                        + "\n"
                })
                .collect();
            assert_eq!(as_values, std::fs::read_to_string(&b).unwrap());
            let expected = (lines.join("\n") + "\n")
                .replace("0.0024000000000000002", "0.0024")
                .replace("0.47434304578420444", "0.4743430457842045");
            assert_eq!(expected, as_values);
        };
        check("t.jsonl", &train, &|a, b| {
            for r in read::<TrainRecord>(a).unwrap() {
                append(b, &r).unwrap();
            }
        });
        check("m.jsonl", &mario, &|a, b| {
            write(b, &read::<MarioRecord>(a).unwrap()).unwrap();
        });
        let m = read::<MarioRecord>(&dir.path().join("m.jsonl")).unwrap();
        assert_eq!((m[0].round(), m[1].round(), m[3].step()), (-1, 0, 20));
        let MarioRecord::Sample(s) = &m[1] else {
            panic!("{:?}", m[1])
        };
        assert_eq!(s.rewards.mean("accuracy"), Some(-0.0));
        assert!(s.rewards.mean("consistency").unwrap().is_nan());
        assert_eq!(s.rewards.0[1].n, 3);
    }
}
