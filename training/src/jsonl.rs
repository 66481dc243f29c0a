//! JSON Lines files: every log, pool, per-question score file and resume record of the
//! training crate is read and appended here, so a bad line is always an error naming the file
//! and the line (never skipped in silence) and an append is always one whole line.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Every non-empty line of `path` as a `T`; a line that does not parse is an error naming the
/// file and the line (1-based).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(path, &text)
}

/// Like [`read`], but a missing file is an empty list.
pub fn read_if_exists<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    if path.is_file() {
        read(path)
    } else {
        Ok(Vec::new())
    }
}

/// The lines of `text` (the contents of `path`) as `T`s.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {}: not a valid record", path.display(), i + 1))
        })
        .collect()
}

/// One JSON line per record.
fn lines<T: Serialize>(records: &[T]) -> Result<String> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    Ok(text)
}

/// Appends one line per record to `path` (created if missing).
pub fn append<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(lines(records)?.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Appends one record.
pub fn append_one<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    append(path, std::slice::from_ref(record))
}

/// Replaces `path` with the records (written to a temporary file, then renamed).
pub fn write<T: Serialize>(path: &Path, records: &[T]) -> Result<()> {
    crate::json_file::replace_file(path, lines(records)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        assert!(read_if_exists::<u32>(&p).unwrap().is_empty());
        append(&p, &[1u32, 2]).unwrap();
        append_one(&p, &3u32).unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), vec![1, 2, 3]);
        write(&p, &[7u32]).unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), vec![7]);
        std::fs::write(&p, "1\n\n{\"a\": 1}\n").unwrap();
        let msg = format!("{:#}", read::<u32>(&p).unwrap_err());
        assert!(msg.contains("x.jsonl: line 3"), "{msg}");
    }
}
