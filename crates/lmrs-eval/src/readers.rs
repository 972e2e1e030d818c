//! Reading predictions, references and datasets: plain text (one item per line) or JSON Lines
//! (one object per line, the item in a named field).
//!
//! Plain text: every line is one item, blank lines included (an empty prediction is a valid
//! prediction); a final newline does not start another item; `\r\n` endings are accepted. A
//! text that spans lines (ROUGE-Lsum's sentence per line) needs JSON Lines.
//!
//! JSON Lines: blank lines are skipped. A field holding a string is the item; a number or a
//! boolean is taken as its JSON text (class labels such as `1` or `true`); an array of strings
//! is several references for one example. Every error names the file and the line.

use crate::{EvalError, Result};
use serde_json::Value;
use std::path::Path;

/// How a file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One item per line.
    Lines,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// JSON Lines for `.jsonl` and `.json` files, plain lines otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json") => Self::JsonLines,
            _ => Self::Lines,
        }
    }
}

/// One example's texts: a single one, or several references.
pub type Item = Vec<String>;

/// Read `path` (`-`: stdin) as `format`, taking `field` from JSON objects.
pub fn read_items(path: &Path, format: Format, field: &str) -> Result<Vec<Item>> {
    let (bytes, name) = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf).map_err(|source| {
            EvalError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        (buf, "stdin".to_string())
    } else {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        (bytes, path.display().to_string())
    };
    parse_items(&bytes, &name, format, field)
}

/// Parse file contents (`name` only labels errors).
pub fn parse_items(bytes: &[u8], name: &str, format: Format, field: &str) -> Result<Vec<Item>> {
    let err = |line: usize, message: String| EvalError::Line {
        file: name.to_string(),
        line,
        message,
    };
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line =
            std::str::from_utf8(raw).map_err(|e| err(line_no, format!("invalid UTF-8 ({e})")))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        match format {
            Format::Lines => items.push(vec![line.to_string()]),
            Format::JsonLines => {
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(line)
                    .map_err(|e| err(line_no, format!("invalid JSON ({e})")))?;
                let Some(obj) = value.as_object() else {
                    return Err(err(line_no, "not a JSON object".into()));
                };
                let v = obj
                    .get(field)
                    .ok_or_else(|| err(line_no, format!("no field '{field}'")))?;
                items.push(item(v).ok_or_else(|| {
                    err(
                        line_no,
                        format!(
                            "field '{field}' is not a string, number, boolean or list of strings"
                        ),
                    )
                })?);
            }
        }
    }
    Ok(items)
}

fn item(v: &Value) -> Option<Item> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Number(_) | Value::Bool(_) => Some(vec![v.to_string()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>(),
        _ => None,
    }
}

/// One text per item; names the first item (1-based) that holds several.
pub fn single(items: Vec<Item>, name: &str) -> Result<Vec<String>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut it)| {
            if it.len() == 1 {
                Ok(it.remove(0))
            } else {
                Err(EvalError::Line {
                    file: name.to_string(),
                    line: i + 1,
                    message: format!("{} texts where one is expected", it.len()),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_blank_items_and_drop_the_final_newline() {
        let items = parse_items(b"a\r\n\nb\n", "f", Format::Lines, "x").unwrap();
        assert_eq!(items, vec![vec!["a"], vec![""], vec!["b"]]);
        assert!(parse_items(b"", "f", Format::Lines, "x")
            .unwrap()
            .is_empty());
        assert_eq!(
            parse_items(b"\n", "f", Format::Lines, "x").unwrap(),
            vec![vec![""]]
        );
    }

    #[test]
    fn jsonl_fields_numbers_and_lists() {
        let data = b"{\"y\": \"s\"}\n\n{\"y\": 3}\n{\"y\": [\"a\", \"b\"]}\n";
        let items = parse_items(data, "f", Format::JsonLines, "y").unwrap();
        assert_eq!(items, vec![vec!["s"], vec!["3"], vec!["a", "b"]]);
        let e = single(items, "f").unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        for (data, needle) in [
            (&b"{\"y\": 1}\n{\"z\": 1}\n"[..], "line 2: no field 'y'"),
            (b"{\"y\": 1}\nnot json\n", "line 2: invalid JSON"),
            (b"{\"y\": null}\n", "line 1: field 'y'"),
            (b"[1]\n", "line 1: not a JSON object"),
        ] {
            let e = parse_items(data, "data.jsonl", Format::JsonLines, "y")
                .unwrap_err()
                .to_string();
            assert!(e.contains("data.jsonl") && e.contains(needle), "{e}");
        }
        let e = parse_items(b"ok\n\xff\n", "t.txt", Format::Lines, "y").unwrap_err();
        assert!(
            e.to_string().contains("t.txt, line 2: invalid UTF-8"),
            "{e}"
        );
    }
}
