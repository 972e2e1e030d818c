//! `lmrs`: Transformer language models, natively. See `lmrs --help`.

mod args;
mod bench;
mod bench_causal;
mod catalogue;
mod causal;
mod classify;
mod embed;
mod embed_bench;
mod eval;
mod input;
mod merge;
mod run;
mod serve;
mod token_tasks;
mod train;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    if let Some(n) = cli.threads {
        // The tensor backend sizes its thread pool from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", capped_threads(n).to_string());
    }
    let result = match cli.command {
        args::Command::Summarize(a) => run::summarize(a),
        args::Command::Generate(a) => causal::generate(a),
        args::Command::Chat(a) => causal::chat(a),
        args::Command::Translate(a) => run::translate(a),
        args::Command::Text2text(a) => run::text2text(a),
        args::Command::Train(a) => train::train(*a),
        args::Command::Merge(a) => merge::merge(a),
        args::Command::Bench(a) => bench::run(a),
        args::Command::Embed(a) => embed::embed(a),
        args::Command::Similarity(a) => embed::similarity(a),
        args::Command::Classify(a) => classify::classify(a),
        args::Command::Ner(a) => token_tasks::ner(a),
        args::Command::FillMask(a) => token_tasks::fill_mask(a),
        args::Command::Eval(a) => eval::run(a),
        args::Command::Serve(a) => serve::serve(a),
        args::Command::Models(a) => catalogue::models(a),
        args::Command::Info(a) => catalogue::info(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// `--threads N` bounded by the cores this process may run on.
///
/// The backend's worker pool spins at its barriers: one worker more than there are cores makes
/// every step wait for a descheduled thread (3 threads on 2 cores ran the default model 11×
/// slower), and thousands of workers fail to spawn inside the backend, which panics.
fn capped_threads(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if n > cores {
        eprintln!("warning: --threads {n} is more than the {cores} cores available; using {cores}");
        cores
    } else {
        n
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text the message already
/// holds (library errors often embed their source, e.g. "invalid JSON in F: SERDE_ERROR").
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}
