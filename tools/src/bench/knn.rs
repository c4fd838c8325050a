//! `strata bench knn`: recall@10 vs QPS of Strata's disk graph, warm (page cache) and cold
//! (caches dropped, memory budget a fraction of the raw vectors), against hnswlib (`--peers`)
//! on the same files, same queries, same thread count; build time and peak memory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use strata::{AnnOptions, Db, Document, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use super::{peak_rss, MachineNotes};
use crate::dataset::synth::ClusterModel;
use crate::dataset::{read_ivecs, write_fvecs, write_ivecs, VectorFile};
use crate::CliResult;

#[derive(Args)]
pub struct KnnBenchArgs {
    /// `synthetic` (SIFT-shaped clustered vectors, `--n` x `--dim`, L2) or `real` (the
    /// sentence embeddings in `--data-dir`, cosine).
    #[arg(long, default_value = "synthetic")]
    dataset: String,
    /// Synthetic base vectors.
    #[arg(long, default_value_t = 1_000_000)]
    n: usize,
    /// Synthetic dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Synthetic queries.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Where the real data lives.
    #[arg(long, default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Scratch directory: generated data, ground truth (cached), the database (rebuilt).
    #[arg(long, default_value = "bench-out/knn")]
    dir: PathBuf,
    /// Candidate list sizes (L_search) of the curve.
    #[arg(
        long,
        default_value = "10,16,20,24,28,32,40,48,64,96,128,192,256",
        value_delimiter = ','
    )]
    lists: Vec<usize>,
    /// Sectors per hop.
    #[arg(long, default_value_t = 4)]
    beam_width: usize,
    /// Graph degree R.
    #[arg(long, default_value_t = 48)]
    degree: usize,
    /// Build list L.
    #[arg(long, default_value_t = 64)]
    build_list: usize,
    /// Codes the graph ranks with (as `strata build --codes`): `pq` (dim/4 bytes), `pq:M`,
    /// `auto` (dim/4 or dim/2, measured per segment), `sq8`. Use another `--dir` (or no `--reuse-db`) when changing it.
    #[arg(long, default_value = "pq", value_parser = crate::args::parse_codes)]
    codes: strata::CodeKind,
    /// Cold run: ANN memory budget as a fraction of the raw vector bytes.
    #[arg(long, default_value_t = 0.15)]
    cold_budget: f64,
    /// Skip the cold run.
    #[arg(long)]
    no_cold: bool,
    /// Also a per-query cold curve (mode `cold1`): the first N queries, the page cache dropped
    /// before each one — what a query costs when nothing of it is cached (the `cold` curve
    /// drops caches once per L, and later queries find the sectors earlier ones read).
    #[arg(long, default_value_t = 0)]
    cold_queries: usize,
    /// Reuse the database of an earlier run with the same dataset instead of rebuilding it
    /// (the build figures are then absent).
    #[arg(long)]
    reuse_db: bool,
    /// Internal: only build the database and write its build report (the parent runs the
    /// build in a child process so the searches start from a fresh heap).
    #[arg(long, hide = true)]
    build_only: bool,
    /// Only generate the dataset files and their ground truth (base.fvecs, query.fvecs,
    /// gt.ivecs under `--dir`/data), e.g. for `bench/peers/build_compare.sh`.
    #[arg(long)]
    prepare_only: bool,
    /// Also run the peers of `--peer-systems` from the venvs of bench/peers/setup.sh.
    #[arg(long)]
    peers: bool,
    /// Peers to run: `hnswlib`, `usearch` (HNSW, M=16, ef_construction=200, warm) and
    /// `diskann` (diskannpy's static disk index with Strata's R, build L, threads, beam width
    /// and cold memory budget; its cold curve over `--lists`, caches dropped per L, the block
    /// device's reads counted for both systems).
    #[arg(long, default_value = "hnswlib,usearch", value_delimiter = ',')]
    peer_systems: Vec<String>,
    /// Python of the diskannpy venv (it pins an older numpy, so it lives apart).
    #[arg(long, default_value = "bench-out/venv-diskann/bin/python")]
    diskann_python: PathBuf,
    /// Python of the peers' venv.
    #[arg(long, default_value = "bench-out/venv/bin/python")]
    python: PathBuf,
    /// hnswlib ef values of its curve.
    #[arg(
        long,
        default_value = "10,16,20,24,28,32,40,48,64,96,128,192,256",
        value_delimiter = ','
    )]
    efs: Vec<usize>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
struct Point {
    system: String,
    mode: String,
    param: usize,
    recall: f64,
    qps: f64,
    nodes_per_query: f64,
    sectors_per_query: f64,
    distances_per_query: f64,
    /// Cold runs: KiB the block device read per query (0 warm, or when not measurable).
    #[serde(default)]
    disk_kib_per_query: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct Build {
    system: String,
    seconds: f64,
    threads: usize,
    peak_rss_bytes: u64,
    note: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: MachineNotes,
    dataset: String,
    n: usize,
    dim: usize,
    queries: usize,
    metric: String,
    caches_dropped: bool,
    cold_budget_bytes: u64,
    resident_warm_bytes: u64,
    resident_cold_bytes: u64,
    builds: Vec<Build>,
    points: Vec<Point>,
}

struct Data {
    name: String,
    metric: Metric,
    base_path: PathBuf,
    query_path: PathBuf,
    gt_path: PathBuf,
    dim: usize,
    base: Vec<f32>,
    queries: Vec<Vec<f32>>,
    gt: Vec<Vec<u32>>,
}

fn prepare(a: &KnnBenchArgs) -> Result<Data, Box<dyn std::error::Error + Send + Sync>> {
    let (name, metric) = match a.dataset.as_str() {
        "synthetic" => (format!("synthetic-{}x{}", a.n, a.dim), Metric::L2),
        "real" => ("real".to_owned(), Metric::Cosine),
        other => return Err(format!("unknown dataset {other:?} (synthetic or real)").into()),
    };
    let ddir = a.dir.join("data").join(&name);
    std::fs::create_dir_all(&ddir)?;
    let (base_path, query_path) = match a.dataset.as_str() {
        "real" => (
            a.data_dir.join("base.fvecs"),
            a.data_dir.join("query.fvecs"),
        ),
        _ => (ddir.join("base.fvecs"), ddir.join("query.fvecs")),
    };
    if a.dataset == "synthetic" && !(base_path.exists() && query_path.exists()) {
        eprintln!("generating {name} ...");
        let model = ClusterModel::new(a.dim, (a.n / 1000).clamp(10, 1000), 1);
        let base = model.sample(a.n, 2);
        write_fvecs(
            &base_path,
            &base.chunks(a.dim).map(<[f32]>::to_vec).collect::<Vec<_>>(),
        )?;
        let q = model.sample(a.queries, 3);
        write_fvecs(
            &query_path,
            &q.chunks(a.dim).map(<[f32]>::to_vec).collect::<Vec<_>>(),
        )?;
    }
    let bf = VectorFile::open(&base_path)?;
    let qf = VectorFile::open(&query_path)?;
    let dim = bf.dim();
    let mut base = Vec::with_capacity(bf.len() * dim);
    let mut v = Vec::new();
    for i in 0..bf.len() {
        bf.read(i, &mut v)?;
        base.extend_from_slice(&v);
    }
    let queries = qf.read_all()?;
    let gt_path = ddir.join("gt.ivecs");
    let gt = match read_ivecs(&gt_path) {
        Ok(gt) if gt.len() == queries.len() => gt,
        _ => {
            eprintln!(
                "ground truth by brute force ({} queries) ...",
                queries.len()
            );
            let gt: Vec<Vec<u32>> = queries
                .par_iter()
                .map(|q| {
                    let mut d: Vec<(f32, u32)> = base
                        .chunks_exact(dim)
                        .enumerate()
                        .map(|(i, r)| (strata::distance(metric, q, r), i as u32))
                        .collect();
                    let nth = 99.min(d.len().saturating_sub(1));
                    if !d.is_empty() {
                        d.select_nth_unstable_by(nth, |a, b| a.0.total_cmp(&b.0));
                    }
                    d.truncate(100);
                    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    d.into_iter().map(|x| x.1).collect()
                })
                .collect();
            write_ivecs(&gt_path, &gt)?;
            gt
        }
    };
    Ok(Data {
        name,
        metric,
        base_path,
        query_path,
        gt_path,
        dim,
        base,
        queries,
        gt,
    })
}

fn key(i: usize) -> String {
    format!("{i:010}")
}

fn options(a: &KnnBenchArgs, budget: u64) -> Options {
    Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(usize::MAX / 4)
        // The build is measured alone: every core, like the peer.
        .with_maintenance_threads(rayon::current_num_threads())
        .with_ann_at_flush(true)
        .with_ann(AnnOptions {
            degree: a.degree,
            build_list: a.build_list,
            codes: a.codes,
            memory_budget_bytes: budget,
            // The budget is this benchmark's knob (cached nodes vs sector reads, warm and cold).
            warm: true,
            min_vectors: 1000,
            ..AnnOptions::default()
        })
}

/// How a curve gets its database: one open for every L (warm); or, cold, a fresh open
/// between two page-cache drops per L (mode `cold`) or per query (mode `cold1`, the first `n`
/// queries) — pages a process keeps mapped survive `drop_caches`, so the database is closed
/// first (a run that kept it open measured 12 KiB of device reads per query at L=24 where the
/// engine counted 23 sectors); opens and drops are not timed.
enum Source<'a> {
    Open(&'a Db),
    ColdPerL(&'a dyn Fn() -> strata::Result<Db>),
    ColdPerQuery(&'a dyn Fn() -> strata::Result<Db>, usize),
}

/// Close-drop-open-drop: a database none of whose file pages are cached.
fn open_cold(open: &dyn Fn() -> strata::Result<Db>) -> strata::Result<Db> {
    super::drop_caches();
    let db = open()?;
    // Again after the open: what it read ahead is not the queries' to find.
    super::drop_caches();
    Ok(db)
}

/// Recall, QPS (the queries' own time), work and — cold — device reads per query, for every
/// L of `--lists`.
fn curve(
    src: &Source<'_>,
    d: &Data,
    a: &KnnBenchArgs,
    mode: &str,
) -> Result<Vec<Point>, Box<dyn std::error::Error + Send + Sync>> {
    let nq = match src {
        Source::ColdPerQuery(_, n) => (*n).min(d.queries.len()),
        _ => d.queries.len(),
    };
    let gt: Vec<Vec<usize>> =
        d.gt.iter()
            .take(nq)
            .map(|r| r.iter().map(|&x| x as usize).collect())
            .collect();
    let mut out = Vec::new();
    for &l in &a.lists {
        let per_l = match src {
            Source::ColdPerL(open) => Some(open_cold(*open)?),
            _ => None,
        };
        let (mut st, mut secs, mut read) = (strata::QueryStats::default(), 0.0, 0u64);
        let mut results = Vec::with_capacity(nq);
        for q in d.queries.iter().take(nq) {
            let per_query = match src {
                Source::ColdPerQuery(open, _) => Some(open_cold(*open)?),
                _ => None,
            };
            let (db, cold) = match (src, &per_l, &per_query) {
                (Source::Open(db), _, _) => (*db, false),
                (_, Some(db), _) | (_, _, Some(db)) => (db, true),
                _ => return Err("a cold curve without its database".into()),
            };
            let before = cold.then(|| super::device_read_bytes(db.path())).flatten();
            let query = Query::knn(q.clone(), 10)
                .with_search_list(l)
                .with_beam_width(a.beam_width);
            let t0 = Instant::now();
            let (h, s) = db.search_with_stats(&query)?;
            secs += t0.elapsed().as_secs_f64();
            read += before
                .zip(super::device_read_bytes(db.path()))
                .map_or(0, |(b, e)| e.saturating_sub(b));
            st.nodes_visited += s.nodes_visited;
            st.sectors_read += s.sectors_read;
            st.distance_computations += s.distance_computations;
            results.push(h);
        }
        let n = nq.max(1) as f64;
        let p = Point {
            system: "strata".into(),
            mode: mode.into(),
            param: l,
            recall: super::recall_at(&results, &gt, 10),
            qps: n / secs.max(1e-9),
            nodes_per_query: st.nodes_visited as f64 / n,
            sectors_per_query: st.sectors_read as f64 / n,
            distances_per_query: st.distance_computations as f64 / n,
            disk_kib_per_query: read as f64 / 1024.0 / n,
        };
        println!(
            "  strata {mode:5} L={l:<4} recall@10 {:.4}  QPS {:>8.0}  nodes {:>6.1}  sectors {:>6.1}  disk {:>6.1} KiB",
            p.recall, p.qps, p.nodes_per_query, p.sectors_per_query, p.disk_kib_per_query
        );
        out.push(p);
    }
    Ok(out)
}

/// A k-NN peer (`bench/peers/<system>_knn.py`: hnswlib or usearch, both HNSW with M=16 and
/// ef_construction=200): its build and its recall–QPS points over `--efs`.
fn peer(
    a: &KnnBenchArgs,
    d: &Data,
    threads: usize,
    system: &str,
) -> Result<(Build, Vec<Point>), Box<dyn std::error::Error + Send + Sync>> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../bench/peers/{system}_knn.py"));
    let efs: Vec<String> = a.efs.iter().map(|x| x.to_string()).collect();
    eprintln!("{system}: building (M=16, ef_construction=200, {threads} threads) ...");
    let mut cmd = peer_command(&a.python, &script, d);
    cmd.args(["--threads", &threads.to_string(), "--efs", &efs.join(",")]);
    let mut build = None;
    let mut points = Vec::new();
    for v in run_peer(&mut cmd, &a.python, system)? {
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        match v.get("phase").and_then(|p| p.as_str()) {
            Some("build") => {
                build = Some(Build {
                    system: system.into(),
                    seconds: f("seconds"),
                    threads,
                    peak_rss_bytes: f("peak_rss_bytes") as u64,
                    note: format!(
                        "{system} {} M=16 ef_construction=200; RSS includes the numpy base array",
                        v.get("version").and_then(|x| x.as_str()).unwrap_or("?")
                    ),
                })
            }
            _ => {
                let p = Point {
                    system: system.into(),
                    mode: "warm".into(),
                    param: f("ef") as usize,
                    recall: f("recall"),
                    qps: f("qps"),
                    nodes_per_query: 0.0,
                    sectors_per_query: 0.0,
                    distances_per_query: 0.0,
                    disk_kib_per_query: 0.0,
                };
                println!(
                    "  {system} warm  ef={:<4} recall@10 {:.4}  QPS {:>8.0}",
                    p.param, p.recall, p.qps
                );
                points.push(p);
            }
        }
    }
    let build = build.ok_or(format!("{system} peer printed no build line"))?;
    Ok((build, points))
}

/// Highest QPS among points with recall >= `r`.
fn qps_at<'a>(points: &'a [Point], system: &str, mode: &str, r: f64) -> Option<&'a Point> {
    points
        .iter()
        .filter(|p| p.system == system && p.mode == mode && p.recall >= r)
        .max_by(|a, b| a.qps.total_cmp(&b.qps))
}

pub fn run(a: &KnnBenchArgs) -> CliResult {
    let d = prepare(a)?;
    if a.prepare_only {
        eprintln!("{}: ready", a.dir.join("data").join(&d.name).display());
        return Ok(());
    }
    let n = d.base.len() / d.dim.max(1);
    let threads = rayon::current_num_threads();
    let db_dir = a.dir.join("db").join(&d.name);
    let mut builds = Vec::new();
    let report_path = db_dir.with_extension("build.json");
    if a.build_only {
        let b = build_strata(a, &d, &db_dir, threads)?;
        std::fs::write(&report_path, serde_json::to_string(&b)?)?;
        return Ok(());
    }
    if !(a.reuse_db && db_dir.join(strata::meta::SCHEMA_FILE).exists()) {
        // A child process builds: measured in the same process, the searches that follow
        // ran up to 35 % slower (a fragmented heap without huge pages), and the child's peak
        // RSS is the build's alone.
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .arg("--build-only")
            .status()?;
        if !status.success() {
            return Err(format!("build child failed: {status}").into());
        }
        let b: Build = serde_json::from_str(&std::fs::read_to_string(&report_path)?)?;
        builds.push(b);
    }

    let mut points = Vec::new();
    println!("warm (page cache), 1 thread, default memory budget:");
    let db = Db::open(&db_dir, options(a, 256 << 20))?;
    let resident_warm = db.stats().ann_resident_bytes;
    for q in d.queries.iter().take(200) {
        db.search(&Query::knn(q.clone(), 10).with_search_list(256))?;
    }
    points.extend(curve(&Source::Open(&db), &d, a, "warm")?);
    drop(db);

    let raw = (n * d.dim * 4) as u64;
    let cold_budget = (raw as f64 * a.cold_budget) as u64;
    let mut caches_dropped = false;
    let mut resident_cold = 0;
    if !a.no_cold {
        caches_dropped = super::drop_caches();
        println!(
            "cold, 1 thread, memory budget {:.1} MiB ({:.0} % of raw vectors); caches {}:",
            cold_budget as f64 / f64::from(1u32 << 20),
            a.cold_budget * 100.0,
            if caches_dropped {
                "dropped before each L"
            } else {
                "NOT dropped (needs root)"
            }
        );
        let open = || Db::open(&db_dir, options(a, cold_budget));
        resident_cold = open()?.stats().ann_resident_bytes;
        points.extend(curve(&Source::ColdPerL(&open), &d, a, "cold")?);
        if a.cold_queries > 0 && caches_dropped {
            println!(
                "cold per query: the first {} queries, the database reopened and caches dropped before each:",
                a.cold_queries.min(d.queries.len())
            );
            points.extend(curve(
                &Source::ColdPerQuery(&open, a.cold_queries),
                &d,
                a,
                "cold1",
            )?);
        }
    }

    let mut peers = Vec::new();
    if a.peers {
        for system in a.peer_systems.iter().map(String::as_str) {
            let (b, p) = if system == "diskann" {
                diskann(a, &d, threads)?
            } else {
                peer(a, &d, threads, system)?
            };
            println!(
                "{system} build: {:.1} s ({} threads), peak RSS {:.2} GiB",
                b.seconds,
                threads,
                b.peak_rss_bytes as f64 / f64::from(1u32 << 30)
            );
            peers.push(b.note.clone());
            builds.push(b);
            points.extend(p);
        }
    }

    for r in [0.9, 0.95, 0.99] {
        let s = qps_at(&points, "strata", "warm", r);
        let h = qps_at(&points, "hnswlib", "warm", r);
        let u = qps_at(&points, "usearch", "warm", r);
        // Cold: the fewest sectors that reach the recall (the I/O figure).
        let c = points
            .iter()
            .filter(|p| p.system == "strata" && p.mode == "cold" && p.recall >= r)
            .min_by(|a, b| a.sectors_per_query.total_cmp(&b.sectors_per_query));
        let mut line = format!("recall >= {r}: ");
        if let Some(s) = s {
            line += &format!("strata warm {:.0} QPS (L={})", s.qps, s.param);
        }
        for (name, p) in [("hnswlib", h), ("usearch", u)] {
            if let Some(p) = p {
                line += &format!(", {name} {:.0} QPS (ef={})", p.qps, p.param);
                if let Some(s) = s {
                    line += &format!(", ratio {:.2}x", s.qps / p.qps);
                }
            }
        }
        if let Some(c) = c {
            line += &format!(
                "; cold {:.0} QPS, {:.1} sectors/query, disk {:.1} KiB/query (L={})",
                c.qps, c.sectors_per_query, c.disk_kib_per_query, c.param
            );
        }
        // Per cold mode, each system's point with the least device I/O at this recall
        // (Strata's per-L cold point is the one above).
        for mode in ["cold", "cold1"] {
            for system in ["strata", "diskann"]
                .into_iter()
                .skip(usize::from(mode == "cold"))
            {
                if let Some(k) = points
                    .iter()
                    .filter(|p| p.system == system && p.mode == mode && p.recall >= r)
                    .min_by(|a, b| a.disk_kib_per_query.total_cmp(&b.disk_kib_per_query))
                {
                    line += &format!(
                        "; {system} {mode} {:.0} QPS, disk {:.1} KiB/query (L={})",
                        k.qps, k.disk_kib_per_query, k.param
                    );
                }
            }
        }
        println!("{line}");
    }
    if let (Some(s), Some(h)) = (
        builds.iter().find(|b| b.system == "strata"),
        builds.iter().find(|b| b.system == "hnswlib"),
    ) {
        println!(
            "build time ratio strata/hnswlib: {:.2}",
            s.seconds / h.seconds
        );
    }

    let report = Report {
        machine: MachineNotes::gather(&a.dir, peers),
        dataset: d.name.clone(),
        n,
        dim: d.dim,
        queries: d.queries.len(),
        metric: format!("{:?}", d.metric),
        caches_dropped,
        cold_budget_bytes: cold_budget,
        resident_warm_bytes: resident_warm,
        resident_cold_bytes: resident_cold,
        builds,
        points,
    };
    println!("machine: {}", report.machine.line());
    println!(
        "resident ANN bytes: warm {:.1} MiB, cold {:.1} MiB",
        resident_warm as f64 / f64::from(1u32 << 20),
        resident_cold as f64 / f64::from(1u32 << 20)
    );
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn build_strata(
    a: &KnnBenchArgs,
    d: &Data,
    db_dir: &Path,
    threads: usize,
) -> Result<Build, Box<dyn std::error::Error + Send + Sync>> {
    let n = d.base.len() / d.dim.max(1);
    let _ = std::fs::remove_dir_all(db_dir);
    std::fs::create_dir_all(db_dir.parent().unwrap_or(Path::new(".")))?;

    // Load through the normal write path, then one flush builds the segment and its graph.
    let schema = Schema::new(d.dim as u32, d.metric);
    let db = Db::create_with(db_dir, schema, options(a, 256 << 20))?;
    let bar = ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("load  {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = Instant::now();
    for (c, chunk) in d.base.chunks(d.dim * 1000).enumerate() {
        let mut b = WriteBatch::new();
        for (j, v) in chunk.chunks_exact(d.dim).enumerate() {
            b.put(Document::new(key(c * 1000 + j), "").with_vector(v.to_vec()));
        }
        db.write(b)?;
        bar.inc((chunk.len() / d.dim) as u64);
    }
    bar.finish_and_clear();
    let load_s = t0.elapsed().as_secs_f64();
    let spin = ProgressBar::new_spinner().with_message("flush: segment + PQ codes + Vamana graph");
    spin.enable_steady_tick(std::time::Duration::from_millis(200));
    let t1 = Instant::now();
    db.flush()?;
    let build_s = t1.elapsed().as_secs_f64();
    spin.finish_and_clear();
    let b = Build {
        system: "strata".into(),
        seconds: build_s,
        threads,
        peak_rss_bytes: peak_rss(),
        note: format!(
            "flush of one {n}-document segment (PQ codes + Vamana R={} L={} + sectors + write); \
             load through the WAL took {load_s:.1} s more; peak RSS of the build process, \
             including the base array and the memtable",
            a.degree, a.build_list
        ),
    };
    println!(
        "strata build: {:.1} s ({} threads), peak RSS {:.2} GiB",
        build_s,
        threads,
        b.peak_rss_bytes as f64 / f64::from(1u32 << 30)
    );
    drop(db);
    Ok(b)
}

/// `python script` with the inputs every k-NN peer script takes: the same base, queries and
/// ground truth as Strata, and the metric.
fn peer_command(python: &Path, script: &Path, d: &Data) -> std::process::Command {
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .args(["--base".as_ref(), d.base_path.as_os_str()])
        .args(["--query".as_ref(), d.query_path.as_os_str()])
        .args(["--gt".as_ref(), d.gt_path.as_os_str()])
        .args([
            "--space",
            if d.metric == Metric::Cosine {
                "cosine"
            } else {
                "l2"
            },
        ]);
    cmd
}

/// Run a peer script (`cmd`, with `python`) and parse the JSON objects it prints, one per
/// line (other lines — a library's own chatter — are skipped).
fn run_peer(
    cmd: &mut std::process::Command,
    python: &Path,
    system: &str,
) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error + Send + Sync>> {
    let out = cmd.output().map_err(|e| {
        format!(
            "running {}: {e} (run bench/peers/setup.sh)",
            python.display()
        )
    })?;
    if !out.status.success() {
        return Err(format!(
            "{system} peer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The diskannpy peer (`bench/peers/diskann_knn.py`, in its own venv): its disk index built
/// (or reused with `--reuse-db`) with Strata's R, build L, threads and cold budget, and its
/// cold curve over `--lists` at `--beam-width`, one thread.
fn diskann(
    a: &KnnBenchArgs,
    d: &Data,
    threads: usize,
) -> Result<(Build, Vec<Point>), Box<dyn std::error::Error + Send + Sync>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/diskann_knn.py");
    let index = a.dir.join("diskann").join(&d.name);
    let lists: Vec<String> = a.lists.iter().map(|x| x.to_string()).collect();
    eprintln!(
        "diskann: {} (R={}, L={}, {threads} threads) ...",
        if a.reuse_db {
            "opening or building"
        } else {
            "building"
        },
        a.degree,
        a.build_list
    );
    let mut cmd = peer_command(&a.diskann_python, &script, d);
    cmd.args(["--index".as_ref(), index.as_os_str()])
        .args([
            "--R",
            &a.degree.to_string(),
            "--L",
            &a.build_list.to_string(),
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--search-memory-fraction", &a.cold_budget.to_string()])
        .args([
            "--beam",
            &a.beam_width.to_string(),
            "--efs",
            &lists.join(","),
        ]);
    if a.reuse_db {
        cmd.arg("--reuse");
    }
    if a.cold_queries > 0 {
        cmd.args(["--cold-queries", &a.cold_queries.to_string()]);
    }
    let mut build = None;
    let mut points = Vec::new();
    for v in run_peer(&mut cmd, &a.diskann_python, "diskann")? {
        let f = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        match v.get("phase").and_then(|p| p.as_str()) {
            Some("build") => {
                build = Some(Build {
                    system: "diskann".into(),
                    seconds: f("seconds"),
                    threads,
                    peak_rss_bytes: f("peak_rss_bytes") as u64,
                    note: format!(
                        "diskannpy {} R={} L={}, search memory {:.0} % of raw vectors (PQ), no node cache{}",
                        v.get("version").and_then(|x| x.as_str()).unwrap_or("?"),
                        a.degree,
                        a.build_list,
                        a.cold_budget * 100.0,
                        if v.get("reused").is_some() { "; index reused" } else { "" }
                    ),
                })
            }
            Some("search") => {
                let mode = v.get("mode").and_then(|m| m.as_str()).unwrap_or("cold");
                let p = Point {
                    system: "diskann".into(),
                    mode: mode.into(),
                    param: f("ef") as usize,
                    recall: f("recall"),
                    qps: f("qps"),
                    nodes_per_query: 0.0,
                    sectors_per_query: 0.0,
                    distances_per_query: 0.0,
                    disk_kib_per_query: f("disk_kib_per_query"),
                };
                println!(
                    "  diskann {mode:5} L={:<4} recall@10 {:.4}  QPS {:>8.0}  disk {:>6.1} KiB",
                    p.param, p.recall, p.qps, p.disk_kib_per_query
                );
                points.push(p);
            }
            _ => {}
        }
    }
    let build = build.ok_or("diskann peer printed no build line")?;
    Ok((build, points))
}
