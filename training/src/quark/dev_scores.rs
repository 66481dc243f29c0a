//! Per-question dev scores of one decoding (`mario/dev/sft.jsonl`, `mario/dev/round-<r>.jsonl`):
//! what the report's paired intervals are computed from.
//!
//! Each line: `{"question", "gold", "output", "scores": {"accuracy": 1.0, "consistency": ...}}`
//! (`null` where a reward could not score the output).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::report::paired::PairedDiff;

/// One dev question's output and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevScore {
    /// The question.
    pub question: String,
    /// Its gold answer.
    pub gold: String,
    /// The decoded output.
    pub output: String,
    /// Every reward's score (`accuracy`: 1 correct, 0 not).
    pub scores: BTreeMap<String, Option<f64>>,
}

/// `<mario dir>/dev/<label>.jsonl`.
pub fn dev_scores_path(mario_dir: &Path, label: &str) -> PathBuf {
    dev_scores_dir(mario_dir).join(format!("{label}.jsonl"))
}

/// `<mario dir>/dev/`.
pub fn dev_scores_dir(mario_dir: &Path) -> PathBuf {
    mario_dir.join("dev")
}

/// Writes one file (replacing an older one).
pub fn write_dev_scores(path: &Path, rows: &[DevScore]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::jsonl::write(path, rows)
}

/// Reads one file; a bad line is an error naming the file and line.
pub fn read_dev_scores(path: &Path) -> Result<Vec<DevScore>> {
    crate::jsonl::read(path)
}

/// `b - a` for `metric`, question by question. Both decodings must cover the same questions
/// in the same order (the dev files with the same limit); anything else is an error.
pub fn paired(a: &[DevScore], b: &[DevScore], metric: &str) -> Result<Option<PairedDiff>> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.question != y.question) {
        bail!(
            "the two decodings do not cover the same dev questions ({} and {} rows)",
            a.len(),
            b.len()
        );
    }
    let col = |rows: &[DevScore]| -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| r.scores.get(metric).copied().flatten())
            .collect()
    };
    Ok(PairedDiff::of(&col(a), &col(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(q: &str, acc: f64, c: Option<f64>) -> DevScore {
        DevScore {
            question: q.into(),
            gold: "yes".into(),
            output: "x. So the answer is yes.".into(),
            scores: [
                ("accuracy".to_string(), Some(acc)),
                ("consistency".into(), c),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn round_trip_and_pairing() {
        let dir = tempfile::tempdir().unwrap();
        let a = vec![row("q1", 0.0, Some(0.1)), row("q2", 1.0, None)];
        let b = vec![row("q1", 1.0, Some(0.3)), row("q2", 1.0, Some(0.2))];
        let p = dev_scores_path(dir.path(), "sft");
        write_dev_scores(&p, &a).unwrap();
        assert_eq!(read_dev_scores(&p).unwrap(), a);
        let acc = paired(&a, &b, "accuracy").unwrap().unwrap();
        assert_eq!((acc.n, acc.mean), (2, 0.5));
        // q2 has no consistency score on the SFT side: only q1 is paired
        let c = paired(&a, &b, "consistency").unwrap().unwrap();
        assert_eq!(c.n, 1);
        assert!((c.mean - 0.2).abs() < 1e-12);
        assert!(paired(&a, &b, "diversity").unwrap().is_none());
        // different questions are refused, not silently paired
        let shifted = vec![row("q2", 1.0, None), row("q1", 0.0, None)];
        assert!(paired(&a, &shifted, "accuracy").is_err());
        // a bad line names the file and line
        std::fs::write(&p, "{\"question\": 1}\n").unwrap();
        let msg = format!("{:#}", read_dev_scores(&p).unwrap_err());
        assert!(msg.contains("sft.jsonl") && msg.contains("line 1"), "{msg}");
    }
}
