//! `strata query | get | put | delete | dump | inspect | verify`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use strata::shards::ShardSet;
use strata::{Db, Filter, Options, Query, QueryStats, WriteBatch};

use super::docs::{parse_line, to_json};
use crate::dataset::VectorFile;
use crate::CliResult;

/// Something the command was asked about does not exist (a database, a key): exit code 3.
#[derive(Debug)]
pub struct NotFound(pub String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

fn check_is_db(db: &Path) -> CliResult {
    if !db.join(strata::meta::SCHEMA_FILE).exists() {
        return Err(NotFound(format!(
            "{} is not a Strata database (no SCHEMA file)",
            db.display()
        ))
        .into());
    }
    Ok(())
}

#[derive(Args)]
pub struct CreateArgs {
    /// The database directory to create (must not exist, or be empty).
    db: PathBuf,
    /// Vector dimension.
    #[arg(long)]
    dim: u32,
    /// Distance metric.
    #[arg(long, value_parser = ["l2", "ip", "cosine"])]
    metric: String,
    /// A declared integer attribute (repeat for several): `--attr ts --attr likes`.
    #[arg(long = "attr")]
    attrs: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `strata create`: an empty database with a schema, ready for `put`.
pub fn create(a: &CreateArgs) -> CliResult {
    let schema = strata::Schema {
        dim: a.dim,
        metric: strata::Metric::parse(&a.metric)?,
        attrs: a.attrs.clone(),
    };
    let db = Db::create(&a.db, schema)?;
    drop(db);
    if a.json {
        println!(
            "{}",
            json!({"created": a.db.display().to_string(), "dim": a.dim, "metric": a.metric,
                   "attrs": a.attrs})
        );
    } else {
        println!(
            "created {}: dim {}, metric {}, attrs {:?}",
            a.db.display(),
            a.dim,
            a.metric,
            a.attrs
        );
    }
    Ok(())
}

/// Open for writing (`put`, `delete`, `compact`): takes the lock, recovers the log.
fn open(db: &Path) -> CliResult<Db> {
    check_is_db(db)?;
    Ok(Db::open(db, Options::default())?)
}

/// Open read-only (`get`, `query`, `dump`, `inspect`, `verify`): no lock, no byte changed.
/// A bad log tail past the checkpoint is printed as a warning: the handle sees the records
/// before it.
fn open_read_only(db: &Path) -> CliResult<Db> {
    open_read_only_with(db, Options::default())
}

fn open_read_only_with(db: &Path, options: Options) -> CliResult<Db> {
    check_is_db(db)?;
    let db = Db::open_read_only(db, options)?;
    for t in db.recovery().lost_past_checkpoint() {
        eprintln!("strata: warning: the log ends in a bad frame; records from LSN {} on are not visible: {t}", t.lsn);
    }
    Ok(db)
}

/// A progress bar on stderr for `len` steps of `what` (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what:>8} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(len).with_style(style)
}

fn key_str(k: &[u8], hex: bool) -> String {
    super::docs::bytes_text(k, hex)
}

pub use crate::args::PlanArg;

#[derive(Args)]
pub struct QueryArgs {
    /// The database.
    db: PathBuf,
    /// Print keys as hex (for binary keys).
    #[arg(long)]
    hex: bool,
    /// Query vectors (`.fvecs`, `.bvecs`, `.npy`): one query per vector.
    #[arg(long, conflicts_with = "vector")]
    vectors: Option<PathBuf>,
    /// One query vector, comma-separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    vector: Option<Vec<f32>>,
    /// Results per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// A filter for every query, e.g. `(and lang:en (not spam))`.
    #[arg(long, conflicts_with = "filters")]
    filter: Option<String>,
    /// Line i is the filter of query i (an empty line: no filter).
    #[arg(long)]
    filters: Option<PathBuf>,
    /// Only results within this distance (squared for l2, 1 - cos, -dot: the units the
    /// output reports).
    #[arg(long)]
    radius: Option<f32>,
    /// The recall@k to reach (0..=1): on every calibrated segment the planner picks the
    /// cheapest plan whose measured recall reaches it (1: exact).
    #[arg(long, default_value_t = 0.95)]
    recall: f64,
    /// Expert override: the graph's candidate list size (L_search), which also sets the
    /// partition walk's effort; the planner then uses its uncalibrated cost model.
    #[arg(long)]
    list: Option<usize>,
    /// Force a plan on every indexed segment (a plan a segment cannot run falls back to
    /// the planner's choice).
    #[arg(long, value_enum, default_value = "auto")]
    plan: PlanArg,
    /// A mandatory filter (e.g. a user's visibility, `(and tenant:7 (not hidden))`): AND-ed
    /// into every query by every plan, so no result lies outside it.
    #[arg(long)]
    restrict: Option<String>,
    /// Copy the nodes nearest each entry point into memory at open (`AnnOptions::warm`):
    /// steady latency from the first query, for an open that copies the graph. Without it
    /// the open is lazy (the default): the graph is mapped and read on demand.
    #[arg(long, conflicts_with = "lazy")]
    warm: bool,
    /// Open lazily (the default; kept so scripts that pass it still run).
    #[arg(long, hide = true)]
    lazy: bool,
    /// Stop a query that runs longer than this many milliseconds (an error, exit 1).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print what each query cost (plan per segment, matches vs estimate, nodes, lists,
    /// sectors, time).
    #[arg(long)]
    explain: bool,
    /// One JSON object per query: {"query": i, "hits": [{"key", "distance"}], "stats": {...}}.
    #[arg(long)]
    json: bool,
}

pub fn stats_json(s: &QueryStats) -> Value {
    let explain: Vec<Value> = s
        .explain
        .iter()
        .map(|e| {
            json!({"segment": e.segment, "plan": format!("{:?}", e.plan),
                   "documents": e.documents, "matches": e.matches,
                   "estimate": e.estimate.map(|x| json!({"min": x.min, "expected": x.expected, "max": x.max})),
                   "list": e.list,
                   "nodes_visited": e.nodes_visited, "sectors_read": e.sectors_read,
                   "lists_probed": e.lists_probed, "members_scanned": e.members_scanned,
                   "predicted_recall": e.predicted_recall,
                   "local_density": e.local_density,
                   "near_density": e.near_density,
                   "outside": e.outside,
                   "micros": e.micros})
        })
        .collect();
    json!({
        "graph_segments": s.graph_segments,
        "partition_segments": s.partition_segments,
        "exact_segments": s.exact_segments,
        "nodes_visited": s.nodes_visited,
        "sectors_read": s.sectors_read,
        "cache_hits": s.cache_hits,
        "distance_computations": s.distance_computations,
        "explain": explain,
        "apply_fanout": s.apply_fanout,
        "apply_truncated": s.apply_truncated,
        "anti_correlated_exits": s.anti_correlated_exits,
    })
}

/// The human form of `explain`: one line per segment (the memtables first), then the totals.
pub fn print_explain(st: &QueryStats, indent: &str) {
    for e in &st.explain {
        let what = e
            .segment
            .map_or("memtable".to_owned(), |id| format!("segment {id}"));
        let matches = match (e.matches, e.estimate) {
            (Some(m), Some(x)) => format!(
                ", {m} match (estimated {} in [{}, {}])",
                x.expected, x.min, x.max
            ),
            (Some(m), None) => format!(", {m} match"),
            _ => String::new(),
        };
        let lists = if e.lists_probed > 0 {
            format!(
                ", {} partitions ({} members)",
                e.lists_probed, e.members_scanned
            )
        } else {
            String::new()
        };
        let predicted = e
            .predicted_recall
            .map_or(String::new(), |r| format!(", predicted recall {r:.3}"));
        let predicted = match e.local_density {
            Some([f, c]) => format!("{predicted}, local density {f:.2} / {c:.2}"),
            None => predicted,
        };
        let predicted = match e.near_density {
            Some(n) => format!("{predicted}, near {n:.2}"),
            None => predicted,
        };
        let predicted = match e.outside {
            Some(o) => format!("{predicted}, position {o:.2}"),
            None => predicted,
        };
        println!(
            "{indent}  explain {what}: {:?} ({} docs{matches}), list {}, {} nodes{lists}, {} sectors{predicted}, {} µs",
            e.plan, e.documents, e.list, e.nodes_visited, e.sectors_read, e.micros
        );
    }
    if st.apply_fanout > 0 {
        println!(
            "{indent}  apply: expanded into {} terms{}",
            st.apply_fanout,
            if st.apply_truncated {
                " (truncated at the fan-out bound)"
            } else {
                ""
            }
        );
    }
    if st.anti_correlated_exits > 0 {
        println!(
            "{indent}  anti-correlated filter: {} graph search(es) gave up and scanned the matches",
            st.anti_correlated_exits
        );
    }
    println!(
        "{indent}  total: {} nodes visited, {} sectors read, {} cache hits, {} distances",
        st.nodes_visited, st.sectors_read, st.cache_hits, st.distance_computations
    );
}

pub fn query(a: &QueryArgs) -> CliResult {
    let mut options = Options::default();
    options.ann.warm = a.warm && !a.lazy;
    let db = open_read_only_with(&a.db, options)?;
    // Without a vector, one boolean query: the filter's matches in key order.
    let vectors: Vec<Option<Vec<f32>>> = match (&a.vectors, &a.vector, &a.filter) {
        (Some(p), _, _) => VectorFile::open(p)?
            .read_all()?
            .into_iter()
            .map(Some)
            .collect(),
        (None, Some(v), _) => vec![Some(v.clone())],
        (None, None, Some(_)) => vec![None],
        (None, None, None) => {
            return Err(
                "give --vectors FILE or --vector x,y,... (or only --filter: a boolean query)"
                    .into(),
            )
        }
    };
    let filters: Vec<Option<Filter>> = match (&a.filter, &a.filters) {
        (Some(f), _) => vec![Some(Filter::parse(f)?); vectors.len()],
        (None, Some(p)) => read_filters(p, vectors.len())?,
        (None, None) => vec![None; vectors.len()],
    };
    // The radius is in the reported convention (squared for L2), as the engine takes it.
    let radius = a.radius;
    // One snapshot for every query of the run, restricted when asked.
    let snap = match &a.restrict {
        Some(r) => db.restricted_snapshot(Filter::parse(r)?)?,
        None => db.snapshot(),
    };
    for (i, (v, f)) in vectors.into_iter().zip(filters).enumerate() {
        let mut q = match v {
            Some(v) => Query::knn(v, a.k),
            None => Query {
                k: a.k,
                ..Query::default()
            },
        };
        q.filter = f;
        q.radius = radius;
        if let Some(l) = a.list {
            q = q.with_search_list(l);
        }
        q = q.with_recall(a.recall);
        q = q.with_plan(a.plan.hint());
        if let Some(ms) = a.timeout_ms {
            q = q.with_timeout(std::time::Duration::from_millis(ms));
        }
        let (hits, st) = snap.search_with_stats(&q)?;
        if a.json {
            let hits: Vec<Value> = hits
                .iter()
                .map(|h| {
                    json!({"key": key_str(&h.key, a.hex),
                           "distance": h.distance})
                })
                .collect();
            println!(
                "{}",
                json!({"query": i, "hits": hits, "stats": stats_json(&st)})
            );
        } else {
            println!("query {i}: {} hit(s)", hits.len());
            for h in &hits {
                match h.distance {
                    Some(d) => println!("  {:<24} {d:.6}", key_str(&h.key, a.hex)),
                    None => println!("  {}", key_str(&h.key, a.hex)),
                }
            }
            if a.explain {
                print_explain(&st, "");
            }
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct GetArgs {
    /// The database.
    db: PathBuf,
    /// The key (hex digits with `--hex`).
    key: String,
    /// Keys and values in hex: the KEY argument is read, and the document printed, as hex.
    #[arg(long)]
    hex: bool,
}

pub fn get(a: &GetArgs) -> CliResult {
    let db = open_read_only(&a.db)?;
    match db.get(&super::docs::key_arg(&a.key, a.hex)?)? {
        Some(d) => {
            println!("{}", to_json(&d, a.hex));
            Ok(())
        }
        None => Err(NotFound(format!("key {:?} not found", a.key)).into()),
    }
}

#[derive(Args)]
pub struct PutArgs {
    /// The database.
    db: PathBuf,
    /// JSONL documents, applied in order through the WAL.
    #[arg(long, required_unless_present = "doc", conflicts_with = "doc")]
    docs: Option<PathBuf>,
    /// One document as a JSON object, for quick edits from a shell:
    /// `--doc '{"key": "a", "value": "x", "vector": [0.1, 0.2]}'`.
    #[arg(long)]
    doc: Option<String>,
    /// Vectors for the documents (line i gets vector i).
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Print the result as JSON: {"put": documents, "batches": n}.
    #[arg(long)]
    json: bool,
}

/// Encoded bytes a batch may take, below the engine's bound (`limits::BATCH_BYTES_MAX`) by a
/// margin for the batch header and per-operation tags.
const PUT_BATCH_BYTES: usize = strata::limits::BATCH_BYTES_MAX - (64 << 10);

/// `strata put`: every line is parsed and validated against the schema before the first
/// write (an error names the line and writes nothing); then the documents go in batches of
/// at most `PUT_BATCH_BYTES` encoded bytes — one atomic batch when the file fits. Should a
/// write fail after some batches (I/O), the error says exactly which lines were committed.
/// The file is read as a stream, twice (validate, then write): memory stays at one batch
/// whatever its size.
pub fn put(a: &PutArgs) -> CliResult {
    let db = open(&a.db)?;
    let source = match (&a.docs, &a.doc) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(_)) => "--doc".to_owned(),
        (None, None) => return Err("give --docs FILE.jsonl or --doc JSON".into()),
    };
    // Every line in order, parsed (one pass over the input per call).
    let each = |f: &mut dyn FnMut(usize, super::docs::DocLine) -> CliResult| -> CliResult {
        match (&a.docs, &a.doc) {
            (Some(p), _) => {
                for (i, line) in super::docs::jsonl(p)?.enumerate() {
                    f(i, line?)?;
                }
                Ok(())
            }
            (None, Some(text)) => f(0, parse_line(std::path::Path::new("--doc"), 1, text)?),
            (None, None) => Ok(()),
        }
    };
    let file = a.vectors.as_deref().map(VectorFile::open).transpose()?;
    let schema = db.schema().clone();
    // A line as a validated document and its encoded size.
    let prepare = |i: usize, line: super::docs::DocLine| -> CliResult<(strata::Document, usize)> {
        let at = |e: &dyn std::fmt::Display| format!("{source}: line {}: {e}", i + 1);
        if line.key.is_none() {
            return Err(at(&"\"key\" is required").into());
        }
        let vector = match &file {
            Some(f) if i < f.len() => {
                let mut v = Vec::new();
                f.read(i, &mut v)?;
                Some(v)
            }
            Some(f) => {
                return Err(at(&format!(
                    "no vector: {} has {} rows",
                    f.path().display(),
                    f.len()
                ))
                .into())
            }
            None => None,
        };
        let doc = line
            .into_document(String::new(), vector)
            .validate(&schema)
            .map_err(|e| at(&e))?;
        let bytes = strata::encode_document(&doc, &schema)
            .map_err(|e| at(&e))?
            .len()
            + 16;
        if bytes > PUT_BATCH_BYTES {
            return Err(at(&format!(
                "the document encodes to {bytes} bytes, above the largest batch ({PUT_BATCH_BYTES})"
            ))
            .into());
        }
        Ok((doc, bytes))
    };
    // Pass 1: validate everything, keep nothing.
    let mut n = 0usize;
    each(&mut |i, line| {
        prepare(i, line)?;
        n += 1;
        Ok(())
    })?;
    if let Some(f) = &file {
        if f.len() != n {
            return Err(format!("{n} lines but {} vectors", f.len()).into());
        }
    }
    // Pass 2: batches by encoded bytes (and the engine's operation bound), written as they
    // fill.
    let bar = progress_bar(n as u64, "put");
    let mut batch = WriteBatch::new();
    let (mut first, mut bytes, mut count) = (0usize, 0usize, 0usize);
    let write = |batch: WriteBatch, first: usize, count: usize| -> CliResult {
        let last = first + batch.len();
        db.write(batch).map_err(|e| {
            let committed = if first == 0 {
                "nothing was committed".to_owned()
            } else {
                format!("lines 1..={first} were committed")
            };
            format!(
                "{source}: writing lines {}..={last} (batch {}) failed: {e}; {committed}, lines {}..={n} were not",
                first + 1,
                count,
                first + 1
            )
        })?;
        Ok(())
    };
    each(&mut |i, line| {
        let (doc, size) = prepare(i, line)?;
        if !batch.is_empty()
            && (bytes + size > PUT_BATCH_BYTES || batch.len() >= strata::limits::BATCH_OPS_MAX)
        {
            count += 1;
            write(std::mem::take(&mut batch), first, count)?;
            first = i;
            bytes = 0;
        }
        batch.put(doc);
        bytes += size;
        bar.inc(1);
        Ok(())
    })?;
    if !batch.is_empty() {
        count += 1;
        write(batch, first, count)?;
    }
    bar.finish_and_clear();
    if a.json {
        println!("{}", json!({"put": n, "batches": count}));
    } else if count > 1 {
        println!("put {n} document(s) in {count} batches");
    } else {
        println!("put {n} document(s)");
    }
    Ok(())
}

#[derive(Args)]
pub struct DeleteArgs {
    /// The database.
    db: PathBuf,
    /// One key per line.
    #[arg(long, required_unless_present = "key")]
    keys: Option<PathBuf>,
    /// A key to delete (repeatable), for quick edits from a shell.
    #[arg(long)]
    key: Vec<String>,
    /// Keys are hex digits (for binary keys).
    #[arg(long)]
    hex: bool,
    /// Print the result as JSON: {"deleted": n}.
    #[arg(long)]
    json: bool,
}

pub fn delete(a: &DeleteArgs) -> CliResult {
    let db = open(&a.db)?;
    let mut text = match &a.keys {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    for k in &a.key {
        text.push('\n');
        text.push_str(k);
    }
    // Every key is checked before the first write (an error names the line).
    let mut keys = Vec::new();
    for (i, k) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let k = super::docs::key_arg(k, a.hex).map_err(|e| format!("key line {}: {e}", i + 1))?;
        strata::validate_key(&k).map_err(|e| format!("key line {}: {e}", i + 1))?;
        keys.push(k);
    }
    let mut batch = WriteBatch::new();
    let mut n = 0;
    for k in keys {
        batch.delete(k);
        n += 1;
        if batch.len() >= 1024 {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        db.write(batch)?;
    }
    if a.json {
        println!("{}", json!({"deleted": n}));
    } else {
        println!("deleted {n} key(s)");
    }
    Ok(())
}

#[derive(Args)]
pub struct DbArgs {
    /// The database.
    db: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    /// The database.
    db: PathBuf,
    /// Only keys that start with this prefix.
    #[arg(long, conflicts_with_all = ["start", "end"])]
    prefix: Option<String>,
    /// Only keys >= this one.
    #[arg(long)]
    start: Option<String>,
    /// Only keys < this one.
    #[arg(long)]
    end: Option<String>,
    /// Last key first.
    #[arg(long)]
    reverse: bool,
    /// Print keys only, one per line (documents are not decoded).
    #[arg(long)]
    keys_only: bool,
    /// Keys and values in hex (for binary data); --prefix/--start/--end are read as hex too.
    #[arg(long)]
    hex: bool,
    /// Accepted for symmetry with the other commands: the output is always JSON lines
    /// (keys only: one JSON string per line).
    #[arg(long)]
    json: bool,
}

/// Every live document (or key) in key order as a JSON line, read lazily from one snapshot:
/// memory stays flat however large the database.
pub fn dump(a: &DumpArgs) -> CliResult {
    use std::io::Write;
    let db = open_read_only(&a.db)?;
    let key = |k: &str| super::docs::key_arg(k, a.hex);
    let bound = |k: &Option<String>, lo: bool| -> CliResult<std::ops::Bound<Vec<u8>>> {
        Ok(match k {
            Some(k) if lo => std::ops::Bound::Included(key(k)?),
            Some(k) => std::ops::Bound::Excluded(key(k)?),
            None => std::ops::Bound::Unbounded,
        })
    };
    let mut scan = match &a.prefix {
        Some(p) => db.prefix(&key(p)?),
        None => db.range((bound(&a.start, true)?, bound(&a.end, false)?)),
    };
    if a.reverse {
        scan = scan.reverse();
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // A closed pipe (`strata dump DB | head`) ends the process quietly: `main` restores
    // SIGPIPE's default action, so no BrokenPipe error reaches here.
    if a.keys_only {
        for k in scan.keys() {
            writeln!(out, "{}", Value::String(key_str(&k?, a.hex)))?;
        }
    } else {
        for d in scan {
            writeln!(out, "{}", to_json(&*d?, a.hex))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `inspect` of a shard set directory: the set file and each shard's size, opened read-only.
fn inspect_set(a: &DbArgs) -> CliResult {
    let set = ShardSet::read(&a.db)?;
    let mut rows = Vec::with_capacity(set.shards.len());
    for (i, sh) in set.shards.iter().enumerate() {
        let dir = a.db.join(&sh.path);
        let db = open_read_only(&dir).map_err(|e| format!("shard {i} ({}): {e}", dir.display()))?;
        let segs = db.segment_info(false)?;
        let live: usize = segs
            .iter()
            .map(|s| s.documents.saturating_sub(s.deleted))
            .sum();
        let bytes: u64 = segs.iter().map(|s| s.file_bytes).sum();
        rows.push((sh, segs.len(), live, bytes, db.stats().memtable_bytes));
    }
    if a.json {
        println!(
            "{}",
            json!({
                "shard_set": {"n": set.n(), "hash": strata::shards::SHARD_HASH,
                              "version": strata::shards::SHARDS_VERSION},
                "schema": {"dim": set.schema.dim, "metric": set.schema.metric.name(),
                           "attrs": set.schema.attrs},
                "shards": rows.iter().enumerate().map(|(i, (sh, segs, live, bytes, mem))| json!({
                    "index": i, "path": sh.path, "build_id": sh.build_id,
                    "documents_at_build": sh.documents, "segments": segs,
                    "segment_documents": live, "segment_bytes": bytes, "memtable_bytes": mem,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "shard set of {} (hash {}): dim {}, metric {}, attrs {:?}",
            set.n(),
            strata::shards::SHARD_HASH,
            set.schema.dim,
            set.schema.metric.name(),
            set.schema.attrs
        );
        for (i, (sh, segs, live, bytes, _)) in rows.iter().enumerate() {
            println!(
                "  shard {i}: {} — {live} documents in {segs} segment(s), {:.1} MiB (build {}, {} documents at build)",
                sh.path,
                *bytes as f64 / f64::from(1u32 << 20),
                sh.build_id,
                sh.documents
            );
        }
    }
    Ok(())
}

/// `verify` of a shard set directory: the set file's checksum and fields, then every shard
/// (its checksums, its schema against the set's, every key routed to it).
fn verify_set(a: &DbArgs) -> CliResult {
    let set = ShardSet::read(&a.db)?;
    let report = set.verify(&a.db)?;
    if a.json {
        println!(
            "{}",
            json!({"ok": true, "shards": set.n(), "documents": report.documents})
        );
    } else {
        println!(
            "ok: shard set of {}, every shard's checksums hold and every key is in its shard ({} documents)",
            set.n(),
            report.documents.iter().sum::<u64>()
        );
    }
    Ok(())
}

pub fn inspect(a: &DbArgs) -> CliResult {
    if ShardSet::exists(&a.db) {
        return inspect_set(a);
    }
    let db = open_read_only(&a.db)?;
    let schema = db.schema();
    let bar = progress_bar(0, "inspect");
    let segs = db.segment_info_with(true, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let st = db.stats();
    let seg_json: Vec<Value> = segs
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "documents": s.documents, "deleted": s.deleted,
                "file_bytes": s.file_bytes, "terms": s.terms,
                "ann": s.ann.as_ref().map(|g| json!({
                    "nodes": g.nodes, "degree_max": g.degree_max,
                    "codes": format!("{:?}", g.codes), "code_bytes": g.code_bytes,
                    "resident_bytes": g.resident_bytes,
                    "degree_histogram": g.degree_histogram,
                    "degree_mean": mean_degree(&g.degree_histogram),
                    "calibration": g.calibration.as_ref().map(|c| json!({
                        "samples": c.samples, "filtered": c.filtered, "k": c.k,
                        "levels": c.levels, "exact_ns": c.exact_ns,
                    })),
                })),
            })
        })
        .collect();
    if a.json {
        println!(
            "{}",
            json!({
                "schema": {"dim": schema.dim, "metric": format!("{:?}", schema.metric),
                           "attrs": schema.attrs},
                "segments": seg_json,
                "memtable_bytes": st.memtable_bytes,
                "ann_resident_bytes": st.ann_resident_bytes,
            })
        );
        return Ok(());
    }
    println!(
        "schema: dim {}, metric {:?}, attrs [{}]",
        schema.dim,
        schema.metric,
        schema.attrs.join(", ")
    );
    println!(
        "{} segment(s); memtable {} bytes; ANN memory {:.1} MiB",
        segs.len(),
        st.memtable_bytes,
        st.ann_resident_bytes as f64 / f64::from(1u32 << 20)
    );
    for s in &segs {
        println!(
            "  segment {}: {} documents ({} dead), {:.1} MiB, {} terms",
            s.id,
            s.documents,
            s.deleted,
            s.file_bytes as f64 / f64::from(1u32 << 20),
            s.terms
        );
        if let Some(g) = &s.ann {
            println!(
                "    graph: {} nodes, R {}, mean degree {:.1}, codes {:?} ({} B), memory {:.1} MiB",
                g.nodes,
                g.degree_max,
                mean_degree(&g.degree_histogram),
                g.codes,
                g.code_bytes,
                g.resident_bytes as f64 / f64::from(1u32 << 20)
            );
            let hist: Vec<String> = g
                .degree_histogram
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(d, c)| format!("{d}:{c}"))
                .collect();
            println!("    degree histogram (degree:nodes): {}", hist.join(" "));
            match &g.calibration {
                Some(c) => println!(
                    "    calibration: {} samples ({} filtered), recall@{} at {} effort levels, exact distance {:.0} ns",
                    c.samples, c.filtered, c.k, c.levels, c.exact_ns
                ),
                None => println!("    calibration: none (planned by the fixed cost model)"),
            }
        }
    }
    Ok(())
}

fn mean_degree(h: &[u64]) -> f64 {
    let n: u64 = h.iter().sum();
    let s: u64 = h.iter().enumerate().map(|(d, c)| d as u64 * c).sum();
    if n == 0 {
        0.0
    } else {
        s as f64 / n as f64
    }
}

/// One problem `verify` found.
fn tail_json(t: &strata::wal::TailReport) -> Value {
    json!({"file": t.path.display().to_string(), "offset": t.offset, "lsn": t.lsn,
           "kind": format!("{:?}", t.kind), "covered_by_checkpoint": t.covered,
           "bytes": t.bytes, "reason": t.reason})
}

pub fn verify(a: &DbArgs) -> CliResult {
    // A read-only open verifies every byte of every segment file but the graph sectors and
    // every log record past the checkpoint; `Db::verify` reads the graph sectors. Nothing is
    // repaired: a bad log tail is a problem to report (`strata recover` sets it aside).
    if ShardSet::exists(&a.db) {
        return verify_set(a);
    }
    check_is_db(&a.db)?;
    let db = Db::open_read_only(&a.db, Options::default())?;
    let bar = progress_bar(0, "verify");
    db.verify_with(&|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let segs = db.segment_info(false)?;
    let st = db.stats();
    let problems: Vec<&strata::wal::TailReport> = db.recovery().lost_past_checkpoint().collect();
    let notes: Vec<&strata::wal::TailReport> = db
        .recovery()
        .wal_tail
        .iter()
        .filter(|t| t.covered)
        .collect();
    if a.json {
        println!(
            "{}",
            json!({"ok": problems.is_empty(), "segments": segs.len(),
                   "checkpoint_lsn": st.checkpoint_lsn,
                   "problems": problems.iter().map(|t| tail_json(t)).collect::<Vec<_>>(),
                   "notes": notes.iter().map(|t| tail_json(t)).collect::<Vec<_>>()})
        );
    } else {
        if problems.is_empty() {
            println!(
                "ok: {} segment(s), every checksum and invariant holds (checkpoint LSN {})",
                segs.len(),
                st.checkpoint_lsn
            );
        } else {
            println!(
                "segments: {} ok (every checksum and graph sector); checkpoint LSN {}",
                segs.len(),
                st.checkpoint_lsn
            );
        }
        for t in &notes {
            println!("note: covered by the checkpoint, nothing lost: {t}");
        }
        for t in &problems {
            let what = match t.kind {
                strata::wal::TailKind::Torn => {
                    "an interrupted write (expected after a crash; not acknowledged under \
                     Sync::Always): opening for writing cuts it"
                }
                strata::wal::TailKind::Damaged => {
                    "damage to a written record (possibly acknowledged): opening for writing \
                     refuses; `strata recover` sets it aside"
                }
            };
            println!("problem: {t}\n  -> {what}");
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        // Damage is corruption (exit code 4), as from any other check.
        Err(strata::Error::corruption(
            "write-ahead log",
            a.db.join(strata::WAL_DIR),
            strata::DecodeError::Invalid(format!(
                "verification found {} problem(s)",
                problems.len()
            )),
        )
        .into())
    }
}

#[derive(Args)]
pub struct RecoverArgs {
    /// The database.
    db: PathBuf,
    /// Only say what would be set aside; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `strata recover`: the explicit repair. Damage in the log past the checkpoint (and every
/// record after it) is set aside — copied to `wal/lost+found/` before the file is cut, later
/// files moved there — so the database opens again. Nothing is deleted.
pub fn recover(a: &RecoverArgs) -> CliResult {
    check_is_db(&a.db)?;
    let (done, report) = if a.dry_run {
        // What a read-only open cannot see is what the repair would set aside.
        let view = Db::open_read_only(&a.db, Options::default())?;
        let at_risk = view.recovery().lost_past_checkpoint().cloned().collect();
        (false, at_risk)
    } else {
        let db = Db::open(
            &a.db,
            Options::default().with_recovery(strata::wal::RecoveryMode::SetAside),
        )?;
        let r = db.recovery().clone();
        let all: Vec<strata::wal::TailReport> =
            r.wal_set_aside.iter().chain(&r.wal_tail).cloned().collect();
        (true, all)
    };
    if a.json {
        println!(
            "{}",
            json!({"dry_run": a.dry_run, "repaired": done,
                   "set_aside": report.iter().map(|t| json!({
                       "report": tail_json(t),
                       "saved_to": t.saved_to.as_ref().map(|p| p.display().to_string())}))
                   .collect::<Vec<_>>()})
        );
        return Ok(());
    }
    if report.is_empty() {
        println!("nothing to recover: the log is intact past the checkpoint");
        return Ok(());
    }
    for t in &report {
        let verb = if a.dry_run {
            "would set aside"
        } else {
            "set aside"
        };
        println!("{verb}: records from LSN {} on: {t}", t.lsn);
    }
    if a.dry_run {
        println!("(dry run: nothing changed; run without --dry-run to set these aside)");
    }
    Ok(())
}

/// One filter per line of `p` (blank = none), `n` lines.
fn read_filters(p: &Path, n: usize) -> CliResult<Vec<Option<Filter>>> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != n {
        return Err(format!("{} has {} lines for {n} queries", p.display(), lines.len()).into());
    }
    Ok(lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if l.trim().is_empty() {
                Ok(None)
            } else {
                Filter::parse(l)
                    .map(Some)
                    .map_err(|e| format!("{}: line {}: {e}", p.display(), i + 1))
            }
        })
        .collect::<Result<_, String>>()?)
}

#[derive(Args)]
pub struct CalibrateArgs {
    /// Database directory.
    pub db: PathBuf,
    /// The query log: vectors users search with (`.fvecs`, `.bvecs` or `.npy`); at most the
    /// first 4,096 are measured.
    #[arg(long)]
    queries: PathBuf,
    /// One filter per query, one per line (blank = unfiltered): each query is measured
    /// unfiltered and with its filter. Without it, filters are drawn from each segment's own
    /// terms near and far from the query, as a build does.
    #[arg(long)]
    filters: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Replace each indexed segment's calibration with one measured on a query log.
pub fn calibrate(a: &CalibrateArgs) -> CliResult {
    let queries = VectorFile::open(&a.queries)?.read_all()?;
    let filters = a
        .filters
        .as_deref()
        .map(|p| read_filters(p, queries.len()))
        .transpose()?;
    let db = open(&a.db)?;
    let started = std::time::Instant::now();
    let n = db.recalibrate(&queries, filters.as_deref())?;
    let secs = started.elapsed().as_secs_f64();
    let samples: Vec<usize> = db
        .segment_info(false)?
        .iter()
        .filter_map(|s| s.ann.as_ref()?.calibration.as_ref().map(|c| c.samples))
        .collect();
    if a.json {
        println!(
            "{}",
            json!({"segments": n, "queries": queries.len().min(4096),
                   "samples_per_segment": samples, "seconds": secs})
        );
    } else {
        println!(
            "recalibrated {n} segment(s) from {} queries in {secs:.1} s; samples per segment: {samples:?}",
            queries.len().min(4096)
        );
    }
    Ok(())
}

pub fn compact(a: &DbArgs) -> CliResult {
    let db = open(&a.db)?;
    let before = db.stats();
    let bar = progress_bar(0, "compact");
    let changed = db.compact_with(&|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    let after = db.stats();
    if a.json {
        println!(
            "{}",
            json!({"compacted": changed, "segments_before": before.segments,
                   "segments_after": after.segments, "live_bytes_before": before.live_bytes,
                   "live_bytes_after": after.live_bytes,
                   "bytes_written": after.compaction_bytes_written,
                   "seconds": after.compaction_seconds})
        );
    } else if changed {
        println!(
            "compacted {} segment(s) into {}: {:.1} MiB -> {:.1} MiB in {:.1} s",
            before.segments,
            after.segments,
            before.live_bytes as f64 / f64::from(1u32 << 20),
            after.live_bytes as f64 / f64::from(1u32 << 20),
            after.compaction_seconds
        );
    } else {
        println!(
            "nothing to compact ({} segment(s), no dead documents)",
            after.segments
        );
    }
    Ok(())
}
