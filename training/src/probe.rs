//! `mario-train probe copy`: a generated copy task that tells whether a training recipe can
//! move a word it has never seen from the question into the rationale.
//!
//! Every record names an invented name (two or three syllables) in its question and the
//! rationale repeats it: `"Is the name tafiro and is it yes?"` -> `"The name is tafiro. So the
//! answer is yes."`. Train and dev names are disjoint, so a model that memorises names scores 0
//! on dev and a model that copies scores 1: SFT's `dev_rationale_exact` (and `eval`'s
//! "rationale equal to the gold one") is the copy accuracy. Copying an entity from the question
//! is the first thing a rationalizer must do; a from-scratch T5 with the old tokenizer could
//! not (see `training/reports/copy-probe/`).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Settings of the copy probe.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyProbe {
    /// Training records (one distinct name each).
    pub train: usize,
    /// Dev records (names never seen in training).
    pub dev: usize,
    /// Seed of the names, templates and answers.
    pub seed: u64,
}

impl Default for CopyProbe {
    fn default() -> Self {
        Self {
            train: 3000,
            dev: 200,
            seed: 0,
        }
    }
}

/// Question templates: the name sits at different places, so a model must find it by its
/// context, not by its position.
const TEMPLATES: [&str; 3] = [
    "Is the name {name} and is it {answer}?",
    "Here the name is {name}. Is the answer {answer}?",
    "Say {answer} if the name is {name}. Which name is it?",
];

use crate::world::names::name;
pub use crate::world::names::name_space;

/// One probe record: `(question, rationale, answer)`.
pub type ProbeRecord = (String, String, String);

/// One record.
fn record(rng: &mut ChaCha8Rng, name: &str) -> ProbeRecord {
    let answer = if rng.random_bool(0.5) { "yes" } else { "no" };
    let template = TEMPLATES.choose(rng).expect("non-empty");
    let question = template.replace("{name}", name).replace("{answer}", answer);
    (question, format!("The name is {name}."), answer.to_string())
}

impl CopyProbe {
    /// The train and dev records, deterministic in the seed.
    pub fn records(&self) -> Result<(Vec<ProbeRecord>, Vec<ProbeRecord>)> {
        let wanted = self.train + self.dev;
        if wanted > name_space() / 2 {
            bail!(
                "the copy probe has {} distinct names; ask for at most {} records",
                name_space(),
                name_space() / 2
            );
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut names = BTreeSet::new();
        while names.len() < wanted {
            names.insert(name(&mut rng));
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.shuffle(&mut rng);
        let records: Vec<_> = names.iter().map(|n| record(&mut rng, n)).collect();
        let (train, dev) = records.split_at(self.train);
        Ok((train.to_vec(), dev.to_vec()))
    }

    /// Writes `train.jsonl` and `dev.jsonl` (JSON Lines, split layout) into `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        let (train, dev) = self.records()?;
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        for (file, rows) in [("train.jsonl", &train), ("dev.jsonl", &dev)] {
            let path = out.join(file);
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            for (q, r, a) in rows {
                let line = serde_json::json!({"question": q, "rationale": r, "answer": a});
                writeln!(f, "{line}").with_context(|| format!("writing {}", path.display()))?;
            }
            f.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_disjoint_and_the_rationale_repeats_the_name() {
        let p = CopyProbe {
            train: 300,
            dev: 50,
            seed: 3,
        };
        let (train, dev) = p.records().unwrap();
        assert_eq!((train.len(), dev.len()), (300, 50));
        let name_of = |r: &str| {
            r.trim_start_matches("The name is ")
                .trim_end_matches('.')
                .to_string()
        };
        let train_names: BTreeSet<String> = train.iter().map(|x| name_of(&x.1)).collect();
        assert_eq!(train_names.len(), 300);
        for (q, r, a) in train.iter().chain(&dev) {
            let n = name_of(r);
            assert!(q.contains(&n) && q.contains(a.as_str()), "{q} / {r}");
            assert!(a == "yes" || a == "no");
        }
        assert!(dev.iter().all(|x| !train_names.contains(&name_of(&x.1))));
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let p = CopyProbe {
            train: 100,
            dev: 10,
            seed: 7,
        };
        assert_eq!(p.records().unwrap(), p.records().unwrap());
        let q = CopyProbe {
            seed: 8,
            ..p.clone()
        };
        assert_ne!(p.records().unwrap(), q.records().unwrap());
        let too_many = CopyProbe {
            train: name_space(),
            ..p
        };
        assert!(too_many.records().is_err());
    }

    #[test]
    fn written_files_load_as_split_files() {
        let dir = tempfile::tempdir().unwrap();
        CopyProbe {
            train: 20,
            dev: 5,
            seed: 0,
        }
        .write(dir.path())
        .unwrap();
        let train = crate::data::load_examples(&dir.path().join("train.jsonl")).unwrap();
        let dev = crate::data::load_examples(&dir.path().join("dev.jsonl")).unwrap();
        assert_eq!((train.len(), dev.len()), (20, 5));
        assert!(
            train[0]
                .target()
                .unwrap()
                .ends_with("So the answer is yes.")
                || train[0].target().unwrap().ends_with("So the answer is no.")
        );
    }
}
