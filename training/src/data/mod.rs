//! The datasets: questions with answers and (silver or human) rationales, and teacher
//! rationale files.
//!
//! Two file layouts are read, detected from the content:
//! - the paper's files: ONE JSON object mapping `"0"`, `"1"`, … to a record (despite the
//!   `.jsonl` name), or a JSON array of records;
//! - JSON Lines: one record per line.
//!
//! Validation is strict: a missing, empty or mistyped field, an unknown field, or an answer that
//! is not one of the question's choices is refused with the file, the record and the field.

pub use mario::choices::{extract_choices, Choices};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mario::rationale::build_target;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Placeholder used for missing rationales in dev files.
pub const DUMMY_RATIONALE: &str = "dummy";

/// A data file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON / JSON Lines.
    #[error("{}: {location}: not valid JSON: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// `line N` or `the file`.
        location: String,
        /// The parser's message.
        message: String,
    },
    /// A record is malformed.
    #[error("{}: record {record}: field `{field}`: {problem}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// The record's key (`"12"`) or line (`line 13`).
        record: String,
        /// The offending field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The file holds no record.
    #[error("{}: no records", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// One question with its answer and, for training data, a rationale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Where the record came from (`"12"` for the paper's files, `line 13` for JSONL).
    pub id: String,
    /// The question as stored, with its answer choices inline.
    pub question: String,
    /// The rationale; `None` for the `"dummy"` placeholder.
    pub rationale: Option<String>,
    /// The gold answer label (`yes`, `(B)`, `(c)`).
    pub answer: String,
}

impl Example {
    /// The answer choices of the question.
    pub fn choices(&self) -> Choices {
        extract_choices(&self.question)
    }

    /// The SFT target `<rationale> So the answer is <answer>.`, if there is a rationale.
    pub fn target(&self) -> Option<String> {
        self.rationale
            .as_deref()
            .map(|r| build_target(r, &self.answer))
    }
}

/// One sample of a teacher (the paper's `*_gpt3_responses.jsonl` layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherRecord {
    /// The question.
    pub question: String,
    /// The gold label, lower-cased.
    pub gold_label: String,
    /// The teacher's label, lower-cased; empty when it could not be parsed.
    pub predicted_label: String,
    /// The teacher's rationale (text before "the answer is"); may be empty.
    pub predicted_rationale: String,
}

/// The records of a file with their ids, whatever the layout.
fn read_records(path: &Path) -> Result<Vec<(String, Value)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let trimmed = text.trim_start();
    let whole: Option<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(&text).ok()
    } else {
        None
    };
    let records = match whole {
        Some(Value::Object(map)) if map.keys().all(|k| k.parse::<u64>().is_ok()) => {
            let mut rows: Vec<(u64, String, Value)> = map
                .into_iter()
                .map(|(k, v)| (k.parse::<u64>().expect("checked"), k, v))
                .collect();
            rows.sort_by_key(|r| r.0);
            rows.into_iter().map(|(_, k, v)| (k, v)).collect()
        }
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("[{i}]"), v))
            .collect(),
        _ => {
            // JSON Lines (a single-line object with other keys is one JSONL record too)
            let mut rows = Vec::new();
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| DataError::Syntax {
                    path: path.to_path_buf(),
                    location: format!("line {}", n + 1),
                    message: e.to_string(),
                })?;
                rows.push((format!("line {}", n + 1), v));
            }
            rows
        }
    };
    if records.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(records)
}

fn field_err(path: &Path, record: &str, field: &str, problem: impl Into<String>) -> DataError {
    DataError::Field {
        path: path.to_path_buf(),
        record: record.to_string(),
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A required non-empty string field.
fn string_field(
    path: &Path,
    id: &str,
    obj: &serde_json::Map<String, Value>,
    field: &str,
    allow_empty: bool,
) -> Result<String, DataError> {
    match obj.get(field) {
        None => Err(field_err(path, id, field, "missing")),
        Some(Value::String(s)) if !allow_empty && s.trim().is_empty() => {
            Err(field_err(path, id, field, "empty"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(field_err(
            path,
            id,
            field,
            format!("expected a string, found {}", json_type(other)),
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_fields(
    path: &Path,
    id: &str,
    value: &Value,
    allowed: &[&str],
) -> Result<serde_json::Map<String, Value>, DataError> {
    let obj = match value {
        Value::Object(o) => o.clone(),
        other => {
            return Err(field_err(
                path,
                id,
                "(record)",
                format!("expected an object, found {}", json_type(other)),
            ))
        }
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(field_err(
            path,
            id,
            unknown,
            format!("unknown field (expected {})", allowed.join(", ")),
        ));
    }
    Ok(obj)
}

/// Every example of `files`, file after file ([`load_examples`] of each).
pub fn load_examples_of(files: &[PathBuf]) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    for f in files {
        out.extend(load_examples(f)?);
    }
    Ok(out)
}

/// Loads a split (`train.jsonl`, `dev.jsonl`): `question`, `rationale`, `answer` per record.
pub fn load_examples(path: &Path) -> Result<Vec<Example>, DataError> {
    let mut out = Vec::new();
    for (id, value) in read_records(path)? {
        let obj = check_fields(path, &id, &value, &["question", "rationale", "answer"])?;
        let question = string_field(path, &id, &obj, "question", false)?;
        let answer = string_field(path, &id, &obj, "answer", false)?
            .trim()
            .to_string();
        let rationale = string_field(path, &id, &obj, "rationale", true)?;
        let rationale = if rationale.trim() == DUMMY_RATIONALE || rationale.trim().is_empty() {
            None
        } else {
            Some(rationale)
        };
        let choices = extract_choices(&question);
        if choices.index_of(&answer).is_none() {
            return Err(field_err(
                path,
                &id,
                "answer",
                format!(
                    "{answer:?} is not one of the question's choices ({})",
                    choices.labels.join(", ")
                ),
            ));
        }
        out.push(Example {
            id,
            question,
            rationale,
            answer,
        });
    }
    Ok(out)
}

/// Loads a teacher file (`teacher_gpt3_train.jsonl` layout).
pub fn load_teacher(path: &Path) -> Result<Vec<TeacherRecord>, DataError> {
    let fields = [
        "question",
        "gold_label",
        "predicted_label",
        "predicted_rationale",
    ];
    let mut out = Vec::new();
    for (id, value) in read_records(path)? {
        let obj = check_fields(path, &id, &value, &fields)?;
        out.push(TeacherRecord {
            question: string_field(path, &id, &obj, "question", false)?,
            gold_label: string_field(path, &id, &obj, "gold_label", false)?,
            predicted_label: string_field(path, &id, &obj, "predicted_label", true)?,
            predicted_rationale: string_field(path, &id, &obj, "predicted_rationale", true)?,
        });
    }
    Ok(out)
}

/// Repeated and conflicting records of a split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DuplicateReport {
    /// Records in the file.
    pub records: usize,
    /// Distinct questions.
    pub unique_questions: usize,
    /// Questions that appear more than once (normal for silver data: several rationales).
    pub repeated_questions: usize,
    /// Records identical to an earlier one (question, rationale and answer).
    pub exact_duplicates: usize,
    /// Questions given different answers, with the ids of their records (first 10).
    pub conflicting_answers: BTreeMap<String, Vec<String>>,
    /// Number of questions with conflicting answers.
    pub conflicting_count: usize,
}

/// Counts repeated questions, exact duplicates and conflicting answers.
pub fn duplicate_report(examples: &[Example]) -> DuplicateReport {
    let mut by_question: HashMap<&str, Vec<&Example>> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut exact = 0;
    for ex in examples {
        by_question
            .entry(ex.question.as_str())
            .or_default()
            .push(ex);
        if !seen.insert((&ex.question, &ex.rationale, &ex.answer)) {
            exact += 1;
        }
    }
    let mut conflicting = BTreeMap::new();
    let mut conflicting_count = 0;
    for (q, rows) in &by_question {
        let first = &rows[0].answer;
        if rows.iter().any(|r| !r.answer.eq_ignore_ascii_case(first)) {
            conflicting_count += 1;
            if conflicting.len() < 10 {
                conflicting.insert(q.to_string(), rows.iter().map(|r| r.id.clone()).collect());
            }
        }
    }
    DuplicateReport {
        records: examples.len(),
        unique_questions: by_question.len(),
        repeated_questions: by_question.values().filter(|r| r.len() > 1).count(),
        exact_duplicates: exact,
        conflicting_answers: conflicting,
        conflicting_count,
    }
}

/// Validates a split file and counts its repeated and conflicting records
/// (`mario-train check`); with a tokenizer, also refuses records whose SFT target it encodes
/// with `<unk>`.
pub fn check_file(
    path: &Path,
    tokenizer: Option<&mario::tokenize::TextTokenizer>,
) -> anyhow::Result<DuplicateReport> {
    let examples = load_examples(path)?;
    if let Some(tok) = tokenizer {
        crate::tokenizer::check_targets(tok, path, &examples)?;
    }
    Ok(duplicate_report(&examples))
}

/// The data folder: `$MARIO_DATA`, else `../shared/data/mario`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("MARIO_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/mario"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_the_papers_dict_layout_in_index_order_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.jsonl",
            r#"{"10": {"question": "Q2? (A) x (B) y", "rationale": "r2", "answer": "(B)"},
                "2": {"question": "Q1?", "rationale": "dummy", "answer": "yes"}}"#,
        );
        let ex = load_examples(&p).unwrap();
        assert_eq!(ex[0].id, "2");
        assert_eq!(ex[0].rationale, None);
        assert_eq!(ex[0].target(), None);
        assert_eq!(ex[1].target().unwrap(), "r2. So the answer is (B).");
        let p = write(
            dir.path(),
            "b.jsonl",
            "{\"question\": \"Q?\", \"rationale\": \"R.\", \"answer\": \"no\"}\n\n{\"question\": \"Q3?\", \"rationale\": \"S\", \"answer\": \"yes\"}\n",
        );
        let ex = load_examples(&p).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[1].id, "line 3");
    }

    #[test]
    fn bad_records_name_file_record_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "{\"question\": \"Q?\", \"rationale\": \"R\"}\n",
                "record line 1: field `answer`: missing",
            ),
            (
                "{\"question\": \"\", \"rationale\": \"R\", \"answer\": \"no\"}\n",
                "field `question`: empty",
            ),
            (
                "{\"question\": \"Q?\", \"rationale\": 3, \"answer\": \"no\"}\n",
                "field `rationale`: expected a string, found a number",
            ),
            (
                "{\"question\": \"Q?\", \"rationale\": \"R\", \"answer\": \"no\", \"x\": 1}\n",
                "field `x`: unknown field",
            ),
            (
                "{\"question\": \"Q? (A) a (B) b\", \"rationale\": \"R\", \"answer\": \"(C)\"}\n",
                "field `answer`: \"(C)\" is not one of the question's choices ((A), (B))",
            ),
            (
                "{\"question\": \"Q?\", \"rationale\": \"R\", \"answer\": \"no\"}\n{oops\n",
                "line 2: not valid JSON",
            ),
            (
                r#"{"0": {"question": "Q?", "rationale": "R", "answer": "maybe"}}"#,
                "record 0: field `answer`",
            ),
            ("\n", "no records"),
        ];
        for (text, want) in cases {
            let p = write(dir.path(), "bad.jsonl", text);
            let msg = load_examples(&p).unwrap_err().to_string();
            assert!(msg.contains("bad.jsonl"), "{msg}");
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn teacher_records_are_strict_too() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.jsonl",
            r#"{"0": {"question": "Q?", "gold_label": "no", "predicted_label": "", "predicted_rationale": ""}}"#,
        );
        assert_eq!(load_teacher(&p).unwrap()[0].predicted_label, "");
        let p = write(
            dir.path(),
            "t2.jsonl",
            r#"{"0": {"question": "Q?", "gold_label": "no", "predicted_label": "no"}}"#,
        );
        let msg = load_teacher(&p).unwrap_err().to_string();
        assert!(
            msg.contains("field `predicted_rationale`: missing"),
            "{msg}"
        );
    }

    #[test]
    fn duplicates_are_counted() {
        let ex = |id: &str, q: &str, r: &str, a: &str| Example {
            id: id.into(),
            question: q.into(),
            rationale: Some(r.into()),
            answer: a.into(),
        };
        let rows = vec![
            ex("0", "Q1", "r", "yes"),
            ex("1", "Q1", "r", "yes"),
            ex("2", "Q1", "s", "yes"),
            ex("3", "Q2", "r", "no"),
            ex("4", "Q2", "t", "yes"),
            ex("5", "Q3", "r", "no"),
        ];
        let rep = duplicate_report(&rows);
        assert_eq!(rep.records, 6);
        assert_eq!(rep.unique_questions, 3);
        assert_eq!(rep.repeated_questions, 2);
        assert_eq!(rep.exact_duplicates, 1);
        assert_eq!(rep.conflicting_count, 1);
        assert_eq!(rep.conflicting_answers["Q2"], vec!["3", "4"]);
    }
}
