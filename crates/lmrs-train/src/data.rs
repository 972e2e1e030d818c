//! Training data: JSON Lines or CSV files, one example per line or row, fields by name.
//!
//! Every error names the file and the line (CSV: the line the record starts on). A dataset
//! with no examples is an error, not an empty run.

use crate::{Result, TrainError};
use lmrs_pipelines::ChatMessage;
use serde_json::Value;
use std::path::Path;

/// One record: its fields and the line it came from.
#[derive(Debug, Clone)]
pub struct Record {
    pub line: usize,
    pub fields: serde_json::Map<String, Value>,
}

/// The records of a file, with the name used in messages.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub records: Vec<Record>,
}

impl Dataset {
    /// Read `path`: CSV for `.csv`, JSON Lines otherwise (`.jsonl`, `.json`).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(crate::error::file_err(path))?;
        let name = path.display().to_string();
        let csv = path.extension().and_then(|e| e.to_str()) == Some("csv");
        let records = if csv {
            parse_csv(&bytes, &name)?
        } else {
            parse_jsonl(&bytes, &name)?
        };
        if records.is_empty() {
            return Err(TrainError::Data {
                file: name,
                line: 0,
                message: "the dataset has no examples".into(),
            });
        }
        Ok(Self { name, records })
    }

    /// The text in `field` of every record: a string (numbers and booleans as their JSON
    /// text, for labels).
    pub fn texts(&self, field: &str) -> Result<Vec<String>> {
        self.records
            .iter()
            .map(|r| text_field(&self.name, r, field))
            .collect()
    }

    /// `true` when the first record's `field` is a list: conversational data (a list of
    /// `{"role", "content"}` messages, TRL's conversational format).
    pub fn is_conversational(&self, field: &str) -> bool {
        self.records
            .first()
            .is_some_and(|r| matches!(r.fields.get(field), Some(Value::Array(_))))
    }

    /// `true` when the first record has `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.records
            .first()
            .is_some_and(|r| r.fields.contains_key(field))
    }

    /// The conversation in `field` of every record: a non-empty list of
    /// `{"role": ..., "content": ...}` objects with string values.
    pub fn messages(&self, field: &str) -> Result<Vec<Vec<ChatMessage>>> {
        self.records
            .iter()
            .map(|r| messages_field(&self.name, r, field))
            .collect()
    }

    /// Split off a seeded `ratio` of the records (at least one) as a validation set.
    pub fn split(mut self, ratio: f64, seed: u64) -> Result<(Self, Self)> {
        if !(ratio > 0.0 && ratio < 1.0) {
            return Err(TrainError::Args(format!(
                "--validation-split {ratio}: give a fraction in (0, 1)"
            )));
        }
        let n = self.records.len();
        let k = ((n as f64 * ratio).round() as usize).max(1);
        if k >= n {
            return Err(TrainError::Args(format!(
                "--validation-split {ratio} of {n} examples leaves none to train on"
            )));
        }
        let order = crate::order::permutation(n, seed);
        let mut records: Vec<Option<Record>> = self.records.drain(..).map(Some).collect();
        let take = |idx: &[usize], records: &mut Vec<Option<Record>>| -> Vec<Record> {
            let mut picked: Vec<usize> = idx.to_vec();
            picked.sort_unstable();
            picked.iter().filter_map(|&i| records[i].take()).collect()
        };
        let val = take(&order[..k], &mut records);
        let train = take(&order[k..], &mut records);
        let name = self.name.clone();
        Ok((
            Self {
                name: name.clone(),
                records: train,
            },
            Self {
                name: format!("{name} (validation split)"),
                records: val,
            },
        ))
    }
}

fn text_field(file: &str, r: &Record, field: &str) -> Result<String> {
    let err = |message: String| TrainError::Data {
        file: file.to_string(),
        line: r.line,
        message,
    };
    match r.fields.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(other) => Err(err(format!(
            "field '{field}' is {}, not a string",
            kind(other)
        ))),
        None => {
            let mut have: Vec<&str> = r.fields.keys().map(String::as_str).collect();
            have.sort_unstable();
            Err(err(format!(
                "no field '{field}' (the record has: {})",
                have.join(", ")
            )))
        }
    }
}

fn messages_field(file: &str, r: &Record, field: &str) -> Result<Vec<ChatMessage>> {
    let err = |message: String| TrainError::Data {
        file: file.to_string(),
        line: r.line,
        message,
    };
    let list = match r.fields.get(field) {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err(err(format!("field '{field}' is an empty list"))),
        Some(other) => {
            return Err(err(format!(
                "field '{field}' is {}, not a list of messages (the first record's is)",
                kind(other)
            )))
        }
        None => return Err(err(format!("no field '{field}'"))),
    };
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let text = |key: &str| match m.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(err(format!(
                    "message {i} of '{field}': '{key}' is {}, not a string",
                    kind(v)
                ))),
                None => Err(err(format!(
                    "message {i} of '{field}' has no '{key}' (messages are {{\"role\": ..., \"content\": ...}})"
                ))),
            };
            Ok(ChatMessage::new(text("role")?, text("content")?))
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn parse_jsonl(bytes: &[u8], name: &str) -> Result<Vec<Record>> {
    let err = |line: usize, message: String| TrainError::Data {
        file: name.to_string(),
        line,
        message,
    };
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text =
            std::str::from_utf8(raw).map_err(|e| err(line, format!("invalid UTF-8 ({e})")))?;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => out.push(Record { line, fields }),
            Ok(other) => {
                return Err(err(
                    line,
                    format!("{} where a JSON object is expected", kind(&other)),
                ))
            }
            Err(e) => return Err(err(line, format!("invalid JSON ({e})"))),
        }
    }
    Ok(out)
}

fn parse_csv(bytes: &[u8], name: &str) -> Result<Vec<Record>> {
    let err = |line: usize, message: String| TrainError::Data {
        file: name.to_string(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| err(1, format!("unreadable header ({e})")))?
        .clone();
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            err(line, format!("{e}"))
        })?;
        let line = row.position().map(|p| p.line() as usize).unwrap_or(0);
        let fields = headers
            .iter()
            .zip(row.iter())
            .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
            .collect();
        out.push(Record { line, fields });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv_read_with_line_numbers_in_errors() -> Result<()> {
        let dir = tempfile::tempdir().map_err(crate::error::file_err("tmp"))?;
        let j = dir.path().join("d.jsonl");
        std::fs::write(&j, "{\"a\": \"x\", \"n\": 3}\n\n{\"a\": [1]}\n")
            .map_err(crate::error::file_err(&j))?;
        let d = Dataset::read(&j)?;
        assert_eq!(d.records.len(), 2);
        let e = d
            .texts("n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("d.jsonl:3: no field 'n'"), "{e}");
        let e = d
            .texts("a")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("d.jsonl:3: field 'a' is a list"), "{e}");
        let c = dir.path().join("d.csv");
        std::fs::write(&c, "text,label\n\"one, two\",pos\n\"multi\nline\",neg\n")
            .map_err(crate::error::file_err(&c))?;
        let d = Dataset::read(&c)?;
        assert_eq!(d.texts("text")?, vec!["one, two", "multi\nline"]);
        assert_eq!(d.records[1].line, 3);
        let e = d
            .texts("labels")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains(":2: no field 'labels' (the record has: label, text)"),
            "{e}"
        );
        let empty = dir.path().join("e.jsonl");
        std::fs::write(&empty, "\n").map_err(crate::error::file_err(&empty))?;
        assert!(Dataset::read(&empty).is_err());
        Ok(())
    }
}
