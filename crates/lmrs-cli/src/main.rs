//! `lmrs`: Transformer language models, natively. See `lmrs --help`.

mod args;
mod bench;
mod input;
mod run;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    if let Some(n) = cli.threads {
        // The tensor backend sizes its thread pool from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = match cli.command {
        args::Command::Summarize(a) => run::summarize(a),
        args::Command::Translate(a) => run::translate(a),
        args::Command::Text2text(a) => run::text2text(a),
        args::Command::Bench(a) => bench::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
