//! The planner oracle: seeded clustered data with uncorrelated, cluster-correlated and
//! anti-correlated tags and a timestamp; seeded random filters (terms, AND, OR, NOT, ranges)
//! over the whole selectivity range. For every (filter, query):
//! - `exact()` equals brute force over `Filter::matches` (documents and order);
//! - the planned query's recall@10 is >= 0.95 per filter (and over all);
//! - every plan forced (graph, filter-first, partition) holds recall@10 >= 0.95 per filter,
//!   and equals brute force when it ran exactly;
//! - every result matches the filter.
//!
//! The planner's choices are calibrated (each segment measured its plans' recall and time when
//! its index was built), so they depend on the machine's timings: the plan each filter's
//! queries got is printed (`--nocapture`), not pinned; the recall bounds are what must hold.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{
    AnnOptions, Db, Document, Filter, Metric, Options, Plan, PlanHint, Query, Schema, SyncMode,
    WriteBatch,
};

mod common;

const DIM: usize = 32;
/// Plans run forced on every query besides the planner's choice.
const FORCED: [PlanHint; 3] = [PlanHint::Graph, PlanHint::FilterFirst, PlanHint::Partition];
const N: usize = 12_000;
const CLUSTERS: usize = 24;

/// Queries come from clusters 0..4; `anti` tags only documents of clusters 12.. (far from
/// every query), `near` documents of clusters 0..4 (correlated), `c:<j>` cluster j exactly.
fn data() -> (Vec<Vec<f32>>, Vec<Document>, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(0x0DAC1E);
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..DIM).map(|_| rng.gen_range(-10.0f32..10.0)).collect())
        .collect();
    let point = |rng: &mut StdRng, c: usize| -> Vec<f32> {
        centres[c]
            .iter()
            .map(|x| x + 2.5 * (rng.gen_range(-1.0f32..1.0) + rng.gen_range(-1.0f32..1.0)))
            .collect()
    };
    let mut vecs = Vec::with_capacity(N);
    let mut docs = Vec::with_capacity(N);
    for i in 0..N {
        let c = rng.gen_range(0..CLUSTERS);
        let v = point(&mut rng, c);
        let mut d = Document::new(format!("doc-{i:06}"), "")
            .with_vector(v.clone())
            .with_term(format!("c:{c}"))
            .with_attr("ts", rng.gen_range(0..100_000));
        for (t, p) in [
            ("u50", 0.5),
            ("u20", 0.2),
            ("u5", 0.05),
            ("u1", 0.01),
            ("u02", 0.002),
        ] {
            if rng.gen_bool(p) {
                d = d.with_term(t);
            }
        }
        if c < 4 && rng.gen_bool(0.5) {
            d = d.with_term("near");
        }
        if c >= 12 && rng.gen_bool(0.3) {
            d = d.with_term("anti");
        }
        vecs.push(v);
        docs.push(d);
    }
    let queries = (0..30).map(|i| point(&mut rng, i % 4)).collect();
    (vecs, docs, queries)
}

/// A random filter of depth <= 2 over the data's terms and the `ts` range.
fn random_filter(rng: &mut StdRng, depth: u32) -> Filter {
    let leaf = |rng: &mut StdRng| -> Filter {
        match rng.gen_range(0..4) {
            0 => {
                let lo = rng.gen_range(0..100_000);
                let width = [100, 1_000, 10_000, 50_000][rng.gen_range(0..4)];
                Filter::parse(&format!("(range ts {lo} {})", lo + width)).unwrap()
            }
            1 => Filter::term(format!("c:{}", rng.gen_range(0..CLUSTERS))),
            _ => {
                Filter::term(["u50", "u20", "u5", "u1", "u02", "near", "anti"][rng.gen_range(0..7)])
            }
        }
    };
    if depth == 0 || rng.gen_bool(0.4) {
        return leaf(rng);
    }
    match rng.gen_range(0..3) {
        0 => Filter::and((0..rng.gen_range(2..4)).map(|_| random_filter(rng, depth - 1))),
        1 => Filter::or((0..rng.gen_range(2..4)).map(|_| random_filter(rng, depth - 1))),
        _ => Filter::parse(&format!("(not {})", random_filter(rng, depth - 1))).unwrap(),
    }
}

#[test]
fn planner_oracle_over_random_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Schema::new(DIM as u32, Metric::L2).with_attr("ts");
    let options = Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(1 << 30)
        .with_ann_at_flush(true)
        .with_maintenance_threads(1)
        .with_ann(AnnOptions {
            degree: 24,
            ..AnnOptions::default()
        });
    let db = Db::create_with(tmp.path(), schema, options).unwrap();
    let (vecs, docs, queries) = data();
    for chunk in docs.chunks(1000) {
        let mut b = WriteBatch::new();
        for d in chunk {
            b.put(d.clone());
        }
        db.write(b).unwrap();
    }
    db.flush().unwrap();
    assert_eq!(db.stats().ann_segments, 1);

    let mut rng = StdRng::seed_from_u64(42);
    let mut filters: Vec<Filter> = ["near", "anti", "u50", "u1", "u02", "(not u50)"]
        .iter()
        .map(|f| Filter::parse(f).unwrap())
        .collect();
    while filters.len() < 40 {
        let f = random_filter(&mut rng, 2);
        let m = docs.iter().filter(|d| f.matches(d)).count();
        if m > 0 && !filters.contains(&f) {
            filters.push(f);
        }
    }
    let (mut hit_all, mut total_all) = (0usize, 0usize);
    let mut record = String::new();
    for f in &filters {
        let matching: Vec<usize> = (0..N).filter(|&i| f.matches(&docs[i])).collect();
        let (mut hit, mut total) = (0usize, 0usize);
        let mut forced_hit = [0usize; FORCED.len()];
        let mut chosen: BTreeMap<&str, usize> = BTreeMap::new();
        for q in &queries {
            let want = common::nearest_keys(
                matching
                    .iter()
                    .map(|&i| (strata::distance(Metric::L2, q, &vecs[i]), i))
                    .collect(),
                10,
            );
            let query = Query::knn(q.clone(), 10).with_filter(f.clone());
            let exact: Vec<Vec<u8>> = db
                .search(&query.clone().exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            assert_eq!(exact, want, "exact plan differs from brute force for {f}");
            let (got, st) = db.search_with_stats(&query).unwrap();
            for h in &got {
                let i: usize = String::from_utf8_lossy(&h.key)[4..].parse().unwrap();
                assert!(f.matches(&docs[i]), "{f} returned a non-matching document");
            }
            let want: HashSet<&Vec<u8>> = want.iter().collect();
            hit += got.iter().filter(|h| want.contains(&h.key)).count();
            total += want.len();
            for e in st.explain.iter().filter(|e| e.segment.is_some()) {
                let c = match e.plan {
                    Plan::FilteredGraph | Plan::GraphThenExact | Plan::GraphThenCodes => "graph",
                    Plan::FilterFirst | Plan::FilterFirstCodes => "filter-first",
                    Plan::Partition => "partition",
                    _ => "other",
                };
                *chosen.entry(c).or_default() += 1;
            }
            // Every plan forced: each keeps to the filter; the exact ones (filter-first below
            // 500 matches, a graph search that fell back to exact) equal brute force; the
            // approximate ones are counted for their own recall.
            for (h, hint) in FORCED.iter().enumerate() {
                let (got, st) = db
                    .search_with_stats(&query.clone().with_plan(*hint))
                    .unwrap();
                for g in &got {
                    let i: usize = String::from_utf8_lossy(&g.key)[4..].parse().unwrap();
                    assert!(f.matches(&docs[i]), "{hint:?}: {f} returned a non-match");
                }
                let keys: Vec<Vec<u8>> = got.iter().map(|g| g.key.clone()).collect();
                if matches!(st.explain[1].plan, Plan::FilterFirst | Plan::GraphThenExact) {
                    assert_eq!(keys, exact, "{hint:?} ran exactly but differs for {f}");
                }
                forced_hit[h] += got.iter().filter(|g| want.contains(&g.key)).count();
            }
        }
        for (h, hint) in FORCED.iter().enumerate() {
            let r = if total == 0 {
                1.0
            } else {
                forced_hit[h] as f64 / total as f64
            };
            assert!(r >= 0.95, "{f}, {hint:?} forced: recall {r:.3}");
        }
        let recall = if total == 0 {
            1.0
        } else {
            hit as f64 / total as f64
        };
        assert!(recall >= 0.95, "{f}: recall {recall:.3} ({chosen:?})");
        hit_all += hit;
        total_all += total;
        writeln!(
            record,
            "{:>6} matches  {:<60} {:?}",
            matching.len(),
            f.to_string(),
            chosen
        )
        .unwrap();
    }
    eprintln!(
        "overall recall {:.4}\n{record}",
        hit_all as f64 / total_all as f64
    );
}
