//! Teacher rationales from a large model behind any OpenAI-compatible chat-completions
//! endpoint (method section A.3): few-shot chain-of-thought prompts, N samples per question,
//! the answer parsed from each reply, and the rationales whose answer is correct kept.
//!
//! Work is resumable: every finished question is appended to `<out>.progress.jsonl`, and a
//! restarted run skips those questions.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::{extract_choices, Example, TeacherRecord};

/// Connection and sampling settings.
#[derive(Debug, Clone)]
pub struct TeachOptions {
    /// Base URL, e.g. `https://api.openai.com/v1` (`/chat/completions` is appended).
    pub url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Bearer token (may be empty for local servers).
    pub api_key: String,
    /// Samples per question.
    pub samples: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Most tokens per reply.
    pub max_tokens: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries of a failed request (HTTP 429, 5xx, network errors).
    pub retries: usize,
    /// First retry delay; doubles on each retry.
    pub backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Keep the samples whose answer is wrong too (as negatives, e.g. for the plausibility
    /// scorer).
    pub keep_wrong: bool,
    /// Progress bar.
    pub progress: bool,
}

/// A worked example shown to the teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demonstration {
    /// The question (with its choices).
    pub question: String,
    /// The rationale.
    pub rationale: String,
    /// The answer label.
    pub answer: String,
}

/// Built-in demonstrations: yes/no questions, or lettered multiple choice.
pub fn default_demonstrations(yes_no: bool) -> Vec<Demonstration> {
    let d = |q: &str, r: &str, a: &str| Demonstration {
        question: q.into(),
        rationale: r.into(),
        answer: a.into(),
    };
    if yes_no {
        vec![
            d(
                "Do hamsters provide food for any animals?",
                "Hamsters are prey animals. Prey are food for predators. Thus, hamsters provide food for some animals.",
                "yes",
            ),
            d(
                "Could a llama birth twice during the War in Vietnam (1945-46)?",
                "The War in Vietnam was 6 months. The gestation period for a llama is 11 months, which is more than 6 months. Thus, a llama could not give birth twice during the War in Vietnam.",
                "no",
            ),
            d(
                "Is it common to see frost during some college commencements?",
                "College commencement ceremonies can happen in December, May, and June. December is in the winter, so there can be frost. Thus, there could be frost at some commencements.",
                "yes",
            ),
        ]
    } else {
        vec![
            d(
                "A ball rolls farther on a wooden floor than on a carpet because the carpet has (A) more friction (B) less friction",
                "A rougher surface has more friction, and more friction slows a rolling ball sooner. Carpet is rougher than wood.",
                "(A)",
            ),
            d(
                "What do plants need to make food? (A) moonlight (B) sunlight (C) sand (D) noise",
                "Plants make food by photosynthesis, which uses the energy of sunlight.",
                "(B)",
            ),
        ]
    }
}

/// The few-shot demonstrations: the records of `path` (split layout, each with a rationale),
/// else the built-in ones for the first question's answer format.
pub fn load_demonstrations(
    path: Option<&Path>,
    examples: &[Example],
) -> Result<Vec<Demonstration>> {
    let Some(p) = path else {
        return Ok(default_demonstrations(
            examples
                .first()
                .is_some_and(|e| e.choices().labels == ["no", "yes"]),
        ));
    };
    crate::data::load_examples(p)?
        .into_iter()
        .map(|e| {
            Ok(Demonstration {
                rationale: e
                    .rationale
                    .ok_or_else(|| anyhow!("{}: record {} has no rationale", p.display(), e.id))?,
                question: e.question,
                answer: e.answer,
            })
        })
        .collect()
}

/// The chat messages for a question.
pub fn build_messages(demos: &[Demonstration], question: &str) -> serde_json::Value {
    let mut messages = vec![json!({
        "role": "system",
        "content": "Answer the question. First explain your reasoning in one to three sentences, \
                    then end with \"So the answer is <answer>.\" where <answer> is yes or no, or \
                    the label of the correct choice such as (A).",
    })];
    for d in demos {
        messages.push(json!({"role": "user", "content": format!("Q: {}\nA:", d.question)}));
        messages.push(json!({
            "role": "assistant",
            "content": format!("{} So the answer is {}.", d.rationale, d.answer),
        }));
    }
    messages.push(json!({"role": "user", "content": format!("Q: {question}\nA:")}));
    json!(messages)
}

/// Splits a teacher reply into (rationale, label): the text before the last "answer is" and
/// the label after it (`yes`/`no`, or `(x)`), lower-cased. An unparseable reply gives an empty
/// label, as in the paper's files.
pub fn parse_reply(reply: &str, choice_labels: &[String]) -> (String, String) {
    let lower = reply.to_lowercase();
    let Some(at) = lower.rfind("answer is") else {
        return (reply.trim().to_string(), String::new());
    };
    let mut rationale = reply[..at].trim_end().to_string();
    for lead in [
        "So the",
        "Thus the",
        "Therefore the",
        "So, the",
        "Thus, the",
        "The",
    ] {
        if rationale.to_lowercase().ends_with(&lead.to_lowercase()) {
            rationale.truncate(rationale.len() - lead.len());
            break;
        }
    }
    let rationale = rationale.trim().trim_end_matches(',').trim().to_string();
    let tail = lower[at + "answer is".len()..]
        .trim()
        .trim_start_matches(':')
        .trim();
    let lettered = choice_labels.first().is_some_and(|l| l.starts_with('('));
    let label = if lettered {
        // "(b)", "(b) bigger", "b.", "b" -> "(b)"
        let mut chars = tail.chars();
        let letter = match chars.next() {
            Some('(') => chars.next().filter(|_| chars.next() == Some(')')),
            Some(c) if chars.next().is_none_or(|n| !n.is_alphanumeric()) => Some(c),
            _ => None,
        };
        letter
            .map(|c| format!("({c})"))
            .filter(|l| choice_labels.iter().any(|x| x.eq_ignore_ascii_case(l)))
            .unwrap_or_default()
    } else {
        let word = tail
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("");
        choice_labels
            .iter()
            .find(|l| l.eq_ignore_ascii_case(word))
            .map(|l| l.to_lowercase())
            .unwrap_or_default()
    };
    (rationale, label)
}

/// One question's outcome, recorded in the progress file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    question: String,
    samples: usize,
    correct: usize,
}

fn progress_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".progress.jsonl");
    PathBuf::from(p)
}

/// Sends one chat request with retries; returns the reply text.
fn ask(agent: &ureq::Agent, opts: &TeachOptions, messages: &serde_json::Value) -> Result<String> {
    let url = format!("{}/chat/completions", opts.url.trim_end_matches('/'));
    let body = json!({
        "model": opts.model,
        "messages": messages,
        "temperature": opts.temperature,
        "max_tokens": opts.max_tokens,
    });
    let mut delay = opts.backoff;
    let mut last_err = String::new();
    for attempt in 0..=opts.retries {
        if attempt > 0 {
            std::thread::sleep(delay);
            delay *= 2;
        }
        let mut req = agent.post(&url);
        if !opts.api_key.is_empty() {
            req = req.header("Authorization", &format!("Bearer {}", opts.api_key));
        }
        match req.send_json(&body) {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                if status == 429 || status >= 500 {
                    last_err = format!(
                        "HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    );
                    continue;
                }
                if status >= 400 {
                    bail!(
                        "{url}: HTTP {status}: {}",
                        text.chars().take(500).collect::<String>()
                    );
                }
                let v: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{url}: the reply is not JSON"))?;
                return v["choices"][0]["message"]["content"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("{url}: the reply has no choices[0].message.content"));
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    bail!(
        "{url}: giving up after {} attempts: {last_err}",
        opts.retries + 1
    )
}

/// Summary of a teach run.
#[derive(Debug, Clone, Serialize)]
pub struct TeachSummary {
    /// Questions answered in this run.
    pub questions: usize,
    /// Questions skipped because an earlier run answered them.
    pub skipped: usize,
    /// Samples written to the output.
    pub written: usize,
    /// Samples whose answer was correct.
    pub correct: usize,
    /// Samples requested.
    pub samples: usize,
}

/// Asks the teacher about every question (unique questions, in order) and appends the kept
/// samples to `out` in the teacher layout (JSON Lines).
pub fn teach(
    examples: &[Example],
    demos: &[Demonstration],
    opts: &TeachOptions,
    out: &Path,
) -> Result<TeachSummary> {
    let prog_path = progress_path(out);
    let done = done_questions(&prog_path);
    let mut seen = HashSet::new();
    let todo: Vec<&Example> = examples
        .iter()
        .filter(|e| seen.insert(e.question.clone()))
        .filter(|e| !done.contains(&e.question))
        .collect();
    let skipped = seen.len() - todo.len();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(opts.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let files = Mutex::new((open_append(out)?, open_append(&prog_path)?));
    let pb = progress_bar(opts.progress, todo.len());
    let next = AtomicUsize::new(0);
    let written = AtomicUsize::new(0);
    let correct = AtomicUsize::new(0);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.concurrency.max(1) {
            scope.spawn(|| loop {
                if first_error.lock().expect("lock").is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(ex) = todo.get(i) else { return };
                let res = ask_samples(&agent, opts, demos, ex)
                    .and_then(|(records, n)| save_question(&files, ex, &records, n, opts));
                let (n_written, n_correct) = match res {
                    Ok(counts) => counts,
                    Err(e) => {
                        first_error.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                };
                written.fetch_add(n_written, Ordering::SeqCst);
                correct.fetch_add(n_correct, Ordering::SeqCst);
                pb.inc(1);
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = first_error.into_inner().expect("lock") {
        return Err(e.context(format!(
            "teaching stopped; finished questions are saved, rerun to resume ({})",
            prog_path.display()
        )));
    }
    Ok(TeachSummary {
        questions: todo.len(),
        skipped,
        written: written.into_inner(),
        correct: correct.into_inner(),
        samples: todo.len() * opts.samples,
    })
}

/// The questions an earlier run finished (the progress file; none when it is missing).
fn done_questions(prog_path: &Path) -> HashSet<String> {
    match std::fs::read_to_string(prog_path) {
        Ok(text) => text
            .lines()
            .filter_map(|l| serde_json::from_str::<Progress>(l).ok())
            .map(|p| p.question)
            .collect(),
        Err(_) => HashSet::new(),
    }
}

/// `path` opened for appending (created when missing).
fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The progress bar over `questions` (hidden without `progress`).
fn progress_bar(progress: bool, questions: usize) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(questions as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} teach {bar:30} {pos}/{len} questions {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    pb
}

/// Asks the teacher `opts.samples` times about one question: the samples kept (correct ones,
/// every one with `keep_wrong`) and how many were correct.
fn ask_samples(
    agent: &ureq::Agent,
    opts: &TeachOptions,
    demos: &[Demonstration],
    ex: &Example,
) -> Result<(Vec<TeacherRecord>, usize)> {
    let labels = extract_choices(&ex.question).labels;
    let messages = build_messages(demos, &ex.question);
    let mut records = Vec::new();
    let mut n_correct = 0;
    for _ in 0..opts.samples {
        let reply = ask(agent, opts, &messages)?;
        let (rationale, label) = parse_reply(&reply, &labels);
        let is_correct =
            !label.is_empty() && !rationale.is_empty() && label.eq_ignore_ascii_case(&ex.answer);
        n_correct += usize::from(is_correct);
        if is_correct || opts.keep_wrong {
            records.push(TeacherRecord {
                question: ex.question.clone(),
                gold_label: ex.answer.to_lowercase(),
                predicted_label: label,
                predicted_rationale: rationale,
            });
        }
    }
    Ok((records, n_correct))
}

/// Appends one question's kept samples to the output and its outcome to the progress file;
/// returns the samples written and the correct ones.
fn save_question(
    files: &Mutex<(std::fs::File, std::fs::File)>,
    ex: &Example,
    records: &[TeacherRecord],
    n_correct: usize,
    opts: &TeachOptions,
) -> Result<(usize, usize)> {
    let mut guard = files.lock().expect("lock");
    let (out_file, prog_file) = &mut *guard;
    for r in records {
        writeln!(out_file, "{}", serde_json::to_string(r)?)?;
    }
    out_file.flush()?;
    let p = Progress {
        question: ex.question.clone(),
        samples: opts.samples,
        correct: n_correct,
    };
    writeln!(prog_file, "{}", serde_json::to_string(&p)?)?;
    prog_file.flush()?;
    Ok((records.len(), n_correct))
}

/// Writes the correct, non-empty samples of a teacher file as a training split (JSON Lines
/// with `question`, `rationale`, `answer`; the answer spelled as in `examples`). Returns the
/// number of rows.
pub fn write_training_split(teacher: &Path, examples: &[Example], out: &Path) -> Result<usize> {
    let answers: std::collections::HashMap<&str, &str> = examples
        .iter()
        .map(|e| (e.question.as_str(), e.answer.as_str()))
        .collect();
    let records = crate::data::load_teacher(teacher)?;
    let mut text = String::new();
    let mut n = 0;
    for r in records {
        let correct = !r.predicted_rationale.trim().is_empty()
            && r.predicted_label.eq_ignore_ascii_case(&r.gold_label);
        if !correct {
            continue;
        }
        let answer = answers
            .get(r.question.as_str())
            .copied()
            .unwrap_or(&r.gold_label);
        text.push_str(&serde_json::to_string(&json!({
            "question": r.question, "rationale": r.predicted_rationale, "answer": answer,
        }))?);
        text.push('\n');
        n += 1;
    }
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_like_the_papers_files() {
        let yn = vec!["no".to_string(), "yes".to_string()];
        assert_eq!(
            parse_reply("Pigs have no wings. So the answer is no.", &yn),
            ("Pigs have no wings.".to_string(), "no".to_string())
        );
        assert_eq!(
            parse_reply("It is hot, thus the answer is: Yes", &yn),
            ("It is hot".to_string(), "yes".to_string())
        );
        let ab: Vec<String> = ["(A)", "(B)", "(C)"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_reply("Closer is bigger. The answer is (B) bigger.", &ab).1,
            "(b)"
        );
        assert_eq!(parse_reply("x. So the answer is C.", &ab).1, "(c)");
        assert_eq!(
            parse_reply("I am not sure.", &ab),
            ("I am not sure.".into(), String::new())
        );
        assert_eq!(parse_reply("So the answer is maybe.", &yn).1, "");
    }
}
