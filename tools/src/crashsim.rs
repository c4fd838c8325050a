//! `strata crashsim`: the seeded simulated-crash campaign.
//!
//! Each seed becomes one input of the `engine_ops` model (`strata::fuzzing::sim_input`): a
//! database in the fault-injecting in-memory file system takes random puts, deletes, atomic
//! batches, flushes, compactions and reopens with one armed fault — a crash after N file
//! operations (any write, fsync, rename, directory fsync, unlink or manifest install can be the
//! last), an fsync EIO or an ENOSPC. Then power fails (unsynced data and directory entries lost,
//! random prefixes of unsynced writes kept, the last one torn at a sector), the database
//! recovers, and the oracle checks it: the acknowledged state, or it plus the failed operation
//! applied whole; documents, postings and exact k-NN equal the model.
//!
//! Seeds are independent, so the campaign runs on every core (plain threads pulling seeds from a
//! counter: not rayon, whose waiting workers steal further jobs — the engine's own maintenance
//! pool makes a worker wait, and nested runs then overflowed the stack); a failing seed is
//! printed with the one command that replays it alone (`strata crashsim --seed N`).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use strata::fuzzing::{engine_ops_run, sim_input, SimOutcome};

use crate::CliResult;

#[derive(Args)]
pub struct CrashSimArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed of the campaign.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Replay this one seed (prints its outcome, or the failure with its message).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default, Serialize)]
struct Summary {
    seeds: u64,
    start: u64,
    /// Runs per armed fault: none, crash, fsync EIO, ENOSPC, damaged log, lost log, lost
    /// manifest, damaged manifest.
    armed: [u64; 8],
    /// Runs whose fault fired, per kind.
    fired: [u64; 8],
    /// Runs whose failed operation survived (whole) the power loss.
    failed_op_kept: u64,
    acknowledged_ops: u64,
    file_ops: u64,
    /// Operator / disk faults: how many runs ended by each recovery rule.
    operator_outcomes: std::collections::BTreeMap<String, u64>,
    failures: Vec<Failure>,
    /// Panics on the engine's own threads (not attributable to a seed).
    background_panics: Vec<String>,
    seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Failure {
    seed: u64,
    message: String,
    replay: String,
}

/// Run one seed, turning an oracle panic into its message.
fn run_seed(seed: u64) -> Result<SimOutcome, String> {
    let input = sim_input(seed);
    std::panic::catch_unwind(AssertUnwindSafe(|| engine_ops_run(&input))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

pub fn run(a: &CrashSimArgs) -> CliResult {
    if let Some(seed) = a.seed {
        let input = sim_input(seed);
        eprintln!("seed {seed}: input {input:?}");
        return match run_seed(seed) {
            Ok(o) => {
                if a.json {
                    println!(
                        "{}",
                        serde_json::json!({"seed": seed, "ok": true, "fault": o.fault,
                        "fired": o.fired, "acknowledged": o.acknowledged, "file_ops": o.file_ops,
                        "failed_op_kept": o.failed_op_kept, "recovered": o.recovered})
                    );
                } else {
                    println!("seed {seed}: ok ({o:?})");
                }
                Ok(())
            }
            Err(m) => Err(format!("seed {seed}: oracle violation: {m}").into()),
        };
    }
    // Oracle panics are reported in the summary; keep the default hook from printing each one
    // over the progress bar. A panic on one of the engine's own threads (flusher, maintenance
    // pool: named `strata-…`) is not caught by a seed's `catch_unwind`: record it, it fails
    // the campaign.
    let hook = std::panic::take_hook();
    let background: std::sync::Arc<Mutex<Vec<String>>> = std::sync::Arc::default();
    let sink = background.clone();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or("").to_string();
        if name.starts_with("strata") {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("thread {name}: {info}"));
        }
    }));
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let bar = indicatif::ProgressBar::new(a.seeds);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} seeds ({per_sec}) {msg}",
        )?
        .progress_chars("=> "),
    );
    let t = Instant::now();
    let summary = Mutex::new(Summary {
        seeds: a.seeds,
        start: a.start,
        ..Summary::default()
    });
    let failed = AtomicU64::new(0);
    let next = AtomicU64::new(a.start);
    let end = a.start.saturating_add(a.seeds);
    let worker = || loop {
        let seed = next.fetch_add(1, Ordering::Relaxed);
        if seed >= end {
            break;
        }
        {
            let r = run_seed(seed);
            let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
            match r {
                Ok(o) => {
                    let k = usize::from(o.fault % 8);
                    if let Some(x) = s.armed.get_mut(k) {
                        *x += 1;
                    }
                    if o.fired {
                        if let Some(x) = s.fired.get_mut(k) {
                            *x += 1;
                        }
                    }
                    s.failed_op_kept += u64::from(o.failed_op_kept);
                    if let Some(rule) = o.operator_outcome {
                        *s.operator_outcomes.entry(rule.to_owned()).or_default() += 1;
                    }
                    s.acknowledged_ops += o.acknowledged as u64;
                    s.file_ops += o.file_ops;
                }
                Err(message) => {
                    let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                    bar.set_message(format!("{n} FAILED (first: seed {seed})"));
                    s.failures.push(Failure {
                        seed,
                        message,
                        replay: format!("strata crashsim --seed {seed}"),
                    });
                }
            }
            drop(s);
            bar.inc(1);
        }
    };
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(worker);
        }
    });
    bar.finish_and_clear();
    std::panic::set_hook(hook);
    let mut s = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    s.seconds = t.elapsed().as_secs_f64();
    s.failures.sort_by_key(|f| f.seed);
    s.background_panics =
        std::mem::take(&mut *background.lock().unwrap_or_else(|e| e.into_inner()));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "simulated crashes: seeds {}..{} in {:.1} s ({:.0}/s)",
            s.start,
            end,
            s.seconds,
            s.seeds as f64 / s.seconds.max(1e-9)
        );
        let names = [
            "no fault",
            "crash",
            "fsync EIO",
            "ENOSPC",
            "damaged log",
            "lost log",
            "lost manifest",
            "bad manifest",
        ];
        for (i, name) in names.iter().enumerate() {
            println!(
                "  {name:<14} armed {:>7}  fired {:>7}",
                s.armed.get(i).copied().unwrap_or(0),
                s.fired.get(i).copied().unwrap_or(0)
            );
        }
        println!(
            "  acknowledged operations {}, file operations {}, failed operation kept whole {} times",
            s.acknowledged_ops, s.file_ops, s.failed_op_kept
        );
        for (rule, n) in &s.operator_outcomes {
            println!("  {rule}: {n}");
        }
        println!("  oracle violations: {}", s.failures.len());
        println!("  panics on engine threads: {}", s.background_panics.len());
        for p in s.background_panics.iter().take(5) {
            println!("    {p}");
        }
        for f in s.failures.iter().take(20) {
            println!("  seed {}: {}\n    replay: {}", f.seed, f.message, f.replay);
        }
    }
    if s.failures.is_empty() && s.background_panics.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} oracle violations, {} panics on engine threads",
            s.failures.len(),
            s.background_panics.len()
        )
        .into())
    }
}
