//! `strata bench ingest`: loading documents with vectors through `Db::write` while the engine
//! indexes them, against the same load without vectors (what the writes alone cost) and
//! against `strata build` (the offline builder) on the same documents.
//!
//! Three figures (issue 22's "ingest with indexing" row):
//! - **ingest**: seconds until the last `Db::write` returns, with vectors vs without; the
//!   goal is ≤ 1.5× (writes not slowed by indexing);
//! - **ready**: seconds until `Db::settle` returns (every segment has its graph, the merge
//!   policy is at rest), vs the offline build of the same documents; goal ≤ 1.2×;
//! - **recall@10** of default k-NN queries on both databases, so a faster "ready" is not
//!   bought with a worse index;
//! - and a third load, with vectors but never indexed (`AnnOptions::min_vectors` past the
//!   load): what the vector bytes alone cost the writes, so "with / never indexed" is what
//!   indexing costs them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use strata::{Db, Document, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use super::store::{bar, fresh};
use super::workload::doc;
use super::MachineNotes;
use crate::dataset::VectorFile;
use crate::CliResult;

#[derive(Args)]
pub struct IngestBenchArgs {
    /// Scratch directory (on the disk under test); wiped per run.
    #[arg(long, default_value = "bench-out/ingest")]
    dir: PathBuf,
    /// Documents loaded (the store benchmark's shape: 128-d vector, 5 terms, 2 attributes,
    /// 100-byte value).
    #[arg(long, default_value_t = 1_000_000)]
    docs: u64,
    /// Take the documents' vectors from this file (`.fvecs`, `.bvecs`, `.npy`; row j is
    /// document j's vector, terms and attributes as generated), its last `--queries` rows held
    /// out as queries. Default: generated uniform 128-d vectors.
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// Documents per `WriteBatch`.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// k-NN queries for the recall check (exact search gives the truth).
    #[arg(long, default_value_t = 100)]
    queries: u64,
    /// Skip the offline build (then no "ready vs build" ratio).
    #[arg(long)]
    no_build: bool,
    /// Skip the load without vectors (then no "ingest vs plain" ratio) and the one with
    /// vectors never indexed.
    #[arg(long)]
    no_plain: bool,
    /// Stop each load once its writes returned (no settle, no recall check, no build): for
    /// profiling the write path.
    #[arg(long)]
    ingest_only: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One load.
#[derive(Debug, Clone, Serialize)]
struct Load {
    what: String,
    /// Seconds until the last write returned.
    ingest_s: f64,
    /// Seconds until `settle` returned (everything indexed and merged), from the start
    /// (`None` with `--ingest-only`).
    ready_s: Option<f64>,
    segments: usize,
    ann_segments: usize,
    compactions: u64,
    write_slowdowns: u64,
    write_stalls: u64,
    bytes_on_disk: u64,
    recall_at_10: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
    machine: MachineNotes,
    docs: u64,
    /// Where the vectors came from.
    vectors: String,
    batch: u64,
    loads: Vec<Load>,
    /// Offline build of the same documents (their generation not counted).
    build_s: Option<f64>,
    build_segments: Option<usize>,
    build_recall_at_10: Option<f64>,
    /// ingest with vectors / ingest without (goal ≤ 1.5).
    ingest_ratio: Option<f64>,
    /// ingest with vectors / ingest with vectors never indexed: what indexing costs writes.
    indexing_ratio: Option<f64>,
    /// ready with vectors / offline build (goal ≤ 1.2).
    ready_ratio: Option<f64>,
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Where the documents come from: the store benchmark's generator, or its documents with
/// vectors from a file.
struct Source {
    file: Option<VectorFile>,
    docs: u64,
    dim: usize,
}

impl Source {
    fn open(args: &IngestBenchArgs) -> CliResult<Source> {
        let Some(p) = &args.vectors else {
            return Ok(Source {
                file: None,
                docs: args.docs,
                dim: super::workload::DIM,
            });
        };
        let f = VectorFile::open(p)?;
        let rows = f.len() as u64;
        if rows <= args.queries {
            return Err(format!("{}: {rows} rows, fewer than --queries", p.display()).into());
        }
        Ok(Source {
            docs: args.docs.min(rows - args.queries),
            dim: f.dim(),
            file: Some(f),
        })
    }

    fn schema(&self) -> Schema {
        Schema::new(self.dim as u32, Metric::L2)
            .with_attr("ts")
            .with_attr("likes")
    }

    fn doc(&self, j: u64, buf: &mut Vec<f32>) -> CliResult<Document> {
        let mut d = doc(j);
        if let Some(f) = &self.file {
            f.read(j as usize, buf)?;
            d.vector = Some(buf.clone());
        }
        Ok(d)
    }

    /// The query vectors: rows past the loaded documents (not stored).
    fn queries(&self, n: u64) -> CliResult<Vec<Vec<f32>>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for i in 0..n {
            let j = match &self.file {
                Some(f) => f.len() as u64 - n + i,
                None => self.docs + 1 + i,
            };
            out.extend(self.doc(j, &mut buf)?.vector);
        }
        Ok(out)
    }
}

/// recall@10 of default k-NN searches against exact ones.
fn recall(db: &Db, qs: &[Vec<f32>]) -> CliResult<f64> {
    let (mut hit, mut total) = (0usize, 0usize);
    for q in qs {
        let truth = db.search(&Query::knn(q.clone(), 10).exact())?;
        let got = db.search(&Query::knn(q.clone(), 10))?;
        let want: std::collections::HashSet<&[u8]> =
            truth.iter().map(|h| h.key.as_slice()).collect();
        total += want.len();
        hit += got
            .iter()
            .filter(|h| want.contains(h.key.as_slice()))
            .count();
    }
    Ok(if total == 0 {
        1.0
    } else {
        hit as f64 / total as f64
    })
}

/// What a load writes and whether the engine indexes it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    VectorsNeverIndexed,
    Vectors,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "without vectors",
            Kind::VectorsNeverIndexed => "never indexed",
            Kind::Vectors => "with vectors",
        }
    }
}

fn options(kind: Kind) -> Options {
    // The store benchmark's load: no fsync per batch (a bulk load), and the background
    // worker may use every core once writes pause.
    let o = Options::default()
        .with_sync(SyncMode::Never)
        .with_maintenance_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    if kind == Kind::VectorsNeverIndexed {
        let ann = strata::AnnOptions {
            min_vectors: usize::MAX,
            ..o.ann.clone()
        };
        o.with_ann(ann)
    } else {
        o
    }
}

fn load(
    dir: &Path,
    args: &IngestBenchArgs,
    src: &Source,
    kind: Kind,
    qs: &[Vec<f32>],
) -> CliResult<Load> {
    let what = kind.name();
    let vectors = kind != Kind::Plain;
    let dir = fresh(dir)?;
    let db = Db::create_with(&dir, src.schema(), options(kind))?;
    let pb = bar(src.docs, &format!("load {what}"));
    let t0 = Instant::now();
    let mut i = 0;
    let mut buf = Vec::new();
    while i < src.docs {
        let mut b = WriteBatch::new();
        let end = (i + args.batch.max(1)).min(src.docs);
        for j in i..end {
            let mut d = src.doc(j, &mut buf)?;
            if !vectors {
                d.vector = None;
            }
            b.put(d);
        }
        db.write(b)?;
        i = end;
        pb.set_position(i);
    }
    let ingest_s = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let mut ready_s = None;
    let mut recall_at_10 = None;
    if !args.ingest_only {
        db.settle()?;
        db.sync()?;
        ready_s = Some(t0.elapsed().as_secs_f64());
        if kind == Kind::Vectors {
            recall_at_10 = Some(recall(&db, qs)?);
        }
    }
    let st = db.stats();
    let l = Load {
        what: what.into(),
        ingest_s,
        ready_s,
        segments: st.segments,
        ann_segments: st.ann_segments,
        compactions: st.compactions,
        write_slowdowns: st.write_slowdowns,
        write_stalls: st.write_stalls,
        bytes_on_disk: 0,
        recall_at_10,
    };
    drop(db);
    Ok(Load {
        bytes_on_disk: dir_bytes(&dir),
        ..l
    })
}

fn build(dir: &Path, src: &Source, qs: &[Vec<f32>]) -> CliResult<(f64, usize, f64)> {
    let dir = fresh(dir)?;
    std::fs::remove_dir(&dir)?;
    let mut buf = Vec::new();
    let docs: Vec<Document> = (0..src.docs)
        .map(|j| src.doc(j, &mut buf))
        .collect::<CliResult<_>>()?;
    let pb = bar(src.docs, "strata build");
    let t0 = Instant::now();
    let report = strata::build::build_database(
        &dir,
        src.schema(),
        docs,
        &strata::build::BuildOptions::default(),
        &|e| {
            if let strata::build::BuildEvent::GraphProgress(n) = e {
                pb.set_position(n);
            }
        },
    )?;
    let secs = t0.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let db = Db::open(&dir, Options::default())?;
    Ok((secs, report.segments, recall(&db, qs)?))
}

pub fn run(args: &IngestBenchArgs) -> CliResult {
    let root = fresh(&args.dir)?;
    let machine = MachineNotes::gather(&root, Vec::new());
    let src = Source::open(args)?;
    let qs = src.queries(args.queries)?;
    let mut loads = Vec::new();
    let mut kinds = vec![Kind::Plain, Kind::VectorsNeverIndexed, Kind::Vectors];
    if args.no_plain {
        kinds.retain(|&k| k == Kind::Vectors);
    }
    for kind in kinds {
        eprintln!("load {}", kind.name());
        loads.push(load(&root.join("db"), args, &src, kind, &qs)?);
        std::fs::remove_dir_all(root.join("db"))?;
    }
    let built = if args.no_build || args.ingest_only {
        None
    } else {
        eprintln!("strata build of the same documents");
        let b = build(&root.join("built"), &src, &qs)?;
        std::fs::remove_dir_all(root.join("built"))?;
        Some(b)
    };
    let with = loads.iter().find(|l| l.what == Kind::Vectors.name());
    let plain = loads.iter().find(|l| l.what == Kind::Plain.name());
    let unindexed = loads
        .iter()
        .find(|l| l.what == Kind::VectorsNeverIndexed.name());
    let report = Report {
        workload: "ingest",
        machine,
        docs: src.docs,
        vectors: args
            .vectors
            .as_ref()
            .map_or("generated uniform 128-d".into(), |p| {
                p.display().to_string()
            }),
        batch: args.batch,
        ingest_ratio: with.zip(plain).map(|(w, p)| w.ingest_s / p.ingest_s),
        indexing_ratio: with.zip(unindexed).map(|(w, u)| w.ingest_s / u.ingest_s),
        ready_ratio: with
            .and_then(|w| w.ready_s)
            .zip(built)
            .map(|(w, b)| w / b.0),
        build_s: built.map(|b| b.0),
        build_segments: built.map(|b| b.1),
        build_recall_at_10: built.map(|b| b.2),
        loads,
    };
    print_report(&report);
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)?)?;
        eprintln!("wrote {}", p.display());
    }
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

fn print_report(r: &Report) {
    println!(
        "Ingest — {} documents (vectors: {}; 5 terms, 2 attrs, 100-byte value), Db::write batches of {}",
        r.docs, r.vectors, r.batch
    );
    println!("machine: {}", r.machine.line());
    println!(
        "{:<16} {:>9} {:>9} {:>5} {:>4} {:>6} {:>6} {:>6} {:>9} {:>7}",
        "load", "ingest s", "ready s", "segs", "ann", "merges", "slow", "stalls", "MB", "rec@10"
    );
    for l in &r.loads {
        println!(
            "{:<16} {:>9.1} {:>9} {:>5} {:>4} {:>6} {:>6} {:>6} {:>9.1} {:>7}",
            l.what,
            l.ingest_s,
            l.ready_s.map_or("-".into(), |r| format!("{r:.1}")),
            l.segments,
            l.ann_segments,
            l.compactions,
            l.write_slowdowns,
            l.write_stalls,
            l.bytes_on_disk as f64 / 1e6,
            l.recall_at_10.map_or("-".into(), |r| format!("{r:.3}")),
        );
    }
    if let (Some(b), Some(s)) = (r.build_s, r.build_segments) {
        println!(
            "{:<16} {:>9} {:>9.1} {:>5} {:>4} {:>6} {:>6} {:>6} {:>9} {:>7}",
            "strata build",
            "-",
            b,
            s,
            s,
            "-",
            "-",
            "-",
            "-",
            r.build_recall_at_10
                .map_or("-".into(), |r| format!("{r:.3}")),
        );
    }
    if let Some(x) = r.ingest_ratio {
        println!("ingest with vectors / without: {x:.2}x (goal <= 1.5x)");
    }
    if let Some(x) = r.indexing_ratio {
        println!("ingest with vectors / never indexed: {x:.2}x (what indexing costs the writes)");
    }
    if let Some(x) = r.ready_ratio {
        println!("index ready / strata build:    {x:.2}x (goal <= 1.2x)");
    }
}
