//! What keeps a browser page from using a local server: the `Host` check against DNS rebinding,
//! the JSON content-type rule against cross-site form posts, and the API-key sanity checks.
//!
//! A web page can make a browser POST to `http://127.0.0.1:8080` with a "simple" content type
//! (`text/plain`, forms, multipart) without a CORS preflight, and a page on a domain that the
//! attacker re-points at 127.0.0.1 (DNS rebinding) can even read the answers. Two rules close
//! both, as local model servers that browsers can reach must:
//! - JSON routes take only `application/json` (or `application/*+json`) bodies: 415 otherwise.
//!   A browser cannot send that type cross-site without a preflight, which this server never
//!   approves (it sends no CORS headers).
//! - Without an API key, the `Host` header must name this machine: `localhost` (and
//!   `*.localhost`), an IP address literal, or a name in `--allowed-hosts` (`*` allows any).
//!   A rebinding page's requests carry the attacker's domain and are refused with 403. With an
//!   API key the key is the guard, and every `Host` is accepted.

use crate::error::ApiError;
use axum::http::{header, HeaderMap};
use std::net::IpAddr;

/// Refuse an API key that would not do what its user meant: an empty key (it would turn auth
/// off) and one with surrounding whitespace (a client's trimmed key could never match).
pub fn check_api_key(key: &str, source: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(format!(
            "{source} is empty; give a key, or leave it unset to serve without one"
        ));
    }
    if key.trim() != key {
        return Err(format!(
            "{source} has leading or trailing whitespace, which clients never send; remove it"
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{source} holds control characters, which cannot travel in an HTTP header"
        ));
    }
    Ok(())
}

/// Whether `host` (a `Host` header value, with or without a port) names this machine or is
/// in `allowed`.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host).to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == "*"
            || a == name
            || a.strip_prefix("*.")
                .is_some_and(|suffix| name.ends_with(&format!(".{suffix}")))
    })
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Require a JSON content type on a JSON body: 415 for anything else (form, multipart,
/// `text/plain`: what a cross-site page can send without a preflight).
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let essence = given
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json {
        return Ok(());
    }
    Err(ApiError::unsupported_media_type(match given {
        Some(t) => format!(
            "the request body must be JSON sent as 'Content-Type: application/json', not '{t}'"
        ),
        None => "the request has no Content-Type; send 'Content-Type: application/json' \
                 (curl: -H 'Content-Type: application/json')"
            .to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hosts_of_this_machine_pass_and_others_need_a_list() {
        let none: Vec<String> = vec![];
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST.",
            "app.localhost:1",
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[::1]",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "[::1",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        let list = vec!["models.lan".to_string(), "*.corp.example".to_string()];
        assert!(host_allowed("models.lan:8080", &list));
        assert!(host_allowed("a.corp.example", &list));
        assert!(!host_allowed("corp.example.evil", &list));
        assert!(host_allowed("anything", &["*".to_string()]));
    }

    #[test]
    fn only_json_content_types_pass() {
        let mut h = HeaderMap::new();
        assert_eq!(require_json(&h).unwrap_err().status.as_u16(), 415);
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(require_json(&h).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "text/json+plain",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert_eq!(require_json(&h).unwrap_err().status.as_u16(), 415, "{bad}");
        }
    }

    #[test]
    fn api_keys_that_would_mislead_are_refused() {
        assert!(check_api_key("sk-123", "--api-key").is_ok());
        assert!(check_api_key("", "--api-key")
            .unwrap_err()
            .contains("empty"));
        assert!(check_api_key(" sk ", "LMRS_API_KEY")
            .unwrap_err()
            .contains("whitespace"));
        assert!(check_api_key("a\nb", "--api-key").is_err());
    }
}
