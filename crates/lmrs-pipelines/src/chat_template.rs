//! Chat templates: the Jinja text a chat model ships (`chat_template` in `tokenizer_config.json`,
//! or `tokenizer.chat_template` in a GGUF) rendered as `transformers`' `apply_chat_template(messages,
//! tokenize=False, add_generation_prompt=...)` does.
//!
//! `transformers` (`utils/chat_template_utils.py`) renders with Jinja2 in a sandbox with
//! `trim_blocks` and `lstrip_blocks`, loop controls, and a few additions this module reproduces on
//! minijinja:
//! - `raise_exception(message)` aborts the render ([`PipelineError::ChatTemplateRaised`] carries the
//!   message);
//! - `strftime_now(format)`: the local time, formatted like Python's `strftime`;
//! - `tojson`: Python's `json.dumps` (no HTML escaping, `ensure_ascii=False`, with `indent`,
//!   `separators` and `sort_keys`);
//! - Python string, list and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`...)
//!   through `minijinja-contrib`'s `pycompat`;
//! - `None`, `True` and `False` print as Python spells them;
//! - `{% generation %}` blocks (transformers' assistant-mask extension) render their body.
//!
//! The template sees `messages`, `add_generation_prompt`, `bos_token` / `eos_token` when known,
//! and `tools` / `documents` as `none`.

use crate::{PipelineError, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// The name the template is registered under (no extension, so nothing is auto-escaped).
const NAME: &str = "chat_template";

/// Most template instructions one render may run. Templates come with downloaded models, so a
/// nested loop must end in an error rather than hang a chat or a server thread. Real templates
/// spend about a hundred instructions per message (SmolLM2's: ~60); this allows conversations of
/// tens of thousands of turns and stops a runaway template in well under a second.
pub const TEMPLATE_FUEL: u64 = 5_000_000;

/// One turn of a conversation, as `transformers` chat templates read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`... (whatever the template accepts).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A message with this role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the special tokens it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    /// `source`: the Jinja text (tokenizer_config.json `chat_template`, or GGUF
    /// `tokenizer.chat_template`). bos/eos token strings are passed to the template as
    /// `bos_token`/`eos_token`.
    ///
    /// A template that does not compile is a [`PipelineError::ChatTemplate`] naming the line.
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| PipelineError::ChatTemplate(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, rewrite_generation_tags(source).into_owned())
            .map_err(|e| PipelineError::ChatTemplate(describe(&e)))?;
        Ok(Self {
            env,
            source: source.to_string(),
            bos_token: bos_token.map(str::to_string),
            eos_token: eos_token.map(str::to_string),
        })
    }

    /// Render like transformers' `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    ///
    /// A template that calls `raise_exception` is a [`PipelineError::ChatTemplateRaised`] with its
    /// message; any other failure a [`PipelineError::ChatTemplate`].
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut ctx: Vec<(&str, Value)> = vec![
            ("messages", Value::from(Serde(messages))),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ];
        // `transformers` passes the special tokens it has; an unset one stays undefined.
        if let Some(bos) = &self.bos_token {
            ctx.push(("bos_token", Value::from(bos.as_str())));
        }
        if let Some(eos) = &self.eos_token {
            ctx.push(("eos_token", Value::from(eos.as_str())));
        }
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| PipelineError::ChatTemplate(describe(&e)))?;
        template
            .render(Value::from_pairs(ctx))
            .map_err(render_error)
    }

    /// Read `chat_template` from a tokenizer_config.json value (string form, or the
    /// list-of-{name, template} form: pick "default"). `Ok(None)` when there is none; the
    /// config's `bos_token` / `eos_token` (strings or `{"content": ...}` objects) come along.
    pub fn from_tokenizer_config(cfg: &serde_json::Value) -> Result<Option<Self>> {
        let source = match cfg.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.as_str(),
            Some(serde_json::Value::Array(entries)) => {
                let default = entries.iter().find(|e| e["name"] == "default");
                match default.and_then(|e| e["template"].as_str()) {
                    Some(s) => s,
                    None => {
                        let names: Vec<&str> =
                            entries.iter().filter_map(|e| e["name"].as_str()).collect();
                        return Err(PipelineError::ChatTemplate(format!(
                            "tokenizer_config.json has several chat templates ({}) and none named 'default'",
                            names.join(", ")
                        )));
                    }
                }
            }
            Some(other) => {
                return Err(PipelineError::ChatTemplate(format!(
                    "tokenizer_config.json 'chat_template' is neither a string nor a list of {{name, template}}: {other}"
                )))
            }
        };
        let token = |key: &str| match cfg.get(key) {
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(serde_json::Value::Object(o)) => o.get("content").and_then(|c| c.as_str()),
            _ => None,
        };
        Self::new(source, token("bos_token"), token("eos_token")).map(Some)
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The error `raise_exception` returns, found again in the render error's source chain.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

fn render_error(e: Error) -> PipelineError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<Raised>() {
            return PipelineError::ChatTemplateRaised(raised.0.clone());
        }
        source = err.source();
    }
    PipelineError::ChatTemplate(describe(&e))
}

/// The error with its causes, e.g. `syntax error: unexpected end of input (in chat_template:3)`.
fn describe(e: &Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        let _ = write!(out, ": {err}");
        source = err.source();
    }
    out
}

/// Python's `datetime.now().strftime(format)`.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(out)
}

/// Jinja2 prints values as Python's `str()` does: `None`, `True`, `False`, floats like `repr`,
/// lists and dicts in Python syntax (`['a', 1]`, `{'role': 'user'}`).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> std::result::Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            py_repr(&mut s, value)?;
            out.write_str(&s).map_err(Error::from)
        }
        ValueKind::Number if !value.is_integer() => out
            .write_str(&py_float_repr(f64::try_from(value.clone())?))
            .map_err(Error::from),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `repr()` of a template value (`str()` of a container shows its items this way).
fn py_repr(out: &mut String, value: &Value) -> std::result::Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
        ValueKind::Number => out.push_str(&py_float_repr(f64::try_from(value.clone())?)),
        ValueKind::String => py_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let tuple = value.is_tuple();
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push(if tuple { '(' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, item)?;
            }
            if tuple && items.len() == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key)?;
                out.push_str(": ");
                py_repr(out, &value.get_item(&key)?)?;
            }
            out.push('}');
        }
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

/// Python's `repr(str)`: single quotes unless the text has one and no double quote; escapes
/// for backslash, the quote, `\t \n \r`, and characters Python does not consider printable
/// (controls, separators other than the space, format characters).
fn py_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' ' => out.push(' '),
            c if c.is_control()
                || c.is_whitespace()
                || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                    | '\u{2060}'..='\u{2064}' | '\u{feff}') =>
            {
                let code = c as u32;
                let _ = match code {
                    0..=0xff => write!(out, "\\x{code:02x}"),
                    0x100..=0xffff => write!(out, "\\u{code:04x}"),
                    _ => write!(out, "\\U{code:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// `{% generation %}` ... `{% endgeneration %}` (transformers' assistant-token tracker) as a
/// block that always renders, keeping the tags' whitespace control.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("%}") else {
            break;
        };
        let inner = &after[..end];
        // Strip the whitespace-control marks one after the other: in `{%-%}` the one `-` is
        // both the leading and the trailing character, and must not be cut twice.
        let body = inner.strip_prefix(['-', '+']).unwrap_or(inner);
        let lead = &inner[..inner.len() - body.len()];
        let core = body.strip_suffix(['-', '+']).unwrap_or(body);
        let trail = &body[core.len()..];
        let word = core.trim();
        out.push_str(&rest[..start]);
        match word {
            "generation" => write_tag(&mut out, lead, "if true", trail),
            "endgeneration" => write_tag(&mut out, lead, "endif", trail),
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn write_tag(out: &mut String, lead: &str, body: &str, trail: &str) {
    let _ = write!(out, "{{%{lead} {body} {trail}%}}");
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// i.e. Python's `json.dumps` with those arguments.
fn tojson(value: &Value, args: &[Value], kwargs: Kwargs) -> std::result::Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let mut opts: [Option<Value>; 4] = Default::default();
    for (slot, arg) in opts.iter_mut().zip(args) {
        *slot = Some(arg.clone());
    }
    for (slot, name) in opts.iter_mut().zip(NAMES) {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            *slot = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = opts;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(v.as_usize().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an int or a string",
                )
            })?),
        }),
    };
    // Python's defaults: (', ', ': ') compact, (',', ': ') when indenting.
    let (item_sep, key_sep) = match separators.filter(|v| !v.is_none()) {
        Some(v) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (
                    a.as_str().unwrap_or_default().to_string(),
                    b.as_str().unwrap_or_default().to_string(),
                ),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        ensure_ascii: ensure_ascii.is_some_and(|v| v.is_true()),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.is_some_and(|v| v.is_true()),
    };
    let mut out = String::new();
    style.write(&mut out, value, 0)?;
    Ok(Value::from(out))
}

struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(
        &self,
        out: &mut String,
        value: &Value,
        level: usize,
    ) -> std::result::Result<(), Error> {
        match value.kind() {
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => out.push_str(&value.to_string()),
            ValueKind::Number => out.push_str(&py_float_repr(f64::try_from(value.clone())?)),
            ValueKind::String => self.write_str(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.write_container(out, '[', ']', level, &items, |out, item, level| {
                    self.write(out, item, level)
                })?;
            }
            ValueKind::Map => {
                let mut entries: Vec<(String, Value)> = value
                    .try_iter()?
                    .map(|k| Ok((json_key(&k)?, value.get_item(&k)?)))
                    .collect::<std::result::Result<_, Error>>()?;
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(out, '{', '}', level, &entries, |out, (k, v), level| {
                    self.write_str(out, k);
                    out.push_str(&self.key_sep);
                    self.write(out, v, level)
                })?;
            }
            kind => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: a value of type {kind} is not JSON serializable"),
                ))
            }
        }
        Ok(())
    }

    fn write_container<T>(
        &self,
        out: &mut String,
        open: char,
        close: char,
        level: usize,
        items: &[T],
        mut write_item: impl FnMut(&mut String, &T, usize) -> std::result::Result<(), Error>,
    ) -> std::result::Result<(), Error> {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                for _ in 0..level {
                    out.push_str(indent);
                }
            }
        };
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, level + 1);
            write_item(out, item, level + 1)?;
        }
        newline(out, level);
        out.push(close);
        Ok(())
    }

    fn write_str(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `json.dumps` turns str, int, float, bool and None keys into strings.
fn json_key(key: &Value) -> std::result::Result<String, Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::Number if key.is_integer() => key.to_string(),
        ValueKind::Number => py_float_repr(f64::try_from(key.clone())?),
        ValueKind::Bool => (if key.is_true() { "true" } else { "false" }).to_string(),
        ValueKind::None => "null".to_string(),
        kind => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {kind}"),
            ))
        }
    })
}

/// Python's `repr(float)` (which `json.dumps` uses): the shortest round-trip digits, positional
/// for exponents -4..16, else `1e+16` style.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.to_string();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let body = if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() > point {
                format!("{}.{}", &digits[..point], &digits[point..])
            } else {
                format!("{}{}.0", digits, "0".repeat(point - digits.len()))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (1.5e-5, "1.5e-05"),
            (1e-300, "1e-300"),
            (-0.0, "-0.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn templates_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<ChatTemplate>();
    }

    #[test]
    fn a_tag_of_one_whitespace_mark_is_no_generation_tag() {
        // Found by the chat_template fuzz target: `{%-%}` in a template that mentions
        // "generation" sliced `inner[1..0]` and panicked.
        for src in [
            "generation{%-%}",
            "{%+%}generation",
            "{%-%}{%generation%}{%endgeneration%}",
        ] {
            let out = rewrite_generation_tags(src);
            assert!(out.contains("{%-%}") || out.contains("{%+%}"), "{out}");
        }
        assert!(ChatTemplate::new("generation {%-%}", None, None).is_err());
    }

    #[test]
    fn generation_tags_become_plain_blocks() {
        let src = "a{%- generation -%}b{% endgeneration %}c{% if x %}{% endif %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "a{%- if true -%}b{% endif %}c{% if x %}{% endif %}"
        );
    }
}
