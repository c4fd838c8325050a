//! Differential test: random puts, deletes, batches, reopens, simulated power losses and
//! searches (vector, filter, radius, boolean) against a model — a `BTreeMap` of documents with
//! brute-force filtering and kNN. Results must be equal exactly (ties broken by key).
//! Seeded: `STRATA_SEED=N` replays a run, `STRATA_MODEL_OPS=N` makes it longer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::{
    distance, Db, Document, Filter, Metric, Options, Query, Schema, SyncMode, WriteBatch,
};
use strata_io::{FaultConfig, FaultFs, Fs};

const DIM: usize = 4;
const TERMS: [&str; 6] = [
    "lang:en",
    "lang:de",
    "author:7",
    "author:9",
    "spam",
    "friend-of:42",
];

fn schema(metric: Metric) -> Schema {
    Schema::new(DIM as u32, metric)
        .with_attr("ts")
        .with_attr("likes")
}

fn key(rng: &mut StdRng) -> Vec<u8> {
    format!("k{:03}", rng.gen_range(0..150)).into_bytes()
}

fn doc(rng: &mut StdRng) -> Document {
    let mut d = Document::new(key(rng), vec![rng.gen::<u8>(); rng.gen_range(0..20)]);
    if rng.gen_bool(0.85) {
        // Small integer grid: many exact distance ties, so tie-breaking by key is exercised.
        d.vector = Some((0..DIM).map(|_| rng.gen_range(-3..=3) as f32).collect());
    }
    for t in TERMS {
        if rng.gen_bool(0.3) {
            d.terms.push(t.to_owned());
        }
    }
    if rng.gen_bool(0.7) {
        d.attrs.insert("ts".into(), rng.gen_range(0..100));
    }
    if rng.gen_bool(0.3) {
        d.attrs.insert("likes".into(), rng.gen_range(-5..5));
    }
    d.terms.sort();
    d
}

fn filter(rng: &mut StdRng, depth: u32) -> Filter {
    match rng.gen_range(0..if depth > 2 { 2 } else { 5 }) {
        0 => Filter::term(TERMS[rng.gen_range(0..TERMS.len())]),
        1 => {
            let lo = rng.gen_range(0..100);
            Filter::range("ts", lo, lo + rng.gen_range(0..50))
        }
        2 => Filter::and((0..rng.gen_range(1..3)).map(|_| filter(rng, depth + 1))),
        3 => Filter::or((0..rng.gen_range(1..3)).map(|_| filter(rng, depth + 1))),
        _ => Filter::not(filter(rng, depth + 1)),
    }
}

fn model_search(
    model: &BTreeMap<Vec<u8>, Document>,
    q: &Query,
    metric: Metric,
) -> Vec<(Vec<u8>, Option<f32>)> {
    let matching = model
        .values()
        .filter(|d| q.filter.as_ref().is_none_or(|f| f.matches(d)));
    match &q.vector {
        None => matching.take(q.k).map(|d| (d.key.clone(), None)).collect(),
        Some(qv) => {
            let mut scored: Vec<(f32, Vec<u8>)> = matching
                .filter_map(|d| Some((distance(metric, qv, d.vector.as_ref()?), d.key.clone())))
                .filter(|(dist, _)| q.radius.is_none_or(|r| *dist <= r))
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            scored
                .into_iter()
                .take(q.k)
                .map(|(d, k)| (k, Some(d)))
                .collect()
        }
    }
}

fn check_reads(
    db: &Db,
    model: &BTreeMap<Vec<u8>, Document>,
    rng: &mut StdRng,
    metric: Metric,
    step: usize,
) {
    for _ in 0..3 {
        let k = key(rng);
        let got = db.get(&k).unwrap().map(|d| (*d).clone());
        assert_eq!(got.as_ref(), model.get(&k), "step {step}: get {k:?}");
    }
    let a = key(rng);
    let b = key(rng);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let got: Vec<Vec<u8>> = db
        .scan(lo.clone()..hi.clone())
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    let want: Vec<Vec<u8>> = model.range(lo..hi).map(|(k, _)| k.clone()).collect();
    assert_eq!(got, want, "step {step}: scan");
    let prefix = format!("k{}", rng.gen_range(0..2)).into_bytes();
    let got: Vec<Vec<u8>> = db
        .scan_prefix(&prefix)
        .unwrap()
        .iter()
        .map(|d| d.key.clone())
        .collect();
    let want: Vec<Vec<u8>> = model
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    assert_eq!(got, want, "step {step}: prefix scan");

    let mut q = if rng.gen_bool(0.75) {
        let v: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-3.0..3.0)).collect();
        Query::knn(v, rng.gen_range(0..12))
    } else {
        Query {
            k: rng.gen_range(0..40),
            ..Query::default()
        }
    };
    if rng.gen_bool(0.7) {
        q.filter = Some(filter(rng, 0));
    }
    if q.vector.is_some() && rng.gen_bool(0.3) {
        q.radius = Some(rng.gen_range(0.0..4.0));
    }
    if rng.gen_bool(0.5) {
        // Through the parser, too.
        if let Some(f) = &q.filter {
            q.filter = Some(Filter::parse(&f.to_string()).unwrap());
        }
    }
    let got: Vec<(Vec<u8>, Option<f32>)> = db
        .search(&q)
        .unwrap()
        .into_iter()
        .map(|h| (h.key, h.distance))
        .collect();
    assert_eq!(
        got,
        model_search(model, &q, metric),
        "step {step}: search {q:?}"
    );
}

fn run(seed: u64, metric: Metric, ops: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let fs = FaultFs::new();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let dir = Path::new("/db");
    // Small memtables: flushes to segments (and deletion bitmaps) happen all the time.
    let opts = Options::default()
        .with_fs(shared)
        .with_wal_preallocate(false)
        .with_flush_threshold_bytes(rng.gen_range(2_000..40_000))
        // Small WAL files: flushes truncate the log for real.
        .with_batch_bytes_max(8 * 1024)
        .with_wal_segment_bytes_max(rng.gen_range(12_000..40_000));
    let mut db = Db::create_with(dir, schema(metric), opts.clone()).unwrap();
    let mut model: BTreeMap<Vec<u8>, Document> = BTreeMap::new();
    for step in 0..ops {
        match rng.gen_range(0..100) {
            0..=44 => {
                let d = doc(&mut rng);
                db.put(d.clone()).unwrap();
                model.insert(d.key.clone(), d);
            }
            45..=59 => {
                let k = key(&mut rng);
                db.delete(&k).unwrap();
                model.remove(&k);
            }
            60..=74 => {
                let mut b = WriteBatch::new();
                let mut m = model.clone();
                for _ in 0..rng.gen_range(1..6) {
                    if rng.gen_bool(0.7) {
                        let d = doc(&mut rng);
                        m.insert(d.key.clone(), d.clone());
                        b.put(d);
                    } else {
                        let k = key(&mut rng);
                        m.remove(&k);
                        b.delete(k);
                    }
                }
                if rng.gen_bool(0.1) {
                    // An invalid op fails the whole batch; nothing is written.
                    b.put(Document::new("bad", "").with_vector(vec![f32::NAN; DIM]));
                    assert!(db.write(b).is_err());
                } else {
                    db.write(b).unwrap();
                    model = m;
                }
            }
            75..=77 => {
                drop(db);
                db = Db::open(dir, opts.clone()).unwrap();
            }
            78 => db.flush().unwrap(),
            80 => {
                db.compact().unwrap();
                assert!(
                    db.stats().segments <= 1,
                    "step {step}: full compaction left segments"
                );
            }
            79 => {
                // Power loss with Sync::Always: every acknowledged batch survives.
                let SyncMode::Always = opts.sync else {
                    unreachable!()
                };
                // The process dies: nothing more reaches the disk, the flusher stops.
                fs.set_faults(FaultConfig {
                    crash_after_ops: Some(0),
                    ..FaultConfig::default()
                });
                drop(db);
                fs.crash(rng.gen());
                db = Db::open(dir, opts.clone()).unwrap();
            }
            _ => check_reads(&db, &model, &mut rng, metric, step),
        }
    }
    check_reads(&db, &model, &mut rng, metric, ops);
    let stats = db.stats();
    assert!(
        stats.checkpoint_lsn > 0 || ops < 500,
        "no flush happened: {stats:?}"
    );
}

fn base_seed() -> u64 {
    std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen())
}

#[test]
fn store_equals_model_for_every_metric() {
    let ops = std::env::var("STRATA_MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let seed = base_seed();
    eprintln!("model test seed {seed} (replay: STRATA_SEED={seed})");
    for (i, metric) in [Metric::L2, Metric::InnerProduct, Metric::Cosine]
        .into_iter()
        .enumerate()
    {
        run(seed.wrapping_add(i as u64), metric, ops);
    }
}
