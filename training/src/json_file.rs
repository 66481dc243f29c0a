//! Whole JSON files (states, settings, a world): read when present, written atomically. JSON
//! Lines files have their own module ([`crate::jsonl`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads `path` as a `T`; `Ok(None)` when there is no such file, and an error naming the file
/// and `what` it should have been when it does not parse.
pub fn read_if_exists<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{}: not {what}", path.display()))
}

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename, so that a
/// reader (or a resumed run) sees the old state or the new one, never half of one.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    replace_file(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Replaces `path` with `contents` through `<path>.tmp` and a rename (any file, JSON Lines
/// included: [`crate::jsonl::write`] goes through here).
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_written_whole_read_back_and_named_when_it_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let read = |p: &Path| read_if_exists::<serde_json::Value>(p, "a state file");
        assert!(read(&path).unwrap().is_none());
        write_atomic(&path, &serde_json::json!({"step": 1})).unwrap();
        write_atomic(&path, &serde_json::json!({"step": 2})).unwrap();
        assert_eq!(read(&path).unwrap().unwrap()["step"], 2);
        assert!(!dir.path().join("state.json.tmp").exists());
        std::fs::write(&path, "{").unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("state.json: not a state file"), "{e}");
    }
}
