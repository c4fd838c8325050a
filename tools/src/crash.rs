//! `strata crash`: the crash harness with a contract oracle.
//!
//! A child process (`strata crash --child`) opens the database and runs concurrent writers (each
//! owns its keys and applies puts, deletes and small atomic batches with `Sync::Always`), a
//! reader that checks snapshot stability, and a thread forcing full compactions, while small
//! memtables keep the flusher and the background compaction policy busy. Every operation gets an
//! id and goes into its writer's trace file *before* it is applied ("B") and after it is
//! acknowledged ("A"). The parent SIGKILLs the child at random moments — a tenth of the kills
//! aimed at the recovery of the next open — reopens the database and checks the contract:
//!
//! - the recovered state equals a replay of a prefix of every writer's trace that includes all
//!   its acknowledged operations; the one operation in flight may be applied or not, but
//!   atomically (a batch is never half-applied);
//! - every document is exact (value, terms, attributes, vector), no other key exists;
//! - postings and attribute columns agree (boolean and range queries = the model), exact k-NN
//!   (plain and filtered) = brute force over the model;
//! - after the open, only files the manifest names are left.
//!
//! Kill delays derive from `--seed`; a failure prints the command that replays its seed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{Db, Document, Filter, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use crate::CliResult;

const DIM: usize = 8;
const KEYS_PER_WRITER: u64 = 48;
const TERM_MOD: u64 = 5;

#[derive(Args)]
pub struct CrashArgs {
    /// Kill/recover iterations (`STRATA_TORTURE=1` in the test suite runs thousands).
    #[arg(long, default_value_t = 100)]
    iterations: u64,
    /// Stop after this many seconds even if iterations remain (0: no limit).
    #[arg(long, default_value_t = 0)]
    seconds: u64,
    /// Seed of the kill schedule and of the children's operations.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Writer threads in the child.
    #[arg(long, default_value_t = 3)]
    writers: u64,
    /// Percentage of kills aimed at the recovery (open) of the child.
    #[arg(long, default_value_t = 10)]
    recovery_kill_percent: u32,
    /// Longest run of the child before its kill, in milliseconds.
    #[arg(long, default_value_t = 250)]
    max_run_ms: u64,
    /// Working directory (default: a fresh temporary one, removed on success).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Internal: run as the child that gets killed.
    #[arg(long, hide = true)]
    child: bool,
    /// Internal: the child's run number (operation ids are unique across runs).
    #[arg(long, hide = true, default_value_t = 0)]
    run: u64,
}

fn options() -> Options {
    let mut o = Options::default()
        .with_sync(SyncMode::Always)
        .with_flush_threshold_bytes(16 * 1024)
        .with_wal_preallocate(false)
        // Few segments allowed: the background policy compacts all the time, so kills land
        // inside flushes and compactions.
        .with_segments_max(3);
    // Small graphs, so kills also land inside graph builds and merges.
    o.ann.min_vectors = 64;
    o
}

fn schema() -> Schema {
    Schema::new(DIM as u32, Metric::L2).with_attr("op")
}

fn key(writer: u64, k: u64) -> String {
    format!("t{writer}-k{k:02}")
}

/// The document an operation writes to a key: everything derives from (op id, key), so the
/// trace only records which keys an operation put or deleted.
fn doc(op: u64, key: &str) -> Document {
    let mut d = Document::new(key.to_owned(), op.to_string())
        .with_term(format!(
            "w:{}",
            key.get(1..key.find('-').unwrap_or(1)).unwrap_or("?")
        ))
        .with_term(format!("m:{}", op % TERM_MOD))
        .with_attr("op", op as i64);
    d.vector = Some(vector(op, key));
    d
}

fn vector(op: u64, key: &str) -> Vec<f32> {
    let mut h = op.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(
        key.bytes()
            .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b.into())),
    );
    (0..DIM)
        .map(|_| {
            h ^= h << 13;
            h ^= h >> 7;
            h ^= h << 17;
            (h % 2000) as f32 / 100.0 - 10.0
        })
        .collect()
}

pub fn run(a: &CrashArgs) -> CliResult {
    if a.child {
        return child(a);
    }
    parent(a)
}

// ---- the child ---------------------------------------------------------------------------

fn child(a: &CrashArgs) -> CliResult {
    let dir = a.dir.clone().ok_or("--child needs --dir")?;
    let db_dir = dir.join("db");
    let out = std::io::stdout();
    writeln!(out.lock(), "opening")?;
    let db = if db_dir.join(strata::meta::SCHEMA_FILE).exists() {
        Db::open(&db_dir, options())?
    } else {
        Db::create_with(&db_dir, schema(), options())?
    };
    writeln!(out.lock(), "ready")?;
    let db = std::sync::Arc::new(db);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::scope(|s| -> CliResult {
        let mut handles = Vec::new();
        for w in 0..a.writers {
            let db = db.clone();
            let trace = dir.join(format!("trace-{w}.log"));
            let seed = a.seed ^ (a.run << 8) ^ w;
            handles.push(s.spawn(move || writer(&db, w, a.run, seed, &trace)));
        }
        // Reader: a snapshot answers the same query the same way while everything changes.
        let r = db.clone();
        s.spawn(move || {
            while !stopped() {
                let snap = r.snapshot();
                let q = Query::boolean(Filter::term("w:0"), 10_000);
                let (Ok(x), Ok(y)) = (snap.search(&q), {
                    std::thread::sleep(Duration::from_millis(1));
                    snap.search(&q)
                }) else {
                    continue;
                };
                if x.iter().map(|h| &h.key).ne(y.iter().map(|h| &h.key)) {
                    eprintln!("VIOLATION: a snapshot changed under a reader");
                    std::process::exit(3);
                }
            }
        });
        // Full compactions on top of the background policy.
        let c = db.clone();
        s.spawn(move || {
            while !stopped() {
                std::thread::sleep(Duration::from_millis(120));
                if let Err(e) = c.compact() {
                    eprintln!("compact: {e}");
                    std::process::exit(2);
                }
            }
        });
        let mut result = Ok(());
        for h in handles {
            let r = h.join().map_err(|_| "writer panicked");
            if let Err(e) = r.map_err(Into::into).and_then(|r| r) {
                result = Err(e);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}

/// One writer: operations on its own keys, each traced before ("B id k=P,k=D") and after ("A
/// id") it is applied. Runs until killed (or 60 s, as a safety net).
fn writer(db: &Db, w: u64, run: u64, seed: u64, trace: &Path) -> CliResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(trace)?;
    let start = Instant::now();
    for c in 0u64.. {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        let op = (run << 32) | (w << 24) | (c & 0xff_ffff);
        let n = rng.gen_range(1..=3usize);
        let mut effects: Vec<(String, bool)> = Vec::new();
        while effects.len() < n {
            let k = key(w, rng.gen_range(0..KEYS_PER_WRITER));
            if !effects.iter().any(|(x, _)| *x == k) {
                effects.push((k, rng.gen_bool(0.8)));
            }
        }
        let line: Vec<String> = effects
            .iter()
            .map(|(k, put)| format!("{k}={}", if *put { 'P' } else { 'D' }))
            .collect();
        // One write() per line: a SIGKILL cannot leave half a line in the page cache.
        f.write_all(format!("B {op} {}\n", line.join(",")).as_bytes())?;
        if let [(k, put)] = effects.as_slice() {
            if *put {
                db.put(doc(op, k))?;
            } else {
                db.delete(k.as_bytes())?;
            }
        } else {
            let mut b = WriteBatch::new();
            for (k, put) in &effects {
                if *put {
                    b.put(doc(op, k));
                } else {
                    b.delete(k.as_bytes());
                }
            }
            db.write(b)?;
        }
        f.write_all(format!("A {op}\n").as_bytes())?;
    }
    Ok(())
}

// ---- the parent and its oracle -----------------------------------------------------------

/// One traced operation.
struct Op {
    id: u64,
    effects: Vec<(String, bool)>,
    acked: bool,
}

fn read_trace(path: &Path) -> CliResult<Vec<Op>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut ops: Vec<Op> = Vec::new();
    // A line without its newline was cut by the kill: its operation had not started.
    let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
    for line in complete.lines() {
        let mut parts = line.split(' ');
        match (parts.next(), parts.next().map(str::parse::<u64>)) {
            (Some("B"), Some(Ok(id))) => {
                let effects = parts
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|e| {
                        let (k, v) = e.split_once('=')?;
                        Some((k.to_owned(), v == "P"))
                    })
                    .collect();
                ops.push(Op {
                    id,
                    effects,
                    acked: false,
                });
            }
            (Some("A"), Some(Ok(id))) => match ops.last_mut() {
                Some(op) if op.id == id => op.acked = true,
                _ => return Err(format!("{}: ack {id} without its begin", path.display()).into()),
            },
            _ => return Err(format!("{}: bad trace line {line:?}", path.display()).into()),
        }
    }
    Ok(ops)
}

#[derive(Default, serde::Serialize)]
struct Totals {
    iterations: u64,
    kills_during_recovery: u64,
    recovery_kills_aimed: u64,
    acknowledged_ops: u64,
    in_flight_applied: u64,
    in_flight_not_applied: u64,
    documents_checked: u64,
    queries_checked: u64,
    seconds: f64,
}

/// What the oracle knows: per key, the id of the operation whose put is live (`None`: absent).
type Model = BTreeMap<String, Option<u64>>;

fn parent(a: &CrashArgs) -> CliResult {
    match &a.dir {
        Some(d) => parent_in(a, d),
        None => {
            let tmp = tempfile::tempdir()?;
            let r = parent_in(a, tmp.path());
            if r.is_err() {
                let _ = tmp.keep(); // the message names it: keep it for the post-mortem
            }
            r
        }
    }
}

fn parent_in(a: &CrashArgs, dir: &Path) -> CliResult {
    let dir = dir.to_owned();
    std::fs::create_dir_all(&dir)?;
    if dir.join("db").exists() || dir.join("trace-0.log").exists() {
        return Err(format!(
            "{}: not a fresh directory (the oracle starts from an empty database)",
            dir.display()
        )
        .into());
    }
    let exe = std::env::current_exe()?;
    let mut rng = StdRng::seed_from_u64(a.seed);
    let mut model: Model = BTreeMap::new();
    let mut consumed = vec![0usize; a.writers as usize];
    let mut totals = Totals::default();
    let mut open_ms = 5u64;
    let started = Instant::now();
    for it in 1..=a.iterations {
        if a.seconds > 0 && started.elapsed() > Duration::from_secs(a.seconds) {
            break;
        }
        let fail = |what: String| -> Box<dyn std::error::Error + Send + Sync> {
            format!(
                "iteration {it}: {what}\n  database kept in {}\n  replay: strata crash --seed {} --iterations {it} --writers {}",
                dir.display(),
                a.seed,
                a.writers
            )
            .into()
        };
        let aim_recovery = rng.gen_range(0..100) < a.recovery_kill_percent;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["crash", "--child", "--run", &it.to_string()])
            .args([
                "--seed",
                &a.seed.to_string(),
                "--writers",
                &a.writers.to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(dir.join("child-stderr.log"))?);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().ok_or("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send((line.unwrap_or_default(), Instant::now())).is_err() {
                    break;
                }
            }
        });
        let wait = |rx: &mpsc::Receiver<(String, Instant)>, what: &str| -> Option<Instant> {
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok((l, t)) if l == what => return Some(t),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        };
        let opening = wait(&rx, "opening").ok_or_else(|| fail("child never started".into()))?;
        if aim_recovery {
            totals.recovery_kills_aimed += 1;
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..=open_ms * 1000)));
        } else {
            let ready = wait(&rx, "ready").ok_or_else(|| {
                let err = std::fs::read_to_string(dir.join("child-stderr.log")).unwrap_or_default();
                fail(format!("child failed before ready: {err}"))
            })?;
            open_ms = (ready - opening).as_millis().max(1) as u64;
            std::thread::sleep(Duration::from_millis(
                rng.gen_range(5..=a.max_run_ms.max(5)),
            ));
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait()?;
        // Every line the child printed before it died: its stdout closes with it, so this ends.
        if aim_recovery && !rx.iter().any(|(l, _)| l == "ready") {
            totals.kills_during_recovery += 1;
        }
        // Killed, the child has no exit code; one that exited by itself failed (a snapshot
        // changed, an operation or a compaction returned an error).
        if let Some(code) = status.code() {
            let err = std::fs::read_to_string(dir.join("child-stderr.log")).unwrap_or_default();
            return Err(fail(format!("child exited with {code}: {err}")));
        }
        totals.iterations += 1;
        check(a, &dir, &mut model, &mut consumed, &mut totals, &mut rng)
            .map_err(|e| fail(e.to_string()))?;
    }
    totals.seconds = started.elapsed().as_secs_f64();
    if a.json {
        println!("{}", serde_json::to_string(&totals)?);
    } else {
        println!(
            "strata crash: {} kills ({} landed during recovery of {} aimed), {} acknowledged operations all present, {} in-flight operations applied whole and {} not at all, {} documents and {} queries checked against the model, {:.1} s",
            totals.iterations,
            totals.kills_during_recovery,
            totals.recovery_kills_aimed,
            totals.acknowledged_ops,
            totals.in_flight_applied,
            totals.in_flight_not_applied,
            totals.documents_checked,
            totals.queries_checked,
            totals.seconds
        );
    }
    Ok(())
}

/// Reopen after a kill and check the contract; fold the run's operations into the model.
fn check(
    a: &CrashArgs,
    dir: &Path,
    model: &mut Model,
    consumed: &mut [usize],
    totals: &mut Totals,
    rng: &mut StdRng,
) -> CliResult {
    let db_dir = dir.join("db");
    if !db_dir.join(strata::meta::SCHEMA_FILE).exists() {
        // Killed before the database existed: nothing can have been acknowledged.
        for w in 0..a.writers {
            if !read_trace(&dir.join(format!("trace-{w}.log")))?.is_empty() {
                return Err("operations traced but no database".into());
            }
        }
        return Ok(());
    }
    let db = Db::open(&db_dir, options()).map_err(|e| format!("reopen failed: {e}"))?;
    // Fold the new operations of every writer: acknowledged ones are in the model; the one in
    // flight (at most one per writer: a writer begins an operation only after the previous
    // one's ack) is resolved from what recovery shows.
    for w in 0..a.writers {
        let ops = read_trace(&dir.join(format!("trace-{w}.log")))?;
        let start = consumed.get(w as usize).copied().unwrap_or(0);
        let new = ops.get(start..).unwrap_or_default();
        for (i, op) in new.iter().enumerate() {
            let last = i + 1 == new.len();
            if op.acked {
                totals.acknowledged_ops += 1;
                apply(model, op);
                continue;
            }
            if !last {
                return Err(format!(
                    "writer {w}: operation {} began after an unacknowledged one",
                    op.id
                )
                .into());
            }
            // Applied or not, but all or nothing.
            let mut applied = Vec::new();
            for (k, put) in &op.effects {
                let now = db.get(k.as_bytes())?.map(|d| doc_op(&d)).transpose()?;
                let before = model.get(k).copied().flatten();
                let after = put.then_some(op.id);
                if before != after {
                    if now == after {
                        applied.push(true);
                    } else if now == before {
                        applied.push(false);
                    } else {
                        return Err(format!("key {k}: {now:?} is neither before ({before:?}) nor after ({after:?}) in-flight op {}", op.id).into());
                    }
                }
            }
            if applied.iter().any(|x| *x) {
                if !applied.iter().all(|x| *x) {
                    return Err(
                        format!("in-flight operation {} half-applied: {applied:?}", op.id).into(),
                    );
                }
                totals.in_flight_applied += 1;
                apply(model, op);
            } else {
                totals.in_flight_not_applied += 1;
            }
        }
        // The next run appends after these; the in-flight one is resolved for good.
        if let Some(c) = consumed.get_mut(w as usize) {
            *c = ops.len();
        }
    }
    // Every document exact; nothing else present.
    let live: BTreeMap<&String, u64> = model.iter().filter_map(|(k, v)| Some((k, (*v)?))).collect();
    for (k, v) in model.iter() {
        let got = db.get(k.as_bytes())?;
        match (v, got) {
            (None, None) => {}
            (Some(op), Some(d)) => {
                let want = doc(*op, k);
                let terms = |d: &Document| -> std::collections::BTreeSet<String> {
                    d.terms.iter().cloned().collect()
                };
                if d.value != want.value
                    || terms(&d) != terms(&want)
                    || d.attrs != want.attrs
                    || d.vector != want.vector
                {
                    return Err(format!("key {k}: document differs from operation {op}'s").into());
                }
            }
            (v, got) => {
                return Err(format!(
                    "key {k}: model {v:?}, database {:?}",
                    got.map(|d| String::from_utf8_lossy(&d.value).into_owned())
                )
                .into())
            }
        }
        totals.documents_checked += 1;
    }
    let all = db.scan(..)?;
    if all.len() != live.len() {
        return Err(format!("scan: {} documents, model {}", all.len(), live.len()).into());
    }
    // Postings, columns and exact k-NN against the model.
    let keys = |hits: Vec<strata::Hit>| -> Vec<String> {
        hits.into_iter()
            .map(|h| String::from_utf8_lossy(&h.key).into_owned())
            .collect()
    };
    for w in 0..a.writers {
        let want: Vec<String> = live
            .keys()
            .filter(|k| k.starts_with(&format!("t{w}-")))
            .map(|k| (*k).clone())
            .collect();
        let got = keys(db.search(&Query::boolean(Filter::term(format!("w:{w}")), 100_000))?);
        if got != want {
            return Err(format!(
                "postings of w:{w}: {} keys, model {}",
                got.len(),
                want.len()
            )
            .into());
        }
        totals.queries_checked += 1;
    }
    for m in 0..TERM_MOD {
        let want: Vec<String> = live
            .iter()
            .filter(|(_, op)| *op % TERM_MOD == m)
            .map(|(k, _)| (*k).clone())
            .collect();
        let got = keys(db.search(&Query::boolean(Filter::term(format!("m:{m}")), 100_000))?);
        if got != want {
            return Err(format!(
                "postings of m:{m}: {} keys, model {}",
                got.len(),
                want.len()
            )
            .into());
        }
        totals.queries_checked += 1;
    }
    if let (Some(lo), Some(hi)) = (live.values().min(), live.values().max()) {
        let mid = lo + (hi - lo) / 2;
        let want: Vec<String> = live
            .iter()
            .filter(|(_, op)| **op >= *lo && **op <= mid)
            .map(|(k, _)| (*k).clone())
            .collect();
        let got = keys(db.search(&Query::boolean(
            Filter::range("op", *lo as i64, mid as i64),
            100_000,
        ))?);
        if got != want {
            return Err(
                format!("attribute range: {} keys, model {}", got.len(), want.len()).into(),
            );
        }
        totals.queries_checked += 1;
    }
    for _ in 0..3 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-10.0f32..10.0)).collect();
        let m = rng.gen_range(0..TERM_MOD);
        for filter in [None, Some(Filter::term(format!("m:{m}")))] {
            let mut brute: Vec<(f32, &String)> = live
                .iter()
                .filter(|(_, op)| filter.is_none() || **op % TERM_MOD == m)
                .map(|(k, op)| (strata::distance(Metric::L2, &q, &vector(*op, k)), *k))
                .collect();
            brute.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(y.1)));
            let want: Vec<String> = brute.into_iter().take(10).map(|x| x.1.clone()).collect();
            let mut query = Query::knn(q.clone(), 10).exact();
            if let Some(f) = &filter {
                query = query.with_filter(f.clone());
            }
            let got = keys(db.search(&query)?);
            if got != want {
                return Err(format!(
                    "exact k-NN (filter {filter:?}): {got:?}, brute force {want:?}"
                )
                .into());
            }
            totals.queries_checked += 1;
        }
    }
    drop(db);
    // After the open, only what the newest manifest names is left.
    let manifests: Vec<String> = std::fs::read_dir(&db_dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(strata::manifest::MANIFEST_PREFIX))
        .collect();
    if manifests.len() > 1 {
        return Err(format!("several manifests after open: {manifests:?}").into());
    }
    if let Some(name) = manifests.first() {
        let m = strata::manifest::Manifest::decode(&std::fs::read(db_dir.join(name))?)?;
        let keep = m.file_names();
        for e in std::fs::read_dir(db_dir.join(strata::SEGMENTS_DIR))? {
            let n = e?.file_name().to_string_lossy().into_owned();
            if !keep.contains(&n) {
                return Err(format!("orphan {n} survived the open").into());
            }
        }
    }
    Ok(())
}

fn apply(model: &mut Model, op: &Op) {
    for (k, put) in &op.effects {
        model.insert(k.clone(), put.then_some(op.id));
    }
}

fn doc_op(d: &Document) -> CliResult<u64> {
    Ok(std::str::from_utf8(&d.value)?.parse()?)
}
