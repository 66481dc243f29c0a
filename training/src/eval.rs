//! Evaluation of a checkpoint (greedy, or sampled with a majority vote) or of an existing
//! rationale file, with the paper's metrics: accuracy, format-valid rate, diversity and mean
//! rationale length.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mario::generate::{generate, GenerationParams, GenerationRequest, SamplingParams};
use mario::model::T5Model;
use mario::rationale::{parse_output, ANSWER_PHRASE};
use mario::rewards::{answers_match, diversity, Reward};
use mario::tokenize::TextTokenizer;
use serde::{Deserialize, Serialize};

use crate::data::{Example, TeacherRecord};
use crate::decoding::Decoding;
use crate::report::markdown_table;

/// How a checkpoint is decoded for evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Questions per generation batch.
    pub batch_size: usize,
    /// Most new tokens per output.
    pub max_new_tokens: usize,
    /// Outputs per question: 1 = greedy; more = sampling with a majority vote on the answer.
    pub samples: usize,
    /// Sampling temperature (samples > 1).
    pub temperature: f64,
    /// Nucleus sampling (samples > 1).
    pub top_p: f64,
    /// Seed of the first sample of each question.
    pub seed: u64,
    /// Evaluate only the first N questions.
    pub limit: Option<usize>,
    /// Forced decoder prefix (control tokens).
    pub prefix: Vec<u32>,
    /// Never repeat an n-gram of this many tokens (0 = plain decoding).
    pub no_repeat_ngram_size: usize,
    /// Draw a progress bar.
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            max_new_tokens: 128,
            samples: 1,
            temperature: 1.0,
            top_p: 0.9,
            seed: 0,
            limit: None,
            prefix: Vec::new(),
            no_repeat_ngram_size: 0,
            progress: false,
        }
    }
}

impl EvalOptions {
    /// These options with a resolved decoding's values (see [`crate::decoding`]).
    pub fn with_decoding(self, d: &Decoding) -> Self {
        Self {
            max_new_tokens: d.max_new_tokens.value,
            no_repeat_ngram_size: d.no_repeat_ngram_size.value,
            temperature: d.temperature.value,
            top_p: d.top_p.value,
            ..self
        }
    }
}

/// The result for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleResult {
    /// Record id in the data file.
    pub id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold: String,
    /// The (chosen) output text.
    pub output: String,
    /// Its rationale.
    pub rationale: String,
    /// Its answer, when it has one.
    pub answer: Option<String>,
    /// Why there is no answer.
    pub answer_missing: Option<String>,
    /// Answer equals gold.
    pub correct: bool,
    /// Output contains "So the answer is".
    pub format_valid: bool,
    /// Diversity of the rationale.
    pub diversity: f64,
    /// Whitespace words in the rationale.
    pub rationale_words: usize,
    /// With a majority vote: every sample's answer (`None` = no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes: Option<Vec<Option<String>>>,
    /// The rationale equals the question's gold rationale (whitespace and a final period
    /// aside); `None` when the data has no rationale for the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale_exact: Option<bool>,
    /// Scores of further measures (the ground-truth measures of a generated world), by name;
    /// `None` where a measure could not score the output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measures: BTreeMap<String, Option<f64>>,
}

/// Aggregate metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Items evaluated (questions, or records for a rationale file).
    pub n: usize,
    /// Fraction whose answer equals the gold answer (a missing answer counts as wrong).
    pub accuracy: f64,
    /// Fraction containing "So the answer is".
    pub format_valid_rate: f64,
    /// Mean diversity of the rationales.
    pub diversity: f64,
    /// Mean rationale length in whitespace words.
    pub rationale_words: f64,
    /// Fraction of the questions with a gold rationale whose rationale equals it (whitespace
    /// and a final period aside): on the copy probe, the share of names copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale_exact_rate: Option<f64>,
    /// Mean of each further measure over the outputs it scored.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub measures: BTreeMap<String, f64>,
}

/// Means over per-example results.
pub fn aggregate(results: &[ExampleResult]) -> EvalMetrics {
    let n = results.len().max(1) as f64;
    let mean = |f: &dyn Fn(&ExampleResult) -> f64| results.iter().map(f).sum::<f64>() / n;
    EvalMetrics {
        n: results.len(),
        accuracy: mean(&|r| f64::from(u8::from(r.correct))),
        format_valid_rate: mean(&|r| f64::from(u8::from(r.format_valid))),
        diversity: mean(&|r| r.diversity),
        rationale_words: mean(&|r| r.rationale_words as f64),
        rationale_exact_rate: {
            let with_gold: Vec<bool> = results.iter().filter_map(|r| r.rationale_exact).collect();
            (!with_gold.is_empty())
                .then(|| with_gold.iter().filter(|&&x| x).count() as f64 / with_gold.len() as f64)
        },
        measures: {
            let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for (k, v) in results.iter().flat_map(|r| &r.measures) {
                let e = sums.entry(k.clone()).or_default();
                if let Some(v) = v {
                    e.0 += v;
                    e.1 += 1;
                }
            }
            sums.into_iter()
                .filter(|(_, (_, n))| *n > 0)
                .map(|(k, (sum, n))| (k, sum / n as f64))
                .collect()
        },
    }
}

/// Scores every result with `measures` (into [`ExampleResult::measures`]); aggregate again
/// afterwards.
pub fn add_measures(results: &mut [ExampleResult], measures: &[Box<dyn Reward>]) -> Result<()> {
    let items: Vec<(String, String, String)> = results
        .iter()
        .map(|r| (r.question.clone(), r.output.clone(), r.gold.clone()))
        .collect();
    let scores = crate::quark::run::score_all(measures, &items)?;
    for (r, row) in results.iter_mut().zip(scores) {
        for (m, v) in measures.iter().zip(row) {
            r.measures.insert(m.name().to_string(), v);
        }
    }
    Ok(())
}

/// Whether a rationale equals a gold one, whitespace and a final period aside.
pub fn same_rationale(a: &str, b: &str) -> bool {
    let norm = |t: &str| {
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        t.trim_end_matches('.').to_string()
    };
    norm(a) == norm(b)
}

/// Scores one output against a gold answer.
pub fn score_output(id: &str, question: &str, gold: &str, output: &str) -> ExampleResult {
    let parsed = parse_output(output);
    let (answer, missing) = match parsed.answer {
        Ok(a) => (Some(a), None),
        Err(m) => (None, Some(m.reason().to_string())),
    };
    ExampleResult {
        id: id.to_string(),
        question: question.to_string(),
        gold: gold.to_string(),
        output: output.to_string(),
        correct: answer.as_deref().is_some_and(|a| answers_match(a, gold)),
        format_valid: output.contains(ANSWER_PHRASE),
        diversity: diversity(&parsed.rationale),
        rationale_words: parsed.rationale.split_whitespace().count(),
        rationale: parsed.rationale,
        answer,
        answer_missing: missing,
        votes: None,
        rationale_exact: None,
        measures: BTreeMap::new(),
    }
}

/// The most frequent answer (first seen wins ties); `None` answers do not vote.
pub fn majority(answers: &[Option<String>]) -> Option<String> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, a) in answers.iter().enumerate() {
        if let Some(a) = a {
            let e = counts.entry(a.trim().to_lowercase()).or_insert((0, i));
            e.0 += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.1 .1.cmp(&a.1 .1)))
        .map(|(_, (_, first))| answers[first].clone().expect("voted answers are Some"))
}

/// Decodes `examples` with `model` and scores the outputs.
pub fn evaluate_model(
    model: &T5Model,
    tokenizer: &TextTokenizer,
    examples: &[Example],
    opts: &EvalOptions,
) -> Result<(EvalMetrics, Vec<ExampleResult>)> {
    let examples = &examples[..opts.limit.unwrap_or(examples.len()).min(examples.len())];
    let samples = opts.samples.max(1);
    let pb = if opts.progress {
        let pb = ProgressBar::new(examples.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("{spinner} eval {bar:30} {pos}/{len} questions ETA {eta}")
                .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut results = Vec::with_capacity(examples.len());
    let per_batch = (opts.batch_size / samples).max(1);
    for chunk in examples.chunks(per_batch) {
        let mut reqs = Vec::with_capacity(chunk.len() * samples);
        for (q, ex) in chunk.iter().enumerate() {
            let input_ids = tokenizer.encode(&ex.question)?;
            for s in 0..samples {
                let sampling = if samples == 1 {
                    SamplingParams::GREEDY
                } else {
                    SamplingParams {
                        temperature: opts.temperature,
                        top_k: None,
                        top_p: Some(opts.top_p),
                    }
                };
                reqs.push(GenerationRequest {
                    input_ids: input_ids.clone(),
                    prefix: opts.prefix.clone(),
                    params: GenerationParams {
                        max_new_tokens: opts.max_new_tokens,
                        sampling,
                        seed: opts.seed.wrapping_add((q * samples + s) as u64),
                        no_repeat_ngram_size: opts.no_repeat_ngram_size,
                        ..Default::default()
                    },
                });
            }
        }
        let outs = generate(model, tokenizer, &reqs)?;
        for (q, ex) in chunk.iter().enumerate() {
            let outs = &outs[q * samples..(q + 1) * samples];
            let scored: Vec<ExampleResult> = outs
                .iter()
                .map(|o| score_output(&ex.id, &ex.question, &ex.answer, &o.text))
                .collect();
            let exact = |r: &ExampleResult| {
                ex.rationale
                    .as_deref()
                    .map(|g| same_rationale(g, &r.rationale))
            };
            if samples == 1 {
                let mut r = scored.into_iter().next().expect("one sample");
                r.rationale_exact = exact(&r);
                results.push(r);
            } else {
                let votes: Vec<Option<String>> = scored.iter().map(|r| r.answer.clone()).collect();
                let winner = majority(&votes);
                let mut chosen = match &winner {
                    Some(w) => scored
                        .iter()
                        .find(|r| r.answer.as_deref().is_some_and(|a| answers_match(a, w)))
                        .cloned()
                        .expect("the winner came from a sample"),
                    None => scored[0].clone(),
                };
                chosen.votes = Some(votes);
                chosen.rationale_exact = exact(&chosen);
                results.push(chosen);
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok((aggregate(&results), results))
}

/// Scores an existing rationale file in the teacher layout (one result per record).
pub fn evaluate_rationale_file(records: &[TeacherRecord]) -> (EvalMetrics, Vec<ExampleResult>) {
    let results: Vec<ExampleResult> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rationale = r.predicted_rationale.trim().to_string();
            let has_answer = !r.predicted_label.trim().is_empty();
            ExampleResult {
                id: i.to_string(),
                question: r.question.clone(),
                gold: r.gold_label.clone(),
                output: if has_answer {
                    format!("{rationale} {ANSWER_PHRASE} {}.", r.predicted_label)
                } else {
                    rationale.clone()
                },
                correct: has_answer && answers_match(&r.predicted_label, &r.gold_label),
                format_valid: has_answer,
                diversity: diversity(&rationale),
                rationale_words: rationale.split_whitespace().count(),
                rationale,
                answer: has_answer.then(|| r.predicted_label.clone()),
                answer_missing: (!has_answer)
                    .then(|| "the teacher's answer could not be parsed".into()),
                votes: None,
                rationale_exact: None,
                measures: BTreeMap::new(),
            }
        })
        .collect();
    (aggregate(&results), results)
}

/// Writes `metrics.json`, `metrics.md` and `examples.jsonl` into `out`.
pub fn write_eval(
    out: &Path,
    title: &str,
    metrics: &EvalMetrics,
    extra: &serde_json::Value,
    results: &[ExampleResult],
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut json = serde_json::to_value(metrics)?;
    if let (Some(obj), Some(more)) = (json.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let rows = vec![
        vec!["items".into(), metrics.n.to_string()],
        vec![
            "accuracy".into(),
            format!("{:.2} %", 100.0 * metrics.accuracy),
        ],
        vec![
            "format-valid rate".into(),
            format!("{:.2} %", 100.0 * metrics.format_valid_rate),
        ],
        vec![
            "diversity (mean)".into(),
            format!("{:.4}", metrics.diversity),
        ],
        vec![
            "rationale length (mean words)".into(),
            format!("{:.1}", metrics.rationale_words),
        ],
    ];
    let mut rows = rows;
    if let Some(x) = metrics.rationale_exact_rate {
        rows.push(vec![
            "rationale equal to the gold one".into(),
            format!("{:.2} %", 100.0 * x),
        ]);
    }
    for (name, mean) in &metrics.measures {
        rows.push(vec![format!("{name} (mean)"), format!("{mean:.4}")]);
    }
    let md = format!(
        "# {title}\n\n{}",
        markdown_table(&["metric", "value"], &rows)
    );
    std::fs::write(out.join("metrics.md"), md)?;
    let mut lines = String::new();
    for r in results {
        lines.push_str(&serde_json::to_string(r)?);
        lines.push('\n');
    }
    std::fs::write(out.join("examples.jsonl"), lines)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_parses_and_compares_case_insensitively() {
        let r = score_output(
            "1",
            "q",
            "(B)",
            "Closer things look bigger. So the answer is (b).",
        );
        assert!(r.correct && r.format_valid);
        assert_eq!(r.rationale_words, 4);
        let r = score_output("2", "q", "yes", "No phrase at all");
        assert!(!r.correct && !r.format_valid);
        assert!(r.answer_missing.is_some());
        let m = aggregate(&[score_output("1", "q", "no", "a b. So the answer is no."), r]);
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.format_valid_rate, 0.5);
        assert_eq!(m.rationale_exact_rate, None);
    }

    #[test]
    fn exact_rationales_are_counted_over_questions_with_a_gold_one() {
        assert!(same_rationale("The name is tafi.", " The  name is tafi"));
        assert!(!same_rationale("The name is tafi.", "The name is tafo."));
        let mut a = score_output("1", "q", "no", "The name is ka. So the answer is no.");
        a.rationale_exact = Some(true);
        let mut b = a.clone();
        b.rationale_exact = Some(false);
        let mut c = a.clone();
        c.rationale_exact = None;
        assert_eq!(aggregate(&[a, b, c]).rationale_exact_rate, Some(0.5));
    }

    #[test]
    fn majority_vote_ignores_missing_answers_and_breaks_ties_by_order() {
        let v = |s: &[Option<&str>]| s.iter().map(|x| x.map(String::from)).collect::<Vec<_>>();
        assert_eq!(
            majority(&v(&[Some("no"), None, Some("yes"), Some("yes")])),
            Some("yes".into())
        );
        assert_eq!(majority(&v(&[Some("no"), Some("yes")])), Some("no".into()));
        assert_eq!(majority(&v(&[None, None])), None);
        assert_eq!(
            majority(&v(&[Some("(A)"), Some("(a)"), Some("(B)")])),
            Some("(A)".into())
        );
    }

    #[test]
    fn teacher_file_scores() {
        let rec = |g: &str, p: &str, r: &str| TeacherRecord {
            question: "q".into(),
            gold_label: g.into(),
            predicted_label: p.into(),
            predicted_rationale: r.into(),
        };
        let (m, res) = evaluate_rationale_file(&[
            rec("no", "no", "Pigs cannot fly."),
            rec("(b)", "(a)", "x y"),
            rec("yes", "", ""),
        ]);
        assert!((m.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.format_valid_rate - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(res[0].output, "Pigs cannot fly. So the answer is no.");
    }

    #[test]
    fn further_measures_are_averaged_over_what_they_scored() {
        use mario::rewards::RewardInput;
        struct Odd;
        impl Reward for Odd {
            fn name(&self) -> &str {
                "odd"
            }
            fn score(
                &self,
                items: &[RewardInput<'_>],
            ) -> Result<Vec<Option<f64>>, mario::rewards::RewardError> {
                // no score for the first item, then 1, 0, 1, ...
                Ok((0..items.len())
                    .map(|i| (i > 0).then_some((i % 2) as f64))
                    .collect())
            }
        }
        let mut results: Vec<ExampleResult> = (0..4)
            .map(|i| score_output(&i.to_string(), "q", "no", "a b. So the answer is no."))
            .collect();
        assert!(aggregate(&results).measures.is_empty());
        add_measures(&mut results, &[Box::new(Odd)]).unwrap();
        assert_eq!(results[0].measures["odd"], None);
        assert_eq!(results[1].measures["odd"], Some(1.0));
        // items 1..3 scored 1, 0, 1
        assert!((aggregate(&results).measures["odd"] - 2.0 / 3.0).abs() < 1e-12);
    }
}
