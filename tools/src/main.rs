//! `strata`: the command-line tool of Strata.
//!
//! Today: `strata demo` (the write-ahead log on built-in sample data) and `strata bench wal`
//! (group-commit throughput, raw-disk and RocksDB baselines, replay speed). The build, query,
//! inspect, verify, compact and crash commands land with the engine.

mod bench;
mod dataset;
mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: embedded hybrid-retrieval storage engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write built-in sample records through the WAL from many threads, tear the tail, recover.
    Demo(demo::DemoArgs),
    /// Benchmarks against peers, measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Bench(cmd) => bench::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("strata: error: {e}");
        let mut source = std::error::Error::source(&*e);
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}

/// Error type of the tool's commands.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
