//! `strata bench filtered`: filtered k-NN on the real embeddings with their real tags, one
//! bucket per selectivity (a tag whose frequency is nearest the bucket's target): recall@10
//! against brute force, QPS, p50/p99 latency and the plans the planner chose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use strata::{Db, Document, Filter, Metric, Options, Query, Schema, SyncMode, WriteBatch};

use super::{percentile, MachineNotes};
use crate::dataset::RealData;
use crate::CliResult;

#[derive(Args)]
pub struct FilteredBenchArgs {
    /// Where the real data lives.
    #[arg(long, default_value = "../shared/data")]
    data_dir: PathBuf,
    /// Scratch directory (the database is rebuilt).
    #[arg(long, default_value = "bench-out/filtered")]
    dir: PathBuf,
    /// Target selectivities (fractions of the base set).
    #[arg(
        long,
        default_value = "0.5,0.2,0.05,0.01,0.002,0.0005",
        value_delimiter = ','
    )]
    selectivities: Vec<f64>,
    /// Graph candidate list size.
    #[arg(long, default_value_t = 64)]
    list: usize,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run the peers (hnswlib with a filter callable, faiss HNSW with an IDSelector) from
    /// the venv of bench/peers/setup.sh on the same data, buckets and ground truth.
    #[arg(long)]
    peers: bool,
    /// Python of the peers' venv.
    #[arg(long, default_value = "bench-out/venv/bin/python")]
    python: PathBuf,
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
}

#[derive(Debug, Serialize)]
struct Bucket {
    target: f64,
    tag: String,
    selectivity: f64,
    recall: f64,
    qps: f64,
    p50_us: u64,
    p99_us: u64,
    plans: BTreeMap<String, u64>,
}

pub fn run(a: &FilteredBenchArgs) -> CliResult {
    let data = RealData::open(&a.data_dir)?;
    let n = data.base.len();
    let dim = data.base.dim();
    let base = data.base.read_all()?;
    let queries = data.queries.read_all()?;
    let _ = std::fs::remove_dir_all(&a.dir);
    let opts = Options {
        sync: SyncMode::Never,
        flush_threshold_bytes: usize::MAX / 4,
        ann_at_flush: true,
        ..Options::default()
    };
    let db = Db::create_with(&a.dir, Schema::new(dim as u32, Metric::Cosine), opts)?;
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
    let mut buckets = Vec::new();
    let mut peer_buckets = Vec::new();
    println!(
        "filtered k-NN, real data ({n} × {dim}, cosine), {} queries, k=10, L={}",
        queries.len(),
        a.list
    );
    for &target in &a.selectivities {
        let Some((tag, count)) = freq
            .iter()
            .filter(|(_, c)| **c >= 10)
            .min_by(|x, y| {
                let dx = (*x.1 as f64 / n as f64 - target).abs();
                let dy = (*y.1 as f64 / n as f64 - target).abs();
                dx.total_cmp(&dy).then(x.0.cmp(y.0))
            })
            .map(|(t, c)| (t.to_string(), *c))
        else {
            continue;
        };
        let filter = Filter::term(&tag);
        let matching: Vec<usize> = (0..n)
            .filter(|&i| data.base_tags.get(i).is_some_and(|t| t.contains(&tag)))
            .collect();
        let mut lat = Vec::with_capacity(queries.len());
        let mut plans = BTreeMap::new();
        let (mut hit, mut total) = (0usize, 0usize);
        let t0 = Instant::now();
        let mut results = Vec::with_capacity(queries.len());
        for q in &queries {
            let t = Instant::now();
            let (h, st) = db.search_with_stats(
                &Query::knn(q.clone(), 10)
                    .with_filter(filter.clone())
                    .with_search_list(a.list),
            )?;
            lat.push(t.elapsed().as_micros() as u64);
            for e in st.explain.iter().filter(|e| e.segment.is_some()) {
                *plans.entry(format!("{:?}", e.plan)).or_insert(0u64) += 1;
            }
            results.push(h);
        }
        let secs = t0.elapsed().as_secs_f64();
        let mut gt_rows = Vec::with_capacity(queries.len());
        for (q, h) in queries.iter().zip(&results) {
            let mut d: Vec<(f32, usize)> = matching
                .iter()
                .filter_map(|&i| Some((strata::distance(Metric::Cosine, q, base.get(i)?), i)))
                .collect();
            d.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            gt_rows.push(d.iter().take(10).map(|x| x.1).collect::<Vec<_>>());
            let want: HashSet<String> = d.iter().take(10).map(|x| format!("{:08}", x.1)).collect();
            hit += h
                .iter()
                .filter(|x| want.contains(&String::from_utf8_lossy(&x.key).into_owned()))
                .count();
            total += want.len();
        }
        lat.sort_unstable();
        let b = Bucket {
            target,
            tag: tag.clone(),
            selectivity: count as f64 / n as f64,
            recall: if total == 0 {
                1.0
            } else {
                hit as f64 / total as f64
            },
            qps: queries.len() as f64 / secs,
            p50_us: percentile(&lat, 50.0),
            p99_us: percentile(&lat, 99.0),
            plans,
        };
        println!(
            "  {:>7.3} % {:<28} recall@10 {:.4}  QPS {:>7.0}  p50 {:>5} µs  p99 {:>6} µs  {:?}",
            b.selectivity * 100.0,
            b.tag,
            b.recall,
            b.qps,
            b.p50_us,
            b.p99_us,
            b.plans
        );
        buckets.push(b);
        peer_buckets.push(serde_json::json!({"tag": tag, "ids": matching, "gt": gt_rows}));
    }
    let mut peer_points: Vec<PeerPoint> = Vec::new();
    if a.peers {
        let path = a.dir.with_extension("buckets.json");
        std::fs::write(&path, serde_json::to_string(&peer_buckets)?)?;
        println!("peers (hnswlib filter callable, faiss HNSW + IDSelectorBitmap; M=16, efc=200, 1 thread):");
        let out = std::process::Command::new(&a.python)
            .arg("bench/peers/filtered_peers.py")
            .arg("--base")
            .arg(a.data_dir.join("base.fvecs"))
            .arg("--query")
            .arg(a.data_dir.join("query.fvecs"))
            .arg("--buckets")
            .arg(&path)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "peers failed (run bash bench/peers/setup.sh first?): {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
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
                    "  {:>7.3} % {:<28} best peer at recall >= 0.95: {} ef={} (recall {:.4}, QPS {:.0}); strata {:.2}x",
                    b.selectivity * 100.0,
                    b.tag,
                    p.system,
                    p.ef,
                    p.recall,
                    p.qps,
                    b.qps / p.qps
                ),
                None => println!(
                    "  {:>7.3} % {:<28} no peer reaches recall 0.95 at any ef",
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
                &serde_json::json!({"machine": machine, "buckets": buckets, "peers": peer_points}),
            )?,
        )?;
    }
    Ok(())
}
