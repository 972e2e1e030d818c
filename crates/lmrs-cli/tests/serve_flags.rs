//! `lmrs serve` refuses options that would leave it open or unusable before it loads anything,
//! and caps model threads at the cores (issue 12's reproducers for the server's flags).

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn serve(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = lmrs();
    cmd.env_remove("LMRS_API_KEY").arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_empty_or_padded_api_key_is_refused_not_ignored() {
    let llama = fixture("llama-tiny");
    let m = llama.to_str().unwrap();
    let (code, err) = serve(&["--model", m, "--port", "0", "--api-key", ""], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--api-key is empty"), "{err}");
    let (code, err) = serve(&["--model", m, "--port", "0"], &[("LMRS_API_KEY", "")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("LMRS_API_KEY is empty"), "{err}");
    let (code, err) = serve(&["--model", m, "--port", "0", "--api-key", " key "], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("whitespace"), "{err}");
}

#[test]
fn zero_limits_are_refused_by_the_parser() {
    for flag in [
        "--max-body-bytes",
        "--workers",
        "--max-connections",
        "--max-input-bytes",
    ] {
        let (code, err) = serve(&["--model", "x", flag, "0"], &[]);
        assert_eq!(code, Some(2), "{flag}: {err}");
        assert!(err.contains("must be at least 1"), "{flag}: {err}");
    }
    for flag in ["--header-timeout", "--body-timeout"] {
        let llama = fixture("llama-tiny");
        let (code, err) = serve(&["--model", llama.to_str().unwrap(), flag, "0"], &[]);
        assert_eq!(code, Some(1), "{flag}: {err}");
        assert!(err.contains("positive number of seconds"), "{flag}: {err}");
    }
}

#[test]
fn workers_beyond_the_cores_are_capped_with_a_warning() {
    let llama = fixture("llama-tiny");
    let bin = assert_cmd::cargo::cargo_bin("lmrs");
    let mut child = Command::new(bin)
        .args(["serve", "--model", llama.to_str().unwrap(), "--port", "0"])
        .args(["--workers", "100000"])
        .env_remove("LMRS_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let warned = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("--workers 100000 is more than the"))
            .is_some()
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    let mut line = String::new();
    let mut listening = false;
    while started.elapsed() < Duration::from_secs(60) {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains("listening on http://") {
            listening = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "the server did not start: {line}");
    assert!(warned.join().unwrap());
}
