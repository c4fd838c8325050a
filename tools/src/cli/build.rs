//! `strata build`: the offline builder from vector files (+ JSONL documents).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::ops::progress_bar as bar;
use clap::Args;
use strata::build::{
    build_database, segment_docs_for_budget, BuildEvent, BuildOptions, BuildReport,
};
use strata::shards::{Shard, ShardSet};
use strata::{AnnOptions, Metric, Schema};

use super::docs::{read_jsonl, DocLine};
use crate::bench::peak_rss;
use crate::dataset::VectorFile;
use crate::CliResult;

#[derive(Args)]
pub struct BuildArgs {
    /// The database directory to create (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Vectors: `.fvecs`, `.bvecs` or `.npy` (memory-mapped). Without it, every JSONL line
    /// carries a `vector`.
    #[arg(long)]
    vectors: Option<PathBuf>,
    /// JSONL documents: line i describes vector i (key, terms, attrs, value).
    #[arg(long)]
    docs: Option<PathBuf>,
    /// Distance metric.
    #[arg(long, value_parser = ["l2", "ip", "cosine"])]
    metric: String,
    /// Expected dimension (checked against the data).
    #[arg(long)]
    dim: Option<u32>,
    /// Memory for the build (e.g. 4GiB, 512MiB): sets how many documents go into one segment
    /// (one graph). Default 4GiB.
    #[arg(long, default_value = "4GiB")]
    memory_budget: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Graph degree R.
    #[arg(long, default_value_t = AnnOptions::default().degree)]
    degree: usize,
    /// Compressed codes the graph search and the scans rank with: `pq` (product quantisation
    /// with dim/4 one-byte sub-spaces, the default), `pq:M` (M sub-spaces, 1..=dim: fewer is
    /// a cheaper distance that ranks less well), `auto` (dim/4, or dim/2 where dim/4
    /// measurably ranks too few true neighbours) or `sq8` (one byte per dimension).
    #[arg(long, default_value = "pq", value_parser = crate::args::parse_codes)]
    codes: strata::CodeKind,
    /// Skip the planner's calibration of each segment (measured recall and time per plan on
    /// 64–128 sample queries: +14–44 % of the build on the shared real sets); uncalibrated
    /// segments use the fixed cost model.
    #[arg(long)]
    no_calibrate: bool,
    /// Build only shard I of N (`--shard 2/8`): the documents whose key routes to it by the
    /// shard set's stable hash (`strata::shards::shard_of`), as one ordinary database.
    #[arg(long, value_parser = parse_shard, conflicts_with = "shards")]
    shard: Option<(u32, u32)>,
    /// Build a shard set of N databases (`OUT/shard-0000` ...) and its `SHARDS.json`, written
    /// last; `strata inspect`/`verify` read the set, the Python package serves it.
    #[arg(long)]
    shards: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Parse `I/N` (0 <= I < N).
pub fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i >= n || n > strata::shards::SHARDS_MAX {
        return Err(bad());
    }
    Ok((i, n))
}

/// Parse `4GiB`, `512MiB`, `100KiB`, `123` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?} (examples: 4GiB, 512MiB, 1000000)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

pub fn run(a: &BuildArgs) -> CliResult {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .map_err(|e| format!("--threads: {e}"))?;
    }
    let metric = Metric::parse(&a.metric)?;
    if a.out.exists() {
        return Err(format!("{} already exists", a.out.display()).into());
    }
    let budget = parse_bytes(&a.memory_budget)?;
    let t0 = Instant::now();

    // Read: vectors (mapped), documents.
    let lines: Vec<DocLine> = match &a.docs {
        Some(p) => read_jsonl(p)?,
        None => Vec::new(),
    };
    let file = a.vectors.as_deref().map(VectorFile::open).transpose()?;
    let (n, dim) = match &file {
        Some(f) => {
            if a.docs.is_some() && lines.len() != f.len() {
                return Err(format!(
                    "{} has {} lines, {} has {} vectors: line i describes vector i",
                    a.docs
                        .as_deref()
                        .map(Path::display)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    lines.len(),
                    f.path().display(),
                    f.len()
                )
                .into());
            }
            (f.len(), f.dim())
        }
        None => {
            if a.docs.is_none() {
                return Err("give --vectors FILE, --docs FILE.jsonl, or both".into());
            }
            let dim = lines
                .first()
                .and_then(|l| l.vector.as_ref())
                .map(Vec::len)
                .ok_or("without --vectors, every JSONL line needs a \"vector\"")?;
            (lines.len(), dim)
        }
    };
    if let Some(d) = a.dim {
        if d as usize != dim {
            return Err(format!("--dim {d}, but the data has dimension {dim}").into());
        }
    }
    let attrs: BTreeSet<&str> = lines
        .iter()
        .flat_map(|l| l.attrs.keys().map(String::as_str))
        .collect();
    let mut schema = Schema::new(
        u32::try_from(dim).map_err(|_| "dimension too large")?,
        metric,
    );
    for name in &attrs {
        schema = schema.with_attr(name);
    }

    let read = bar(n as u64, "read");
    let mut docs = Vec::with_capacity(n);
    let mut lines = lines.into_iter();
    let mut v = Vec::new();
    let mut skipped = 0usize;
    for i in 0..n {
        let line = lines.next().unwrap_or_default();
        if let Some((want, of)) = a.shard {
            let key = line.key.clone().unwrap_or_else(|| i.to_string());
            if strata::shards::shard_of(key.as_bytes(), of)? != want {
                skipped += 1;
                read.inc(1);
                continue;
            }
        }
        let vector = match &file {
            Some(f) => {
                f.read(i, &mut v)?;
                if i % 65_536 == 65_535 {
                    // The copies below are what the build holds; the mapped input need not
                    // stay resident (1.5 GB for 1 M × 384).
                    f.release_rows_below(i);
                }
                Some(v.clone())
            }
            None => None,
        };
        if file.is_none() && line.vector.as_ref().map(Vec::len) != Some(dim) {
            return Err(format!(
                "{}: line {}: \"vector\" missing or not of dimension {dim}",
                a.docs
                    .as_deref()
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                i + 1
            )
            .into());
        }
        docs.push(line.into_document(i.to_string(), vector));
        read.inc(1);
    }
    read.finish_and_clear();
    drop(file);
    let read_s = t0.elapsed().as_secs_f64();

    let ann = AnnOptions {
        degree: a.degree,
        codes: a.codes,
        min_vectors: 1000,
        calibrate: !a.no_calibrate,
        ..AnnOptions::default()
    };
    // Segment size from the budget (the estimate is `segment_docs_for_budget`'s).
    let (segment_docs_max, over) = segment_docs_for_budget(docs.len(), dim, &ann, budget);
    if over {
        eprintln!(
            "strata build: warning: the documents alone take more than --memory-budget; \
             building with the smallest segments"
        );
    }
    let opts = BuildOptions {
        segment_docs_max,
        ann,
    };

    // Build next to the target, rename at the end: nothing half-written on failure.
    let parent = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = a
        .out
        .file_name()
        .ok_or("--out needs a directory name")?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.building-{}", std::process::id()));
    let t1 = Instant::now();
    let built = match a.shards {
        None => build_one(&tmp, schema, docs, &opts).map(|r| (r, None)),
        Some(n) => build_set(&tmp, schema, docs, &opts, n).map(|(r, set)| (r, Some(set))),
    };
    let (report, set) = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &a.out) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!("rename to {}: {e}", a.out.display()).into());
    }
    let build_s = t1.elapsed().as_secs_f64();
    let peak = peak_rss();
    if a.json {
        let phases: serde_json::Map<String, serde_json::Value> =
            std::iter::once(("read".to_owned(), read_s.into()))
                .chain(report.phases.iter().map(|(k, v)| (k.clone(), (*v).into())))
                .collect();
        println!(
            "{}",
            serde_json::json!({
                "out": a.out.display().to_string(),
                "documents": report.documents,
                "segments": report.segments,
                "bytes": report.bytes,
                "seconds": t0.elapsed().as_secs_f64(),
                "phases": phases,
                "peak_rss_bytes": peak,
                "skipped_other_shards": skipped,
                "shards": set.as_ref().map(|s| s.shards.iter().map(|sh| serde_json::json!({
                    "path": sh.path, "build_id": sh.build_id, "documents": sh.documents,
                })).collect::<Vec<_>>()),
            })
        );
    } else {
        println!(
            "built {}: {} documents, {} segment(s), {:.1} MiB, dim {dim}, {}",
            a.out.display(),
            report.documents,
            report.segments,
            report.bytes as f64 / f64::from(1u32 << 20),
            a.metric
        );
        if let Some((i, n)) = a.shard {
            println!("  shard {i}/{n}: {skipped} documents of other shards skipped");
        }
        if let Some(set) = &set {
            for sh in &set.shards {
                println!(
                    "  {} ({} documents, build {})",
                    sh.path, sh.documents, sh.build_id
                );
            }
        }
        println!("  read {read_s:.1} s");
        for (k, v) in &report.phases {
            println!("  {k} {v:.1} s");
        }
        println!(
            "  total {:.1} s (build {build_s:.1} s), peak memory {:.2} GiB",
            t0.elapsed().as_secs_f64(),
            peak as f64 / f64::from(1u32 << 30)
        );
    }
    Ok(())
}

/// Build one database in `dir` with progress bars.
fn build_one(
    dir: &Path,
    schema: Schema,
    docs: Vec<strata::Document>,
    opts: &BuildOptions,
) -> CliResult<BuildReport> {
    let graph = bar(0, "graph");
    let result = build_database(dir, schema, docs, opts, &|e| match e {
        BuildEvent::Segment { docs, .. } => {
            graph.set_length(docs as u64);
            graph.set_position(0);
        }
        BuildEvent::GraphProgress(done) => graph.set_position(done),
    });
    graph.finish_and_clear();
    Ok(result?)
}

/// Build a shard set of `n` databases in `dir` (`shard-0000` ...), the set file last.
fn build_set(
    dir: &Path,
    schema: Schema,
    docs: Vec<strata::Document>,
    opts: &BuildOptions,
    n: u32,
) -> CliResult<(BuildReport, ShardSet)> {
    if n == 0 || n > strata::shards::SHARDS_MAX {
        return Err(format!("--shards {n}: expected 1..={}", strata::shards::SHARDS_MAX).into());
    }
    let mut parts: Vec<Vec<strata::Document>> = (0..n).map(|_| Vec::new()).collect();
    for d in docs {
        let s = strata::shards::shard_of(&d.key, n)? as usize;
        if let Some(p) = parts.get_mut(s) {
            p.push(d);
        }
    }
    std::fs::create_dir(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut total = BuildReport::default();
    let mut shards = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
        let path = format!("shard-{i:04}");
        let r = build_one(&dir.join(&path), schema.clone(), part, opts)?;
        shards.push(Shard {
            build_id: Shard::new_build_id(&path),
            path,
            documents: r.documents as u64,
        });
        total.documents += r.documents;
        total.segments += r.segments;
        total.bytes += r.bytes;
        for (k, v) in r.phases {
            match total.phases.iter_mut().find(|(name, _)| *name == k) {
                Some(p) => p.1 += v,
                None => total.phases.push((k, v)),
            }
        }
    }
    let set = ShardSet { schema, shards };
    set.write(dir)?;
    Ok((total, set))
}
