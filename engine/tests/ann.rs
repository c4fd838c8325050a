//! The disk-resident ANN index through the public API: recall against brute force, deletions
//! and overwrites never resurfacing from a graph, answers stable across reopen, filtered
//! queries still exact.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{
    AnnOptions, Db, Document, Metric, Options, PlanHint, Query, Schema, SyncMode, WriteBatch,
};

const DIM: usize = 64;

/// Seeded clustered data: `clusters` centres fixed by `DIM`, points around them.
fn clustered(n: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut crng = StdRng::seed_from_u64(77);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..DIM).map(|_| crng.gen_range(-10.0f32..10.0)).collect())
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.gen_range(0..clusters)];
            c.iter()
                .map(|x| x + 2.0 * (rng.gen_range(-1.0f32..1.0) + rng.gen_range(-1.0f32..1.0)))
                .collect()
        })
        .collect()
}

fn options() -> Options {
    Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(1 << 30)
        // Graphs right at `flush()`, so the tests see them without waiting.
        .with_ann_at_flush(true)
        .with_ann(AnnOptions {
            // No node cache: every hop reads sectors, so the counters are exercised.
            memory_budget_bytes: 0,
            ..AnnOptions::default()
        })
}

fn key(i: usize) -> String {
    format!("doc-{i:06}")
}

fn load(db: &Db, vecs: &[Vec<f32>]) {
    for (chunk_no, chunk) in vecs.chunks(1000).enumerate() {
        let mut b = WriteBatch::new();
        for (j, v) in chunk.iter().enumerate() {
            let i = chunk_no * 1000 + j;
            let mut d = Document::new(key(i), format!("value {i}")).with_vector(v.clone());
            d = d.with_term(if i % 3 == 0 { "three" } else { "other" });
            b.put(d);
        }
        db.write(b).unwrap();
    }
    db.flush().unwrap();
}

/// Keys of the 10 rows nearest `q` (L2; ties by key) among those `keep` admits.
fn brute_top10(data: &[Vec<f32>], q: &[f32], keep: impl Fn(usize) -> bool) -> Vec<Vec<u8>> {
    let mut want: Vec<(f32, String)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (strata::distance(Metric::L2, q, v), key(i)))
        .collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    want.into_iter()
        .take(10)
        .map(|x| x.1.into_bytes())
        .collect()
}

fn recall(db: &Db, queries: &[Vec<f32>], list: usize, plan: PlanHint) -> (f64, strata::QueryStats) {
    let (mut hit, mut total) = (0usize, 0usize);
    let mut stats = strata::QueryStats::default();
    for q in queries {
        let want: HashSet<Vec<u8>> = db
            .search(&Query::knn(q.clone(), 10).exact())
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect();
        let (got, st) = db
            .search_with_stats(
                &Query::knn(q.clone(), 10)
                    .with_search_list(list)
                    .with_plan(plan),
            )
            .unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
        let unique: HashSet<&Vec<u8>> = got.iter().map(|h| &h.key).collect();
        assert_eq!(unique.len(), 10, "a key returned twice");
        hit += got.iter().filter(|h| want.contains(&h.key)).count();
        total += want.len();
        stats.nodes_visited += st.nodes_visited;
        stats.sectors_read += st.sectors_read;
        stats.graph_segments += st.graph_segments;
        stats.partition_segments += st.partition_segments;
        stats.distance_computations += st.distance_computations;
    }
    (hit as f64 / total as f64, stats)
}

#[test]
fn recall_at_10_on_20k_by_64_clustered_is_at_least_095() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), options()).unwrap();
    let data = clustered(20_000, 100, 1);
    load(&db, &data);
    let st = db.stats();
    assert_eq!((st.segments, st.ann_segments), (1, 1));
    let queries = clustered(200, 100, 2);
    let (r, stats) = recall(
        &db,
        &queries,
        strata::SearchParams::default().list,
        PlanHint::Graph,
    );
    eprintln!(
        "recall@10 {r:.4}; per query: {:.1} nodes, {:.1} sectors, {:.0} distances",
        stats.nodes_visited as f64 / 200.0,
        stats.sectors_read as f64 / 200.0,
        stats.distance_computations as f64 / 200.0
    );
    assert!(r >= 0.95, "recall@10 {r}");
    assert_eq!(stats.graph_segments, 200, "every query used the graph");
    // No cache: every hop reads its sector; sector mates expand for free, so there are at
    // most as many reads as expanded nodes.
    assert!(stats.sectors_read > 0 && stats.sectors_read <= stats.nodes_visited);
    // A larger list buys recall.
    let (r2, _) = recall(&db, &queries, 256, PlanHint::Graph);
    assert!(r2 >= r, "L=256 recall {r2} < default-L recall {r}");
    // The partition plan (141 lists of ~140) and the planner's own choice hold it too.
    for plan in [PlanHint::Partition, PlanHint::Auto] {
        let (r, st) = recall(&db, &queries, 64, plan);
        assert!(r >= 0.95, "{plan:?}: recall@10 {r}");
        if plan == PlanHint::Partition {
            assert_eq!(st.graph_segments, 0, "no graph search ran");
            assert_eq!(
                st.partition_segments, 200,
                "every query walked the partitions"
            );
        }
    }
}

#[test]
fn deleted_and_overwritten_documents_never_come_back_and_reopen_is_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Schema::new(DIM as u32, Metric::L2);
    let db = Db::create_with(tmp.path(), schema, options()).unwrap();
    let data = clustered(8_000, 40, 3);
    load(&db, &data);
    assert_eq!(db.stats().ann_segments, 1);
    let queries = clustered(50, 40, 4);

    // Delete the current top-3 of every query, overwrite the 4th with a far-away vector.
    let mut deleted = HashSet::new();
    let mut moved = HashSet::new();
    for q in &queries {
        let hits = db.search(&Query::knn(q.clone(), 4)).unwrap();
        for h in &hits[..3] {
            db.delete(&h.key).unwrap();
            deleted.insert(h.key.clone());
        }
        let k = hits[3].key.clone();
        if !deleted.contains(&k) {
            db.put(Document::new(k.clone(), "moved").with_vector(vec![1000.0; DIM]))
                .unwrap();
            moved.insert(k);
        }
    }
    let check = |db: &Db, phase: &str| -> Vec<Vec<(Vec<u8>, Option<f32>)>> {
        let mut all = Vec::new();
        for q in &queries {
            // Every plan: shadowed (memtable) and deleted (bitmap) versions stay hidden.
            for plan in [PlanHint::Graph, PlanHint::Partition, PlanHint::Auto] {
                let hits = db
                    .search(&Query::knn(q.clone(), 10).with_plan(plan))
                    .unwrap();
                assert_eq!(hits.len(), 10, "{phase} {plan:?}");
                for h in &hits {
                    assert!(
                        !deleted.contains(&h.key),
                        "{phase} {plan:?}: deleted key returned"
                    );
                    assert!(
                        !moved.contains(&h.key),
                        "{phase} {plan:?}: overwritten key returned with its old vector"
                    );
                }
                if plan == PlanHint::Auto {
                    all.push(hits.into_iter().map(|h| (h.key, h.distance)).collect());
                }
            }
        }
        all
    };
    let in_memtable = check(&db, "deletes in the memtable");
    db.flush().unwrap();
    let flushed = check(&db, "deletes flushed");
    assert_eq!(in_memtable, flushed);
    drop(db);
    let db = Db::open(tmp.path(), options()).unwrap();
    let reopened = check(&db, "after reopen");
    assert_eq!(flushed, reopened, "answers differ after reopen");
}

/// Recall@10 against brute force at selectivities from 50 % to 0.1 %, with random and
/// cluster-correlated filters: the planner must hold >= 0.95 everywhere.
#[test]
fn filtered_knn_holds_recall_at_every_selectivity() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), options()).unwrap();
    let data = clustered(20_000, 100, 7);
    let mut rng = StdRng::seed_from_u64(8);
    // Terms: sel-N keeps a random 1/N of the documents; near-0 / far-0 follow clusters
    // (documents 0..200 share their clusters with the queries, others do not).
    let pct = [2usize, 5, 20, 100, 1000];
    let mut docs_terms: Vec<Vec<String>> = vec![Vec::new(); data.len()];
    for (i, terms) in docs_terms.iter_mut().enumerate() {
        for n in pct {
            if rng.gen_range(0..n) == 0 {
                terms.push(format!("sel-{n}"));
            }
        }
        if i % 50 == 0 {
            terms.push("sparse".into());
        }
    }
    for (c, chunk) in data.chunks(1000).enumerate() {
        let mut b = WriteBatch::new();
        for (j, v) in chunk.iter().enumerate() {
            let i = c * 1000 + j;
            let mut d = Document::new(key(i), "").with_vector(v.clone());
            for t in &docs_terms[i] {
                d = d.with_term(t);
            }
            b.put(d);
        }
        db.write(b).unwrap();
    }
    db.flush().unwrap();
    let queries = clustered(100, 100, 9);
    let mut all_plans = HashSet::new();
    for f in [
        "sel-2",
        "sel-5",
        "sel-20",
        "sel-100",
        "sel-1000",
        "sparse",
        "(not sel-2)",
    ] {
        let filter = strata::Filter::parse(f).unwrap();
        let hints = [
            PlanHint::Auto,
            PlanHint::Graph,
            PlanHint::FilterFirst,
            PlanHint::Partition,
        ];
        let mut hit = [0usize; 4];
        let mut total = 0usize;
        let mut plans = std::collections::BTreeMap::new();
        for q in &queries {
            let mut want: Vec<(f32, usize)> = data
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    let d = Document {
                        terms: docs_terms[*i].clone(),
                        ..Document::new(key(*i), "")
                    };
                    filter.matches(&d)
                })
                .map(|(i, v)| (strata::distance(Metric::L2, q, v), i))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: HashSet<Vec<u8>> = want
                .iter()
                .take(10)
                .map(|x| key(x.1).into_bytes())
                .collect();
            // The planner's choice, then every plan forced (each must hold the recall).
            for (h, &hint) in hints.iter().enumerate() {
                let (got, st) = db
                    .search_with_stats(
                        &Query::knn(q.clone(), 10)
                            .with_filter(filter.clone())
                            // A forced graph search gets the default list (the planner
                            // would not run it at 20 % with L = 64: recall 0.90).
                            .with_search_list(if hint == PlanHint::Graph { 128 } else { 64 })
                            .with_plan(hint),
                    )
                    .unwrap();
                for e in st.explain.iter().filter(|e| e.segment.is_some()) {
                    *plans.entry(format!("{hint:?}:{:?}", e.plan)).or_insert(0) += 1;
                }
                hit[h] += got.iter().filter(|h| want.contains(&h.key)).count();
            }
            total += want.len();
        }
        for (h, hint) in hints.iter().enumerate() {
            let recall = hit[h] as f64 / total as f64;
            eprintln!("filter {f}, {hint:?}: recall@10 {recall:.3}");
            assert!(
                recall >= 0.95,
                "filter {f}, {hint:?}: recall {recall} ({plans:?})"
            );
        }
        eprintln!("filter {f}: plans {plans:?}");
        all_plans.extend(plans.into_keys());
    }
    for p in [
        "Auto:Partition",
        "Auto:FilterFirst",
        "Graph:FilteredGraph",
        "FilterFirst:FilterFirstCodes",
        "Partition:Partition",
    ] {
        assert!(
            all_plans.contains(p),
            "plan {p} never chosen: {all_plans:?}"
        );
    }
}

#[test]
fn filtered_plans_rank_and_exact_queries_equal_brute_force() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), options()).unwrap();
    let data = clustered(6_000, 30, 5);
    load(&db, &data);
    assert_eq!(db.stats().ann_segments, 1);
    for (qi, q) in clustered(20, 30, 6).into_iter().enumerate() {
        // A third of the documents match: filter-first ranks them by code and re-ranks...
        let f = Query::knn(q.clone(), 10).with_filter_str("three").unwrap();
        let (approx, st) = db
            .search_with_stats(&f.clone().with_plan(PlanHint::FilterFirst))
            .unwrap();
        assert_eq!(st.graph_segments, 0);
        assert_eq!(st.explain[1].plan, strata::Plan::FilterFirstCodes);
        // ...and `exact()` scores every match at full precision.
        let (got, st) = db.search_with_stats(&f.clone().exact()).unwrap();
        assert_eq!(st.explain[1].plan, strata::Plan::Exact);
        // Brute force over the data.
        let want = brute_top10(&data, &q, |i| i % 3 == 0);
        let got: Vec<Vec<u8>> = got.into_iter().map(|h| h.key).collect();
        assert_eq!(got, want, "query {qi}");
        let found = approx.iter().filter(|h| want.contains(&h.key)).count();
        assert!(
            found >= 9,
            "query {qi}: filter-first by codes found {found} of 10"
        );
    }
}

/// Radius search through the graph (`Plan::GraphRange`): every result is inside the radius,
/// the count bound holds, recall against brute force over the ball is >= 0.95, filtered
/// radius queries admit only matches, and `exact()` equals brute force.
#[test]
fn radius_search_through_the_graph_finds_the_ball() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), options()).unwrap();
    let data = clustered(6_000, 30, 5);
    load(&db, &data);
    let (mut hit, mut total, mut graph) = (0usize, 0usize, 0usize);
    for q in clustered(20, 30, 7) {
        let mut d: Vec<(f32, usize)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (strata::distance(Metric::L2, &q, v), i))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // A radius holding ~40 points: the list (64) must not be widened past them...
        for (ball, bound) in [(40usize, 100usize), (300, 1000), (300, 50)] {
            let r = d[ball].0;
            let want: Vec<Vec<u8>> = d
                .iter()
                .take_while(|x| x.0 <= r)
                .take(bound)
                .map(|x| key(x.1).into_bytes())
                .collect();
            let (got, st) = db
                .search_with_stats(&Query::knn(q.clone(), bound).with_radius(r))
                .unwrap();
            assert!(got.len() <= bound);
            assert!(got.iter().all(|h| h.distance.unwrap() <= r));
            graph += st
                .explain
                .iter()
                .filter(|e| e.plan == strata::Plan::GraphRange)
                .count();
            let want_set: HashSet<&Vec<u8>> = want.iter().collect();
            hit += got.iter().filter(|h| want_set.contains(&h.key)).count();
            total += want.len();
            let exact: Vec<Vec<u8>> = db
                .search(&Query::knn(q.clone(), bound).with_radius(r).exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            assert_eq!(exact, want, "exact radius query");
        }
        // Filtered radius: only matches, each inside the radius.
        let r = d[200].0;
        let got = db
            .search(
                &Query::knn(q.clone(), 500)
                    .with_radius(r)
                    .with_filter_str("three")
                    .unwrap(),
            )
            .unwrap();
        for h in &got {
            let i: usize = String::from_utf8_lossy(&h.key)[4..].parse().unwrap();
            assert_eq!(i % 3, 0);
            assert!(h.distance.unwrap() <= r);
        }
    }
    let recall = hit as f64 / total as f64;
    eprintln!("radius recall {recall:.4}, graph range plans {graph}");
    assert!(recall >= 0.95, "radius recall {recall}");
    assert!(graph > 20, "the graph range plan ran {graph} times");
}

/// A restricted snapshot (mandatory filter): no plan — graph, filtered graph, filter-first by
/// codes, exact, boolean, radius, `(apply …)` — ever returns a document the filter excludes;
/// exact queries equal brute force over the admitted documents; `get` and `scan` hide the
/// rest; restricting again only narrows.
#[test]
fn mandatory_filter_is_never_bypassed_by_any_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(
        tmp.path(),
        Schema::new(DIM as u32, Metric::L2).with_attr("uid"),
        options(),
    )
    .unwrap();
    let data = clustered(12_000, 60, 11);
    // tenant:1 on a random 80 %, plus user documents (no vector) for the apply operator.
    let mut rng = StdRng::seed_from_u64(12);
    let tenant: Vec<bool> = (0..data.len()).map(|_| rng.gen_bool(0.8)).collect();
    let mut b = WriteBatch::new();
    for (i, v) in data.iter().enumerate() {
        let mut d = Document::new(key(i), "")
            .with_vector(v.clone())
            .with_term(format!("author:{}", i % 20));
        if tenant[i] {
            d = d.with_term("tenant:1");
        }
        if i % 7 == 0 {
            d = d.with_term("seven");
        }
        b.put(d);
    }
    for u in 0..20 {
        let mut d = Document::new(format!("user-{u:02}"), "").with_attr("uid", u);
        if u % 2 == 0 {
            d = d.with_term("friend-of:42");
        }
        // Half of the friends are visible to tenant 1 only.
        if u % 4 == 0 {
            d = d.with_term("tenant:1");
        }
        b.put(d);
    }
    db.write(b).unwrap();
    db.flush().unwrap();
    assert_eq!(db.stats().ann_segments, 1);
    let snap = db
        .restricted_snapshot(strata::Filter::term("tenant:1"))
        .unwrap();
    let admitted = |i: usize| tenant[i];
    let mut plans = HashSet::new();
    for (qi, q) in clustered(15, 60, 13).into_iter().enumerate() {
        for text in [
            None,
            Some("seven"),
            Some("(not seven)"),
            Some("(and seven author:3)"),
            Some("(apply author uid friend-of:42)"),
        ] {
            let mut query = Query::knn(q.clone(), 10).with_search_list(64);
            if let Some(t) = text {
                query = query.with_filter_str(t).unwrap();
            }
            // The planner's choice, every plan forced, and exact.
            let forced = [PlanHint::Graph, PlanHint::FilterFirst, PlanHint::Partition]
                .map(|p| query.clone().with_plan(p));
            for query in [query.clone(), query.exact()].into_iter().chain(forced) {
                let (got, st) = snap.search_with_stats(&query).unwrap();
                for e in &st.explain {
                    plans.insert(format!("{:?}", e.plan));
                }
                for h in &got {
                    let k = String::from_utf8(h.key.clone()).unwrap();
                    let i: usize = k.trim_start_matches("doc-").parse().unwrap();
                    assert!(admitted(i), "query {qi} {text:?}: {k} is not admitted");
                    if text == Some("(apply author uid friend-of:42)") {
                        // Only the friends tenant 1 can see (uids 0, 4, 8, ...).
                        assert_eq!((i % 20) % 4, 0, "{k} authored by an invisible friend");
                    }
                }
                if text != Some("(and seven author:3)") {
                    assert_eq!(got.len(), 10);
                }
            }
        }
        // Exact k-NN equals brute force over the admitted documents.
        let (got, _) = snap
            .search_with_stats(&Query::knn(q.clone(), 10).exact())
            .unwrap();
        let want = brute_top10(&data, &q, admitted);
        let got: Vec<Vec<u8>> = got.into_iter().map(|h| h.key).collect();
        assert_eq!(got, want, "query {qi}");
        // Radius and boolean queries too (a radius query never takes the partition plan).
        let r = snap
            .search(&Query::knn(q.clone(), 10_000).with_radius(15.0))
            .unwrap();
        assert!(r.iter().all(|h| {
            let i: usize = String::from_utf8_lossy(&h.key)[4..].parse().unwrap();
            admitted(i)
        }));
    }
    // Every query carries the mandatory filter, so the unfiltered `Graph` plan never runs.
    for p in [
        "FilteredGraph",
        "FilterFirstCodes",
        "FilterFirst",
        "Exact",
        "Partition",
    ] {
        assert!(plans.contains(p), "plan {p} not exercised: {plans:?}");
    }
    let all = snap
        .search(&Query::boolean(strata::Filter::term("seven"), 100_000))
        .unwrap();
    let want = (0..data.len())
        .filter(|&i| admitted(i) && i % 7 == 0)
        .count();
    assert_eq!(all.len(), want);
    // get / scan hide what the filter excludes.
    let hidden = (0..data.len()).find(|&i| !admitted(i)).unwrap();
    let shown = (0..data.len()).find(|&i| admitted(i)).unwrap();
    assert!(snap.get(key(hidden).as_bytes()).unwrap().is_none());
    assert!(snap.get(key(shown).as_bytes()).unwrap().is_some());
    assert!(db.snapshot().get(key(hidden).as_bytes()).unwrap().is_some());
    let scanned = snap.scan_prefix(b"doc-").unwrap();
    assert_eq!(scanned.len(), tenant.iter().filter(|t| **t).count());
    // A second restriction narrows; it cannot widen.
    let narrower = snap
        .with_mandatory_filter(strata::Filter::term("seven"))
        .unwrap();
    let hits = narrower.search(&Query::knn(data[0].clone(), 50)).unwrap();
    assert!(!hits.is_empty());
    for h in &hits {
        let i: usize = String::from_utf8_lossy(&h.key)[4..].parse().unwrap();
        assert!(admitted(i) && i.is_multiple_of(7));
    }
    // Bad filters are typed errors.
    assert!(db
        .restricted_snapshot(strata::Filter::range("nope", 0, 1))
        .is_err());
}

/// Flushes write segments without graphs (`ann_at_flush: false`, the default); such a segment
/// answers exactly, and the maintenance thread indexes it once writers pause — no call needed.
#[test]
fn flushed_segments_are_indexed_in_the_background_when_writers_pause() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options().with_ann_at_flush(false);
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), opts).unwrap();
    let data = clustered(8_000, 40, 21);
    // Hold a snapshot across the indexing: it keeps answering from the unindexed segment.
    let mut b = WriteBatch::new();
    for (i, v) in data.iter().enumerate() {
        b.put(Document::new(key(i), "").with_vector(v.clone()));
    }
    db.write(b).unwrap();
    db.flush().unwrap();
    let snap = db.snapshot();
    let q = clustered(1, 40, 22).pop().unwrap();
    let (before, st) = snap.search_with_stats(&Query::knn(q.clone(), 10)).unwrap();
    let exact = db.search(&Query::knn(q.clone(), 10).exact()).unwrap();
    if st.graph_segments + st.partition_segments == 0 {
        // Not indexed yet: the segment was scanned exactly.
        assert_eq!(before, exact);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.stats().ann_segments == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never indexed: {:?}",
            db.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = db.stats();
    assert_eq!((st.segments, st.ann_segments), (1, 1));
    // One query's recall: ask for 0.99 (the default 0.95 is a mean, one query may get 8/10).
    let (after, st) = db
        .search_with_stats(&Query::knn(q.clone(), 10).with_recall(0.99))
        .unwrap();
    assert!(
        matches!(
            st.explain[1].plan,
            strata::Plan::Graph | strata::Plan::Partition | strata::Plan::FilterFirst
        ),
        "the index answered: {:?}",
        st.explain[1]
    );
    let found = after
        .iter()
        .filter(|h| exact.iter().any(|e| e.key == h.key))
        .count();
    assert!(found >= 9, "recall {found}/10 after indexing");
    assert_eq!(snap.search(&Query::knn(q, 10)).unwrap(), before);
    assert_eq!(db.scan(..).unwrap().len(), data.len());
}

/// The per-segment filter cache (segments of >= 16,384 documents) never serves a stale
/// answer: repeated filters, deletions and memtable overwrites after the first evaluation
/// give the same results as `exact()` brute force and as the boolean model.
#[test]
fn cached_filters_follow_deletes_and_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), options()).unwrap();
    let data = clustered(20_000, 30, 9);
    load(&db, &data);
    assert_eq!(db.stats().segments, 1);
    let q = data[17].clone();
    let count = |db: &Db| {
        db.search(&Query::boolean(strata::Filter::term("three"), 100_000))
            .unwrap()
            .len()
    };
    let knn = |db: &Db, exact: bool| {
        let mut query = Query::knn(q.clone(), 10).with_filter_str("three").unwrap();
        if exact {
            query = query.exact();
        }
        db.search(&query)
            .unwrap()
            .into_iter()
            .map(|h| h.key)
            .collect::<Vec<_>>()
    };
    let threes = (0..20_000).filter(|i| i % 3 == 0).count();
    for _ in 0..3 {
        assert_eq!(count(&db), threes);
    }
    let before = knn(&db, true);
    // Delete the nearest match (a deletion bitmap on the same segment) and overwrite the
    // second one without the term (the memtable shadows it).
    db.delete(&before[0]).unwrap();
    db.put(Document::new(before[1].clone(), "moved").with_vector(q.clone()))
        .unwrap();
    assert_eq!(count(&db), threes - 2);
    let after = knn(&db, true);
    assert!(!after.contains(&before[0]) && !after.contains(&before[1]));
    assert_eq!(after[..8], before[2..]);
    let approx = knn(&db, false);
    assert!(!approx.contains(&before[0]) && !approx.contains(&before[1]));
    db.flush().unwrap();
    assert_eq!(count(&db), threes - 2);
    assert_eq!(knn(&db, true), after);
}

/// Documents without a vector (profiles next to posts) can match a filter but never a k-NN
/// query: `explain` reports every match, while the planner's selectivity counts only the
/// matches with a vector (20,000 vectorless matches made a 33 % filter look like 100 %).
#[test]
fn vectorless_matches_do_not_inflate_the_planner_selectivity() {
    let tmp = tempfile::tempdir().unwrap();
    // Graph or filter-first only (no partitions): at 100 % the graph would win, at 33 % the
    // code scan does.
    let mut o = options();
    o.ann.partitions = Some(0);
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), o).unwrap();
    let data = clustered(6_000, 30, 5);
    for chunk in (0..20_000).collect::<Vec<_>>().chunks(1000) {
        let mut b = WriteBatch::new();
        for i in chunk {
            b.put(Document::new(format!("user-{i:06}"), "").with_term("three"));
        }
        db.write(b).unwrap();
    }
    load(&db, &data);
    assert_eq!(db.stats().segments, 1);
    let q = clustered(1, 30, 6).remove(0);
    // The uncalibrated cost model (an explicit list), whose plan follows from the selectivity
    // alone; the calibrated planner reads the same count of matches with a vector.
    let (got, st) = db
        .search_with_stats(
            &Query::knn(q.clone(), 10)
                .with_filter_str("three")
                .unwrap()
                .with_search_list(128),
        )
        .unwrap();
    let seg = st.explain.iter().find(|e| e.segment.is_some()).unwrap();
    assert_eq!(seg.matches, Some(20_000 + 2_000));
    assert_eq!(seg.plan, strata::Plan::FilterFirstCodes, "{seg:?}");
    let want = brute_top10(&data, &q, |i| i % 3 == 0);
    let found = got.iter().filter(|h| want.contains(&h.key)).count();
    assert!(found >= 9, "found {found} of 10");
}

/// The mandatory filter across every source a query merges: three indexed segments (with
/// deletions and overwrites between them), the memtable, radius and boolean queries, every
/// forced plan and exact. The case that matters: an old version the filter admits, shadowed
/// by a newer version it does not admit (or by a delete), must never come back from the old
/// segment — and the reverse must be visible. Exact answers equal brute force over the
/// admitted current documents.
#[test]
fn mandatory_filter_holds_across_segments_memtable_deletes_and_overwrites() {
    use std::collections::BTreeMap;
    let tmp = tempfile::tempdir().unwrap();
    let opts = options().with_ann(AnnOptions {
        min_vectors: 500,
        ..options().ann
    });
    let db = Db::create_with(tmp.path(), Schema::new(DIM as u32, Metric::L2), opts).unwrap();
    let data = clustered(6_000, 30, 31);
    // Current state: key -> (vector, admitted by tenant:1, has "seven").
    let mut model: BTreeMap<String, (Vec<f32>, bool, bool)> = BTreeMap::new();
    type Model = BTreeMap<String, (Vec<f32>, bool, bool)>;
    let put = |model: &mut Model, b: &mut WriteBatch, i: usize, v: &[f32], tenant: bool| {
        let mut d = Document::new(key(i), "").with_vector(v.to_vec());
        if tenant {
            d = d.with_term("tenant:1");
        }
        if i.is_multiple_of(7) {
            d = d.with_term("seven");
        }
        b.put(d);
        model.insert(key(i), (v.to_vec(), tenant, i.is_multiple_of(7)));
    };
    // Three segments, then a memtable; each round rewrites and deletes some earlier keys.
    let mut rng = StdRng::seed_from_u64(5);
    for round in 0..4 {
        let mut b = WriteBatch::new();
        let first = round * 1500;
        for (i, v) in data.iter().enumerate().skip(first).take(1500) {
            put(&mut model, &mut b, i, v, rng.gen_bool(0.5));
        }
        if round > 0 {
            for _ in 0..300 {
                // Overwrite an older key, flipping its visibility (and moving it).
                let i = rng.gen_range(0..round * 1500);
                let was = model.get(&key(i)).is_some_and(|m| m.1);
                let j = rng.gen_range(0..data.len());
                put(&mut model, &mut b, i, &data[j], !was);
            }
            for _ in 0..150 {
                let i = rng.gen_range(0..round * 1500);
                b.delete(key(i).into_bytes());
                model.remove(&key(i));
            }
        }
        db.write(b).unwrap();
        if round < 3 {
            db.flush().unwrap();
        }
    }
    let st = db.stats();
    assert!(st.segments >= 2 && st.memtable_bytes > 0, "{st:?}");
    let snap = db
        .restricted_snapshot(strata::Filter::term("tenant:1"))
        .unwrap();
    let admitted = |k: &[u8]| {
        model
            .get(std::str::from_utf8(k).unwrap())
            .is_some_and(|m| m.1)
    };
    let brute = |q: &[f32], seven: bool, radius: Option<f32>| -> Vec<Vec<u8>> {
        let mut v: Vec<(f32, &String)> = model
            .iter()
            .filter(|(_, m)| m.1 && (!seven || m.2))
            .map(|(k, m)| (strata::distance(Metric::L2, q, &m.0), k))
            .filter(|(d, _)| radius.is_none_or(|r| *d <= r))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        v.into_iter()
            .take(10)
            .map(|x| x.1.clone().into_bytes())
            .collect()
    };
    let mut plans = HashSet::new();
    for q in clustered(12, 30, 17) {
        for seven in [false, true] {
            let mut query = Query::knn(q.clone(), 10);
            if seven {
                query = query.with_filter_str("seven").unwrap();
            }
            let forced = [PlanHint::Graph, PlanHint::FilterFirst, PlanHint::Partition]
                .map(|p| query.clone().with_plan(p));
            for qq in [query.clone()].into_iter().chain(forced) {
                let (got, st) = snap.search_with_stats(&qq).unwrap();
                for e in &st.explain {
                    plans.insert(format!("{:?}", e.plan));
                }
                assert!(!got.is_empty());
                for h in &got {
                    assert!(
                        admitted(&h.key),
                        "{:?} not admitted",
                        String::from_utf8_lossy(&h.key)
                    );
                }
            }
            let exact: Vec<Vec<u8>> = snap
                .search(&query.clone().exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            assert_eq!(exact, brute(&q, seven, None));
            // Radius: every hit admitted, and exact radius equals brute force.
            let r = strata::distance(Metric::L2, &q, &data[0]).min(20.0);
            let radius: Vec<Vec<u8>> = snap
                .search(&query.clone().with_radius(r).exact())
                .unwrap()
                .into_iter()
                .map(|h| h.key)
                .collect();
            assert_eq!(radius, brute(&q, seven, Some(r)));
            for h in snap.search(&query.clone().with_radius(r)).unwrap() {
                assert!(admitted(&h.key));
            }
        }
    }
    for p in ["FilteredGraph", "Exact", "Partition"] {
        assert!(plans.contains(p), "plan {p} not exercised: {plans:?}");
    }
    // Boolean queries, get and scan over the same state.
    let all = snap
        .search(&Query::boolean(strata::Filter::term("seven"), 100_000))
        .unwrap();
    let want = model.values().filter(|m| m.1 && m.2).count();
    assert_eq!(all.len(), want);
    for (k, m) in model.iter().take(400) {
        assert_eq!(snap.get(k.as_bytes()).unwrap().is_some(), m.1, "{k}");
    }
    let scanned = snap.scan_prefix(b"doc-").unwrap();
    assert_eq!(scanned.len(), model.values().filter(|m| m.1).count());
}

/// A lazy open (`AnnOptions::warm = false`) keeps no node cache — memory is the codes alone —
/// reads every hop from the mapping, and answers with the warm open's recall.
#[test]
fn lazy_open_reads_nodes_on_demand_with_the_same_recall() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = options().with_ann(AnnOptions {
        min_vectors: 1000,
        ..AnnOptions::default()
    });
    {
        let db = Db::create_with(
            tmp.path(),
            Schema::new(DIM as u32, Metric::L2),
            opts.clone(),
        )
        .unwrap();
        load(&db, &clustered(8_000, 40, 3));
    }
    let open = |warm: bool| {
        let mut o = opts.clone();
        o.ann.warm = warm;
        Db::open_read_only(tmp.path(), o).unwrap()
    };
    let (warm, lazy) = (open(true), open(false));
    assert_eq!(lazy.stats().ann_segments, 1);
    assert!(
        lazy.stats().ann_resident_bytes < warm.stats().ann_resident_bytes,
        "lazy {} >= warm {}",
        lazy.stats().ann_resident_bytes,
        warm.stats().ann_resident_bytes
    );
    let queries = clustered(100, 40, 4);
    let (rw, sw) = recall(&warm, &queries, 128, PlanHint::Graph);
    let (rl, sl) = recall(&lazy, &queries, 128, PlanHint::Graph);
    assert!(sw.sectors_read == 0 && sl.sectors_read > 0, "{sw:?} {sl:?}");
    assert!(rw >= 0.95 && rl >= 0.95, "warm {rw}, lazy {rl}");
}
