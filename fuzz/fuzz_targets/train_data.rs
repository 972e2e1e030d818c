//! `lmrs train`'s parsers: datasets (JSON Lines, CSV) read, fields taken, a validation split
//! drawn, and `--config` TrainingArguments JSON read and validated. The first byte picks the
//! parser (0: JSON Lines, 1: CSV, else TrainingArguments); the rest is the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lmrs_train::data::Dataset;
use lmrs_train::TrainingArguments;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind {
        0 | 1 => {
            let name = if kind == 0 { "data.jsonl" } else { "data.csv" };
            let path = lmrs_fuzz::scratch_file(name, body);
            let Ok(d) = Dataset::read(&path) else {
                return;
            };
            for field in ["document", "summary", "label", "text", ""] {
                let _ = d.texts(field);
            }
            let _ = d.clone().split(0.2, 1);
            let _ = d.split(0.999, 7);
        }
        _ => {
            let path = lmrs_fuzz::scratch_file("args.json", body);
            if let Ok(a) = TrainingArguments::from_json_file(&path) {
                let _ = a.validate();
                let _ = (a.best_metric_key(), a.greater_is_better(), a.eval_every());
            }
        }
    }
});
