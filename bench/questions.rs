//! The question files the bench clients (`server_load/load.rs`, `chaos/chaos.rs`) read: a JSON
//! object keyed by row number, a JSON array, or JSON lines; the records in order.

use serde_json::Value;

/// The records of a question file, in row order.
pub fn read_records(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("questions file");
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            let mut rows: Vec<(u64, Value)> = map
                .into_iter()
                .map(|(k, v)| (k.parse().unwrap_or(u64::MAX), v))
                .collect();
            rows.sort_by_key(|r| r.0);
            rows.into_iter().map(|r| r.1).collect()
        }
        Ok(Value::Array(a)) => a,
        _ => text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    }
}
