//! Reading the documents to process: positional texts, a file, or stdin.

use crate::args::InputArgs;
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Read};
use std::path::Path;

/// The documents to process, in order.
pub fn documents(texts: &[String], io: &InputArgs) -> Result<Vec<String>> {
    if !texts.is_empty() {
        if io.input.is_some() {
            bail!("give texts as arguments or with --input, not both");
        }
        return Ok(texts.to_vec());
    }
    let (bytes, name, jsonl) = match io.input.as_deref() {
        Some(p) if p != Path::new("-") => {
            let bytes = std::fs::read(p)
                .with_context(|| format!("cannot read input file {}", p.display()))?;
            let ext_jsonl = matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("jsonl" | "json")
            );
            (bytes, p.display().to_string(), io.jsonl || ext_jsonl)
        }
        _ => {
            let stdin = std::io::stdin();
            if io.input.is_none() && stdin.is_terminal() {
                bail!("no input: give texts as arguments, --input FILE, or pipe text to stdin");
            }
            let mut bytes = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            (bytes, "stdin".to_string(), io.jsonl)
        }
    };
    let docs = parse_lines(&bytes, &name, jsonl, &io.field)?;
    if docs.is_empty() {
        bail!("no input: {name} holds no documents");
    }
    Ok(docs)
}

/// One document per non-blank line; JSON Lines take `field` from each object. Errors name the
/// line (1-based).
fn parse_lines(bytes: &[u8], name: &str, jsonl: bool, field: &str) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = std::str::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("{name}, line {line_no}: invalid UTF-8 ({e})"))?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{name}, line {line_no}: invalid JSON"))?;
            let text = value
                .get(field)
                .with_context(|| format!("{name}, line {line_no}: no field '{field}'"))?
                .as_str()
                .with_context(|| {
                    format!("{name}, line {line_no}: field '{field}' is not a string")
                })?;
            docs.push(text.to_string());
        } else {
            docs.push(line.to_string());
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::parse_lines;

    #[test]
    fn plain_lines_skip_blank_and_strip_cr() {
        let docs = parse_lines(b"one\r\n\n two \nthree", "f", false, "text").unwrap();
        assert_eq!(docs, vec!["one", " two ", "three"]);
    }

    #[test]
    fn jsonl_field_and_errors_name_the_line() {
        let docs = parse_lines(b"{\"t\": \"a\"}\n{\"t\": \"b\"}\n", "f", true, "t").unwrap();
        assert_eq!(docs, vec!["a", "b"]);
        let err = parse_lines(b"{\"t\": \"a\"}\n{\"x\": 1}\n", "f", true, "t").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse_lines(b"ok\n\xff\xfe\n", "f", false, "t").unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("UTF-8"),
            "{err}"
        );
    }
}
