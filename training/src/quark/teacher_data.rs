//! The loop's data besides its own samples: the silver training data (with replayed
//! training-only examples), the questions no teacher sample answered right (sampled with the
//! training questions), and the teacher's wrong samples (pool texts at round 0).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{load_examples_of, Example};

/// The pool's silver data: `train` and a seeded sample of at most `replay_examples` examples
/// of the run's training-only files.
pub(super) fn silver_examples(
    train: &[Example],
    replay_files: &[PathBuf],
    n: usize,
    seed: u64,
) -> Result<Vec<Example>> {
    let mut silver = train.to_vec();
    if n == 0 {
        return Ok(silver);
    }
    if replay_files.is_empty() {
        bail!(
            "[mario] replay_examples = {n}, but the data has no training-only files (a generated \
             world's reading.jsonl or knowledge.jsonl) to replay"
        );
    }
    let mut extra: Vec<Example> = load_examples_of(replay_files)?
        .into_iter()
        .filter(|e| e.rationale.is_some())
        .collect();
    extra.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5e91a7));
    extra.truncate(n);
    tracing::info!(
        replayed = extra.len(),
        "training-only examples in the silver data"
    );
    silver.extend(extra);
    Ok(silver)
}

/// The questions of `teacher_files` that no teacher sample answered right and that `train`
/// does not hold, as examples without a rationale, in file order; the answer is the gold
/// label spelt as the question's choices spell it (teacher files lower-case it).
pub(super) fn unsolved_questions(
    teacher_files: &[PathBuf],
    train: &[Example],
) -> Result<Vec<Example>> {
    let known: HashSet<&str> = train.iter().map(|e| e.question.as_str()).collect();
    let mut order: Vec<(String, String)> = Vec::new();
    let mut solved: HashMap<String, bool> = HashMap::new();
    for path in teacher_files {
        for r in crate::data::load_teacher(path)? {
            let right = mario::rewards::answers_match(&r.predicted_label, &r.gold_label);
            match solved.get_mut(&r.question) {
                Some(s) => *s |= right,
                None => {
                    solved.insert(r.question.clone(), right);
                    order.push((r.question, r.gold_label));
                }
            }
        }
    }
    Ok(order
        .into_iter()
        .filter(|(q, _)| !solved[q] && !known.contains(q.as_str()))
        .enumerate()
        .map(|(i, (question, gold))| Example {
            id: format!("unsolved {}", i + 1),
            answer: spelt_as_choice(&question, gold),
            question,
            rationale: None,
        })
        .collect())
}

/// `label` spelt as `question`'s choices spell it (teacher files lower-case labels), or as it
/// is when no choice matches.
fn spelt_as_choice(question: &str, label: String) -> String {
    crate::data::extract_choices(question)
        .labels
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(&label))
        .unwrap_or(label)
}

/// The samples of `teacher_files` that reached a wrong answer on one of `questions`, as pool
/// texts `(question, output, gold)` in file order ([`MarioSettings::teacher_wrong_answers`]);
/// the output is the teacher's rationale and label in the training format. Samples without a
/// parsed label or without a rationale are left out.
pub(super) fn teacher_wrong_samples(
    teacher_files: &[PathBuf],
    questions: &HashSet<&str>,
) -> Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for path in teacher_files {
        for r in crate::data::load_teacher(path)? {
            let right = mario::rewards::answers_match(&r.predicted_label, &r.gold_label);
            if right
                || r.predicted_label.trim().is_empty()
                || r.predicted_rationale.trim().is_empty()
                || !questions.contains(r.question.as_str())
            {
                continue;
            }
            let answer = spelt_as_choice(&r.question, r.predicted_label);
            let gold = spelt_as_choice(&r.question, r.gold_label);
            let text = mario::rationale::build_target(r.predicted_rationale.trim(), &answer);
            out.push((r.question, text, gold));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line of a teacher file (`teacher_gpt3_train.jsonl`).
    fn teacher_line(q: &str, gold: &str, pred: &str, rationale: &str) -> String {
        serde_json::json!({"question": q, "gold_label": gold, "predicted_label": pred,
            "predicted_rationale": rationale})
        .to_string()
            + "\n"
    }

    fn example(q: &str) -> Example {
        Example {
            id: q.into(),
            question: q.into(),
            rationale: Some(format!("{q} is stated.")),
            answer: "yes".into(),
        }
    }

    #[test]
    fn replayed_examples_join_the_silver_data_as_a_seeded_sample() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("reading.jsonl");
        let rows: String = (0..50)
            .map(|i| {
                serde_json::json!({"question": format!("R{i}?"), "rationale": "It is.", "answer": "yes"})
                    .to_string()
                    + "\n"
            })
            .collect();
        std::fs::write(&file, rows).unwrap();
        let train = vec![example("T0?"), example("T1?")];
        let files = vec![file];
        // 0: the training split alone
        assert_eq!(silver_examples(&train, &files, 0, 1).unwrap(), train);
        let a = silver_examples(&train, &files, 10, 1).unwrap();
        assert_eq!(a.len(), 12);
        assert_eq!(&a[..2], &train[..], "the training split first");
        assert!(a[2..].iter().all(|e| e.question.starts_with('R')));
        assert_eq!(a, silver_examples(&train, &files, 10, 1).unwrap(), "seeded");
        assert_ne!(
            a,
            silver_examples(&train, &files, 10, 2).unwrap(),
            "another seed"
        );
        // more than there are: all of them
        assert_eq!(silver_examples(&train, &files, 500, 1).unwrap().len(), 52);
        // asked for, but nothing to replay
        let err = silver_examples(&train, &[], 10, 1).unwrap_err().to_string();
        assert!(err.contains("replay_examples = 10"), "{err}");
    }

    #[test]
    fn unsolved_questions_are_those_no_teacher_sample_got_right() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("teacher_gpt3_train.jsonl");
        let row = |q: &str, gold: &str, pred: &str| teacher_line(q, gold, pred, "It is.");
        let rows = [
            row("Solved once?", "yes", "no"),
            row("Solved once?", "yes", "yes"),
            row("Never (B)?", "(b)", "(a)"),
            row("Never (B)?", "(b)", "(c)"),
            row("Never yes?", "yes", "no"),
            row("In train?", "no", "yes"),
        ]
        .concat();
        std::fs::write(&file, rows).unwrap();
        let train = vec![example("In train?")];
        let got = unsolved_questions(std::slice::from_ref(&file), &train).unwrap();
        let qs: Vec<(&str, &str, bool)> = got
            .iter()
            .map(|e| {
                (
                    e.question.as_str(),
                    e.answer.as_str(),
                    e.rationale.is_none(),
                )
            })
            .collect();
        assert_eq!(
            qs,
            [("Never (B)?", "(b)", true), ("Never yes?", "yes", true)]
        );
        // spelt as the question's choices spell it
        std::fs::write(&file, row("Which? (A) x (B) y", "(b)", "(a)")).unwrap();
        let got = unsolved_questions(std::slice::from_ref(&file), &[]).unwrap();
        assert_eq!(got[0].answer, "(B)");
    }

    #[test]
    fn the_teachers_wrong_samples_on_asked_questions_become_pool_texts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("teacher_gpt3_train.jsonl");
        let row = teacher_line;
        let rows = [
            row("Asked?", "yes", "yes", "Right."),
            row("Asked?", "yes", "no", " Wrong. "),
            row("Which? (A) x (B) y", "(b)", "(a)", "X is it."),
            row("Asked?", "yes", "", "No label."),
            row("Asked?", "yes", "no", ""),
            row("Not asked?", "yes", "no", "Elsewhere."),
        ]
        .concat();
        std::fs::write(&file, rows).unwrap();
        let asked: HashSet<&str> = ["Asked?", "Which? (A) x (B) y"].into_iter().collect();
        let got = teacher_wrong_samples(std::slice::from_ref(&file), &asked).unwrap();
        let t =
            |q: &str, text: &str, gold: &str| (q.to_string(), text.to_string(), gold.to_string());
        assert_eq!(
            got,
            [
                t("Asked?", "Wrong. So the answer is no.", "yes"),
                t(
                    "Which? (A) x (B) y",
                    "X is it. So the answer is (A).",
                    "(B)"
                ),
            ]
        );
        // each pool text states the teacher's wrong answer, which the accuracy reward scores 0
        for (_, text, gold) in &got {
            let answer = mario::rationale::parse_output(text).answer.unwrap();
            assert!(!mario::rewards::answers_match(&answer, gold), "{text}");
        }
    }
}
