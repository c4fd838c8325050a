//! `strata`: the command-line tool of Strata: `demo`, `create`, `build` (offline builder), `query`,
//! `get`, `put`, `delete`, `dump`, `inspect`, `verify`, `compact`, `recover` and `bench`. Human-readable output by
//! default, `--json` for machines; errors go to stderr with a non-zero exit code.

/// mimalloc, not the system allocator: a write's ~15 allocations (document fields, memtable
/// entry, batch encoding) are freed by the flusher thread, and glibc's arena locks made that
/// cross-thread churn ~40 % of the flusher's time and a lock handoff in the writer's malloc
/// (`docs/benchmarks.md`, "Store puts"). The library leaves the choice to its embedder.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod bench;
mod cli;
mod crash;
mod crashsim;
mod dataset;
mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: embedded hybrid-retrieval storage engine",
    after_help = "Exit codes: 0 success; 1 any other error; 2 usage: bad arguments or invalid \
                  input (a filter, a document, a parameter); 3 not found (no database or shard \
                  set at the path, no such key); 4 corruption (a checksum or format check failed: \
                  nothing was repaired)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The embedded store end to end on built-in sample posts: ingest through the WAL, reopen,
    /// hybrid queries checked against brute force.
    Demo(demo::DemoArgs),
    /// Create an empty database (`--dim`, `--metric`, `--attr`), ready for `put`.
    Create(cli::ops::CreateArgs),
    /// Build a database offline from vector files and JSONL documents.
    Build(cli::build::BuildArgs),
    /// k-NN / filtered / radius queries.
    Query(cli::ops::QueryArgs),
    /// Print one document as JSON.
    Get(cli::ops::GetArgs),
    /// Write JSONL documents through the normal write path (WAL), in order.
    Put(cli::ops::PutArgs),
    /// Delete the keys listed in a file (one per line).
    Delete(cli::ops::DeleteArgs),
    /// Every live document as a JSONL line, in key order, read lazily (`--prefix`,
    /// `--start`/`--end`, `--reverse`, `--keys-only`).
    Dump(cli::ops::DumpArgs),
    /// Schema, segments, sizes, terms, graph degrees, memory.
    Inspect(cli::ops::DbArgs),
    /// Re-read every file and check every checksum and invariant.
    Verify(cli::ops::DbArgs),
    /// Merge every segment into one, dropping deleted and overwritten documents.
    Compact(cli::ops::DbArgs),
    /// Recalibrate the planner of every indexed segment from a query log (queries that do
    /// not look like the documents, e.g. two-tower retrieval, need it).
    Calibrate(cli::ops::CalibrateArgs),
    /// Repair a damaged log: set the damage and every record after it aside (into
    /// `wal/lost+found`, nothing deleted) so the database opens again. `--dry-run` only says.
    Recover(cli::ops::RecoverArgs),
    /// Crash harness: SIGKILL a child running writers, readers, flushes and compactions at
    /// random moments (some during recovery), reopen and check the contract oracle.
    Crash(crash::CrashArgs),
    /// Seeded simulated crashes in the fault-injecting file system (crash at any file
    /// operation, fsync EIO, ENOSPC; power loss; recovery checked against a model).
    Crashsim(crashsim::CrashSimArgs),
    /// Benchmarks against peers, measured in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() {
    // A closed stdout (`strata dump DB | head`) ends the process quietly, like other Unix
    // tools, instead of a panic on the next print.
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Create(a) => cli::ops::create(&a),
        Command::Build(a) => cli::build::run(&a),
        Command::Query(a) => cli::ops::query(&a),
        Command::Get(a) => cli::ops::get(&a),
        Command::Put(a) => cli::ops::put(&a),
        Command::Delete(a) => cli::ops::delete(&a),
        Command::Dump(a) => cli::ops::dump(&a),
        Command::Inspect(a) => cli::ops::inspect(&a),
        Command::Verify(a) => cli::ops::verify(&a),
        Command::Compact(a) => cli::ops::compact(&a),
        Command::Calibrate(a) => cli::ops::calibrate(&a),
        Command::Recover(a) => cli::ops::recover(&a),
        Command::Crash(a) => crash::run(&a),
        Command::Crashsim(a) => crashsim::run(&a),
        Command::Bench(cmd) => bench::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("strata: error: {e}");
        let mut source = std::error::Error::source(&*e);
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(exit_code(&*e));
    }
}

/// The exit code of a failed command (documented in `strata --help`): the first error in the
/// chain with a known kind decides.
fn exit_code(e: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<cli::ops::NotFound>().is_some() {
            return 3;
        }
        if let Some(se) = err.downcast_ref::<strata::Error>() {
            return match se.kind() {
                strata::ErrorKind::Corruption => 4,
                strata::ErrorKind::NotFound => 3,
                strata::ErrorKind::InvalidInput => 2,
                _ => 1,
            };
        }
        cur = err.source();
    }
    1
}

/// Error type of the tool's commands.
pub type CliResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;
