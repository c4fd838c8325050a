//! `strata bench filtered`: filtered k-NN by selectivity bucket (100 % … 0.01 %), on the real
//! embeddings with their real tags (`--dataset real`) or on the generated social set
//! (`--dataset social`, ≥ 1M posts: Zipfian, cluster-correlated and anti-correlated tags, two
//! tags AND-ed, OR, NOT, a timestamp range, and the friends-of operator): recall@10 against
//! brute force, QPS, p50/p99 latency and the plans the planner chose; `--peers` runs hnswlib,
//! faiss and LanceDB on the same data, allowed ids and ground truth (computed once, cached).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use rayon::prelude::*;
use serde::Serialize;
use strata::{Db, Document, Filter, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use super::{percentile, MachineNotes};
use crate::dataset::social::{self, Post, Social, SocialSpec};
use crate::dataset::{write_fvecs, RealData};
use crate::CliResult;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    /// `../shared/data`: real sentence embeddings with their real category tags.
    Real,
    /// Generated social-search data (`dataset/social.rs`) at `--posts`.
    Social,
}

#[derive(Args)]
pub struct FilteredBenchArgs {
    /// Which data.
    #[arg(long, value_enum, default_value = "real")]
    dataset: Dataset,
    /// Where the real data lives.
    #[arg(long, default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Scratch directory (the database is rebuilt; generated data and ground truth are cached
    /// next to it).
    #[arg(long, default_value = "bench-out/filtered")]
    dir: PathBuf,
    /// Real data: target selectivities (fractions of the base set), one tag per target.
    #[arg(long, default_value = "1,0.1,0.01,0.001,0.0001", value_delimiter = ',')]
    selectivities: Vec<f64>,
    /// Social data: posts, dimensions, queries, seed.
    #[arg(long, default_value_t = 1_000_000)]
    posts: usize,
    #[arg(long, default_value_t = 64)]
    dim: usize,
    #[arg(long, default_value_t = 100)]
    queries: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Search list sizes (L: the graph's candidate list, the partition walk's target of
    /// 16 L matches) to sweep; each filter reports the fastest that reaches recall@10 0.95
    /// (the peers are swept the same way) and the whole sweep in the JSON.
    #[arg(
        long,
        default_value = "16,24,32,48,64,128,256,512",
        value_delimiter = ','
    )]
    lists: Vec<usize>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run the peers (hnswlib with a filter callable, faiss HNSW and IVF with an
    /// IDSelector, LanceDB prefilter and postfilter) from the venv of bench/peers/setup.sh on
    /// the same data, allowed ids and ground truth.
    #[arg(long)]
    peers: bool,
    /// Python of the peers' venv.
    #[arg(long, default_value = "bench-out/venv/bin/python")]
    python: PathBuf,
    /// Run only the filters whose text contains this (profiling one case).
    #[arg(long)]
    only: Option<String>,
    /// Run each case's queries this many times (profiling; QPS and latency over all runs).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Social data: open the database a previous run built from the same parameters instead
    /// of loading it again.
    #[arg(long)]
    reuse_db: bool,
    /// Peers to run (comma-separated subset of the default).
    #[arg(
        long,
        default_value = "hnswlib,faiss-hnsw,faiss-ivf,lancedb-prefilter,lancedb-postfilter"
    )]
    peer_systems: String,
    /// Force a plan on every indexed segment (calibrating the cost model); `auto` = the
    /// planner's choice.
    #[arg(long, value_enum, default_value = "auto")]
    plan: crate::args::PlanArg,
    /// Peers: stop raising a system's search parameter once one setting takes this long.
    #[arg(long, default_value_t = 20.0)]
    peer_seconds_max: f64,
    /// Append one JSON line per query to this file (filter, list, the query's recall@10 and,
    /// per segment, the plan, its list, the predicted recall and the features the calibrated
    /// planner measured): which queries miss, and what the planner believed.
    #[arg(long)]
    trace: Option<PathBuf>,
}

/// Mean work per query (see [`Bucket::work`]).
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Work {
    lists: f64,
    members: f64,
    nodes: f64,
    distances: f64,
}

/// One peer measurement: system, bucket tag, ef, recall, QPS.
#[derive(Debug, serde::Deserialize, Serialize)]
struct PeerPoint {
    system: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    ef: u64,
    #[serde(default)]
    recall: f64,
    #[serde(default)]
    qps: f64,
    /// Queries answered (a setting out of time is measured on a prefix).
    #[serde(default)]
    queries: u64,
    #[serde(default)]
    partial: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Bucket {
    /// The selectivity bucket (nearest of 100 %, 10 %, 1 %, 0.1 %, 0.01 % on a log scale).
    target: f64,
    /// What kind of filter: tag, correlated, anti-correlated, and2, or, not, range, friends.
    family: String,
    /// The filter (the peers' bucket key).
    tag: String,
    selectivity: f64,
    recall: f64,
    qps: f64,
    p50_us: u64,
    p99_us: u64,
    plans: BTreeMap<String, u64>,
    /// Per query (summed over segments): partition lists walked, list members tested or
    /// matches bucketed, graph nodes expanded, distance computations (codes + full).
    #[serde(default)]
    work: Work,
    /// The list of the reported point, and every (list, recall, QPS) of the sweep.
    list: usize,
    sweep: Vec<(usize, f64, f64)>,
}

/// One filter of the run: its family, the filter, and the base rows it matches (computed
/// from the dataset's own metadata, not by the engine: the reference).
struct Case {
    family: String,
    filter: Filter,
    ids: Vec<usize>,
}

/// The loaded data: the database, the vectors, the cases, and the files the peers read.
struct Loaded {
    title: String,
    db: Db,
    metric: Metric,
    base: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    cases: Vec<Case>,
    base_path: PathBuf,
    query_path: PathBuf,
    /// Ground truth cache (JSON: filter text → rows), if the data is generated.
    gt_cache: Option<PathBuf>,
}

const TARGETS: [f64; 5] = [1.0, 0.1, 0.01, 0.001, 0.0001];

/// The bucket of a selectivity: the nearest target on a log scale.
fn bucket_of(sel: f64) -> f64 {
    let l = sel.max(1e-9).log10();
    TARGETS
        .iter()
        .copied()
        .min_by(|a, b| (a.log10() - l).abs().total_cmp(&(b.log10() - l).abs()))
        .unwrap_or(1.0)
}

fn db_options() -> Options {
    Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(usize::MAX / 4)
        .with_ann_at_flush(true)
}

fn load_real(a: &FilteredBenchArgs) -> CliResult<Loaded> {
    let data = RealData::open(&a.data_dir)?;
    let n = data.base.len();
    let dim = data.base.dim();
    let base = data.base.read_all()?;
    let queries = data.queries.read_all()?;
    let _ = std::fs::remove_dir_all(&a.dir);
    let db = Db::create_with(
        &a.dir,
        Schema::new(dim as u32, Metric::Cosine),
        db_options(),
    )?;
    for (c, chunk) in base.chunks(1000).enumerate() {
        let mut b = WriteBatch::new();
        for (j, v) in chunk.iter().enumerate() {
            let i = c * 1000 + j;
            let mut d = Document::new(format!("{i:08}"), "").with_vector(v.clone());
            d.terms = data.base_tags.get(i).cloned().unwrap_or_default();
            b.put(d);
        }
        db.write(b)?;
    }
    db.flush()?;
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for tags in &data.base_tags {
        for t in tags {
            *freq.entry(t.as_str()).or_default() += 1;
        }
    }
    let mut cases = Vec::new();
    let mut seen = HashSet::new();
    for &target in &a.selectivities {
        let Some(tag) = freq
            .iter()
            .filter(|(_, c)| **c >= 10)
            .min_by(|x, y| {
                let dx = (*x.1 as f64 / n as f64 - target).abs();
                let dy = (*y.1 as f64 / n as f64 - target).abs();
                dx.total_cmp(&dy).then(x.0.cmp(y.0))
            })
            .map(|(t, _)| t.to_string())
        else {
            continue;
        };
        if !seen.insert(tag.clone()) {
            continue;
        }
        let ids = (0..n)
            .filter(|&i| data.base_tags.get(i).is_some_and(|t| t.contains(&tag)))
            .collect();
        cases.push(Case {
            family: "tag".into(),
            filter: Filter::term(&tag),
            ids,
        });
    }
    Ok(Loaded {
        title: format!("real data ({n} × {dim}, cosine)"),
        db,
        metric: Metric::Cosine,
        base,
        queries,
        cases,
        base_path: a.data_dir.join("base.fvecs"),
        query_path: a.data_dir.join("query.fvecs"),
        gt_cache: None,
    })
}

/// A predicate over a post, the reference for a case's filter.
type Pred<'a> = Box<dyn Fn(&Post) -> bool + Send + Sync + 'a>;

fn has(p: &Post, t: &str) -> bool {
    p.terms.iter().any(|x| x == t)
}

/// The social cases: every family at the selectivities it reaches.
fn social_cases(s: &Social) -> Vec<(String, String, Pred<'_>)> {
    let mut out: Vec<(String, String, Pred<'_>)> = Vec::new();
    let term = |fam: &str, t: String| -> (String, String, Pred<'_>) {
        let t2 = t.clone();
        (fam.to_string(), t, Box::new(move |p: &Post| has(p, &t2)))
    };
    for r in [1, 10, 100, 1000, 10_000] {
        out.push(term("tag", format!("z{r}")));
    }
    for t in ["g10:0", "g100:0", "g1000:0", "g10000:0"] {
        out.push(term("correlated", t.to_string()));
    }
    for t in ["anti10", "anti1", "anti01", "anti001"] {
        out.push(term("anti-correlated", t.to_string()));
    }
    for (x, y) in [(3u32, 33u32), (10, 100), (10, 1000), (30, 300)] {
        let (tx, ty) = (format!("z{x}"), format!("z{y}"));
        out.push((
            "and2".into(),
            format!("(and {tx} {ty})"),
            Box::new(move |p: &Post| has(p, &tx) && has(p, &ty)),
        ));
    }
    for (x, y) in [(20u32, 21u32), (200, 201), (2000, 2001)] {
        let (tx, ty) = (format!("z{x}"), format!("z{y}"));
        out.push((
            "or".into(),
            format!("(or {tx} {ty})"),
            Box::new(move |p: &Post| has(p, &tx) || has(p, &ty)),
        ));
    }
    out.push((
        "not".into(),
        "(not lang:en)".into(),
        Box::new(|p: &Post| !has(p, "lang:en")),
    ));
    out.push((
        "not".into(),
        "(and (not lang:en) (not lang:de) (not spam))".into(),
        Box::new(|p: &Post| !has(p, "lang:en") && !has(p, "lang:de") && !has(p, "spam")),
    ));
    for frac in [0.1, 0.001] {
        let lo = social::TS_BASE + social::TS_SPAN / 3;
        let hi = lo + (social::TS_SPAN as f64 * frac) as i64 - 1;
        out.push((
            "range".into(),
            format!("(range ts {lo} {hi})"),
            Box::new(move |p: &Post| p.ts >= lo && p.ts <= hi),
        ));
    }
    // Friends of a user, in English, not spam: users picked so the posts by their friends land
    // near 1 % and 0.1 % (the friend graph and authorship are skewed, so this is searched).
    let n = s.posts.len().max(1) as f64;
    let mut by_author: HashMap<u32, usize> = HashMap::new();
    for p in &s.posts {
        *by_author.entry(p.author).or_default() += 1;
    }
    for target in [0.01f64, 0.001] {
        let pick = (0..s.friends.len().min(400) as u32)
            .map(|x| {
                let f = s.friends_of(x);
                let posts: usize = f.iter().filter_map(|u| by_author.get(u)).sum();
                (x, posts as f64 / n)
            })
            .min_by(|a, b| {
                (a.1.max(1e-9).log10() - target.log10())
                    .abs()
                    .total_cmp(&(b.1.max(1e-9).log10() - target.log10()).abs())
            });
        if let Some((x, _)) = pick {
            let friends: HashSet<u32> = s.friends_of(x).into_iter().collect();
            out.push((
                "friends".into(),
                format!("(and (apply author uid friend-of:{x}) lang:en (not spam))"),
                Box::new(move |p: &Post| {
                    friends.contains(&p.author) && has(p, "lang:en") && !has(p, "spam")
                }),
            ));
        }
    }
    out
}

/// Load the posts and users of `s` into a fresh database and flush it with its graph.
fn build_social_db(a: &FilteredBenchArgs, s: &Social) -> CliResult<Db> {
    let _ = std::fs::remove_dir_all(&a.dir);
    let schema = Schema::new(s.spec.dim as u32, Metric::L2)
        .with_attr("ts")
        .with_attr("uid");
    let db = Db::create_with(&a.dir, schema, db_options())?;
    let t = Instant::now();
    let bar = indicatif::ProgressBar::new(s.spec.posts as u64);
    for (c, chunk) in s.posts.chunks(1000).enumerate() {
        let mut b = WriteBatch::new();
        for (j, p) in chunk.iter().enumerate() {
            let i = c * 1000 + j;
            let mut d = Document::new(format!("{i:08}"), "")
                .with_vector(s.vector(i).to_vec())
                .with_attr("ts", p.ts);
            d.terms = p.terms.clone();
            b.put(d);
        }
        db.write(b)?;
        bar.inc(chunk.len() as u64);
    }
    for (u, friends) in s.friends.iter().enumerate() {
        let mut d = Document::new(format!("user-{u:07}"), "").with_attr("uid", u as i64);
        d.terms = friends.iter().map(|x| format!("friend-of:{x}")).collect();
        db.put(d)?;
    }
    bar.finish_and_clear();
    println!(
        "loaded in {:.1} s; building the graph …",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    db.flush()?;
    println!("flushed with graph in {:.1} s", t.elapsed().as_secs_f64());
    Ok(db)
}

fn load_social(a: &FilteredBenchArgs) -> CliResult<Loaded> {
    let spec = SocialSpec::new(a.posts, a.dim, a.queries, a.seed);
    let t = Instant::now();
    let s = Social::generate(spec);
    println!(
        "generated {} posts, {} users ({:.1} s)",
        s.posts.len(),
        s.friends.len(),
        t.elapsed().as_secs_f64()
    );
    let cache = a.dir.with_file_name(format!(
        "social-{}x{}-q{}-s{}",
        spec.posts, spec.dim, spec.queries, spec.seed
    ));
    std::fs::create_dir_all(&cache)?;
    let base: Vec<Vec<f32>> = (0..spec.posts).map(|i| s.vector(i).to_vec()).collect();
    let queries: Vec<Vec<f32>> = (0..spec.queries).map(|i| s.query(i).to_vec()).collect();
    let (base_path, query_path) = (cache.join("base.fvecs"), cache.join("query.fvecs"));
    if !base_path.exists() || !query_path.exists() {
        write_fvecs(&base_path, &base)?;
        write_fvecs(&query_path, &queries)?;
    }
    let marker = a.dir.with_extension("spec.json");
    let built_from = std::fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<SocialSpec>(&b).ok());
    let db = if a.reuse_db && built_from == Some(spec) {
        println!("reusing the database in {}", a.dir.display());
        Db::open(&a.dir, db_options())?
    } else {
        build_social_db(a, &s)?
    };
    std::fs::write(&marker, serde_json::to_vec(&spec)?)?;
    let cases = social_cases(&s)
        .into_par_iter()
        .map(|(family, text, pred)| {
            let ids = (0..s.posts.len())
                .filter(|&i| s.posts.get(i).is_some_and(&pred))
                .collect();
            Ok(Case {
                family,
                filter: Filter::parse(&text)?,
                ids,
            })
        })
        .collect::<strata::Result<Vec<Case>>>()?;
    Ok(Loaded {
        title: format!(
            "generated social data ({} posts × {}, L2, {} clusters, {} users, seed {})",
            spec.posts, spec.dim, spec.clusters, spec.users, spec.seed
        ),
        db,
        metric: Metric::L2,
        base,
        queries,
        cases,
        base_path,
        query_path,
        gt_cache: Some(cache.join("gt.json")),
    })
}

/// Exact top-10 over `ids` for every query (rows of base ordinals; ties by ordinal).
fn ground_truth(
    metric: Metric,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    ids: &[usize],
) -> Vec<Vec<usize>> {
    queries
        .par_iter()
        .map(|q| {
            let mut d: Vec<(f32, usize)> = ids
                .iter()
                .filter_map(|&i| Some((strata::distance(metric, q, base.get(i)?), i)))
                .collect();
            let cmp = |x: &(f32, usize), y: &(f32, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
            if d.len() > 10 {
                d.select_nth_unstable_by(10, cmp);
                d.truncate(10);
            }
            d.sort_by(cmp);
            d.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

fn load_gt_cache(p: &Path) -> HashMap<String, Vec<Vec<usize>>> {
    std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// One line of `--trace`: the query's recall and what each segment chose and predicted.
fn write_trace(
    f: &mut std::fs::File,
    filter: &str,
    list: usize,
    query: usize,
    hits: &[strata::Hit],
    want: &[usize],
    st: &strata::QueryStats,
) -> CliResult {
    use std::io::Write;
    let recall = super::recall_at(&[hits.to_vec()], &[want.to_vec()], 10);
    let segments: Vec<serde_json::Value> = st
        .explain
        .iter()
        .filter(|e| e.segment.is_some())
        .map(|e| {
            serde_json::json!({
                "segment": e.segment,
                "plan": format!("{:?}", e.plan),
                "list": e.list,
                "matches": e.matches,
                "nodes": e.nodes_visited,
                "predicted": e.predicted_recall,
                "density": e.local_density,
                "near": e.near_density,
                "outside": e.outside,
                "micros": e.micros,
            })
        })
        .collect();
    let line = serde_json::json!({
        "filter": filter, "list": list, "query": query, "recall": recall, "segments": segments,
    });
    writeln!(f, "{line}")?;
    Ok(())
}

/// Run `case`'s queries at graph list `list`: recall against `gt`, QPS, latency, plans.
fn measure(
    l: &Loaded,
    case: &Case,
    gt: &[Vec<usize>],
    list: usize,
    repeat: usize,
    plan: strata::PlanHint,
    trace: &mut Option<std::fs::File>,
) -> CliResult<Bucket> {
    let n = l.base.len();
    let text = case.filter.to_string();
    let mut lat = Vec::with_capacity(l.queries.len());
    let mut plans = BTreeMap::new();
    let mut work = Work::default();
    let t0 = Instant::now();
    let mut results = Vec::with_capacity(l.queries.len());
    for (qi, q) in l
        .queries
        .iter()
        .cycle()
        .take(l.queries.len() * repeat.max(1))
        .enumerate()
    {
        let t = Instant::now();
        let (h, st) = l.db.search_with_stats(
            &Query::knn(q.clone(), 10)
                .with_filter(case.filter.clone())
                .with_search_list(list)
                .with_plan(plan),
        )?;
        lat.push(t.elapsed().as_micros() as u64);
        for e in st.explain.iter().filter(|e| e.segment.is_some()) {
            *plans.entry(format!("{:?}", e.plan)).or_insert(0u64) += 1;
            work.lists += e.lists_probed as f64;
            work.members += e.members_scanned as f64;
        }
        work.nodes += st.nodes_visited as f64;
        work.distances += st.distance_computations as f64;
        if qi < l.queries.len() {
            if let (Some(f), Some(want)) = (trace.as_mut(), gt.get(qi)) {
                write_trace(f, &text, list, qi, &h, want, &st)?;
            }
            results.push(h);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let selectivity = case.ids.len() as f64 / n.max(1) as f64;
    Ok(Bucket {
        target: bucket_of(selectivity),
        family: case.family.clone(),
        tag: text.clone(),
        selectivity,
        recall: super::recall_at(&results, gt, 10),
        qps: lat.len() as f64 / secs,
        p50_us: percentile(&lat, 50.0),
        p99_us: percentile(&lat, 99.0),
        plans,
        work: {
            let runs = lat.len().max(1) as f64;
            Work {
                lists: work.lists / runs,
                members: work.members / runs,
                nodes: work.nodes / runs,
                distances: work.distances / runs,
            }
        },
        list,
        sweep: Vec::new(),
    })
}

pub fn run(a: &FilteredBenchArgs) -> CliResult {
    let l = match a.dataset {
        Dataset::Real => load_real(a)?,
        Dataset::Social => load_social(a)?,
    };
    let mut gt_all = l.gt_cache.as_deref().map(load_gt_cache).unwrap_or_default();
    let mut gt_dirty = false;
    let mut buckets = Vec::new();
    let mut peer_buckets = Vec::new();
    let mut trace = match &a.trace {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    println!(
        "filtered k-NN, {}, {} queries, k=10, L swept over {:?} (reported: the fastest with recall >= 0.95)",
        l.title,
        l.queries.len(),
        a.lists
    );
    let mut cases: Vec<&Case> = l
        .cases
        .iter()
        .filter(|c| {
            a.only
                .as_deref()
                .is_none_or(|o| c.filter.to_string().contains(o))
        })
        .collect();
    cases.sort_by_key(|c| std::cmp::Reverse(c.ids.len()));
    for case in cases {
        let text = case.filter.to_string();
        let gt = match gt_all.get(&text) {
            Some(g) if g.len() == l.queries.len() => g.clone(),
            _ => {
                let g = ground_truth(l.metric, &l.base, &l.queries, &case.ids);
                gt_all.insert(text.clone(), g.clone());
                gt_dirty = true;
                g
            }
        };
        // One untimed query first: the filter's bitmap is then in the segment's cache, as
        // the peers get their allowed-id arrays ready-made.
        if let Some(q) = l.queries.first() {
            l.db.search(&Query::knn(q.clone(), 10).with_filter(case.filter.clone()))?;
        }
        let mut sweep = Vec::new();
        for &list in &a.lists {
            sweep.push(measure(
                &l,
                case,
                &gt,
                list,
                a.repeat,
                a.plan.hint(),
                &mut trace,
            )?);
        }
        // Like the peers: the fastest setting that reaches recall 0.95 (else the best recall).
        let b = sweep
            .iter()
            .filter(|b| b.recall >= 0.95)
            .max_by(|x, y| x.qps.total_cmp(&y.qps))
            .or_else(|| sweep.iter().max_by(|x, y| x.recall.total_cmp(&y.recall)))
            .cloned();
        let Some(mut b) = b else {
            continue;
        };
        b.sweep = sweep.iter().map(|x| (x.list, x.recall, x.qps)).collect();
        println!(
            "  {:>7.3} % [{:>6}] {:<16} {:<44} L={:<3} recall@10 {:.4}  QPS {:>7.0}  p50 {:>6} µs  p99 {:>7} µs  {:?}  per query: {:.0} lists, {:.0} members, {:.0} nodes, {:.0} distances",
            b.selectivity * 100.0,
            format!("{}%", b.target * 100.0),
            b.family,
            b.tag,
            b.list,
            b.recall,
            b.qps,
            b.p50_us,
            b.p99_us,
            b.plans,
            b.work.lists,
            b.work.members,
            b.work.nodes,
            b.work.distances
        );
        buckets.push(b);
        peer_buckets.push(serde_json::json!({"tag": text, "ids": case.ids, "gt": gt}));
    }
    if gt_dirty {
        if let Some(p) = &l.gt_cache {
            std::fs::write(p, serde_json::to_vec(&gt_all)?)?;
        }
    }
    let mut peer_points: Vec<PeerPoint> = Vec::new();
    if a.peers {
        let path = a.dir.with_extension("buckets.json");
        std::fs::write(&path, serde_json::to_string(&peer_buckets)?)?;
        println!(
            "peers (hnswlib filter callable; faiss HNSW and IVF-Flat + IDSelectorBitmap; LanceDB prefilter and postfilter; 1 thread):"
        );
        let space = if l.metric == Metric::Cosine {
            "cosine"
        } else {
            "l2"
        };
        let out = std::process::Command::new(&a.python)
            .arg("bench/peers/filtered_peers.py")
            .arg("--base")
            .arg(&l.base_path)
            .arg("--query")
            .arg(&l.query_path)
            .arg("--buckets")
            .arg(&path)
            .args(["--space", space])
            .args(["--seconds-max", &a.peer_seconds_max.to_string()])
            .args(["--systems", &a.peer_systems])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(
                "peers failed (run bash bench/peers/setup.sh first?); see the error above".into(),
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Ok(p) = serde_json::from_str::<PeerPoint>(line) {
                peer_points.push(p);
            }
        }
        for b in &buckets {
            let best = peer_points
                .iter()
                .filter(|p| p.tag == b.tag && p.recall >= 0.95)
                .max_by(|x, y| x.qps.total_cmp(&y.qps));
            match best {
                Some(p) => println!(
                    "  {:>7.3} % {:<44} best peer at recall >= 0.95: {} ef={} (recall {:.4}, QPS {:.0}); strata {:.2}x",
                    b.selectivity * 100.0,
                    b.tag,
                    p.system,
                    p.ef,
                    p.recall,
                    p.qps,
                    b.qps / p.qps
                ),
                None => println!(
                    "  {:>7.3} % {:<44} no peer reaches recall 0.95 within the sweep",
                    b.selectivity * 100.0,
                    b.tag
                ),
            }
        }
    }
    let machine = MachineNotes::gather(&a.dir, Vec::new());
    println!("machine: {}", machine.line());
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(
                &serde_json::json!({"title": l.title, "machine": machine, "buckets": buckets, "peers": peer_points}),
            )?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn ground_truth_equals_a_full_sort_and_buckets_are_log_nearest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let base: Vec<Vec<f32>> = (0..500)
            .map(|_| (0..6).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
            .collect();
        let queries: Vec<Vec<f32>> = base.iter().take(7).cloned().collect();
        let ids: Vec<usize> = (0..500).filter(|i| i % 3 != 0).collect();
        let gt = ground_truth(Metric::L2, &base, &queries, &ids);
        for (q, row) in queries.iter().zip(&gt) {
            let mut all: Vec<(f32, usize)> = ids
                .iter()
                .map(|&i| (strata::distance(Metric::L2, q, &base[i]), i))
                .collect();
            all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let want: Vec<usize> = all.iter().take(10).map(|x| x.1).collect();
            assert_eq!(row, &want);
        }
        let mut two = ground_truth(Metric::L2, &base, &queries, &[4, 5])[0].clone();
        two.sort_unstable();
        assert_eq!(two, vec![4, 5], "fewer matches than k: all of them");
        assert_eq!(bucket_of(1.0), 1.0);
        assert_eq!(bucket_of(0.25), 0.1);
        assert_eq!(bucket_of(0.0004), 0.001);
        assert_eq!(bucket_of(0.0002), 0.0001);
        assert_eq!(bucket_of(0.0), 0.0001);
    }
}
