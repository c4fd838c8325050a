//! Behaviour of the public API: creation and opening, the directory lock, bad input, batches,
//! snapshots under concurrent writes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata::{Db, Document, Error, Filter, Metric, Options, Query, Schema, SyncMode, WriteBatch};

fn schema() -> Schema {
    Schema::new(3, Metric::L2).with_attr("ts")
}

#[test]
fn create_open_and_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    assert!(matches!(
        Db::open(&dir, Options::default()),
        Err(Error::NotFound(_))
    ));
    let db = Db::create(&dir, schema()).unwrap();
    assert!(matches!(
        Db::open(&dir, Options::default()),
        Err(Error::Locked(_))
    ));
    db.put(Document::new("a", "1")).unwrap();
    drop(db);
    assert!(matches!(
        Db::create(&dir, schema()),
        Err(Error::AlreadyExists(_))
    ));
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(db.schema(), &schema());
    assert_eq!(db.get(b"a").unwrap().unwrap().value, b"1");
    assert!(matches!(
        Db::create(tmp.path().join("bad"), Schema::new(0, Metric::L2)),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn bad_input_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create(tmp.path(), schema()).unwrap();
    let bad = [
        Document::new("k", "v").with_vector(vec![1.0, 2.0]),
        Document::new("k", "v").with_vector(vec![1.0, 2.0, f32::NAN]),
        Document::new("", "v"),
        Document::new("k", "v").with_attr("likes", 1),
        Document::new("k", "v").with_term("two words"),
    ];
    for d in bad {
        assert!(matches!(db.put(d), Err(Error::InvalidInput(_))));
    }
    let mut b = WriteBatch::new();
    b.put(Document::new("ok", "v"))
        .put(Document::new("k", "v").with_term(""));
    assert!(matches!(db.write(b), Err(Error::InvalidInput(m)) if m.contains("operation 1")));
    assert!(
        db.scan(..).unwrap().is_empty(),
        "a failed batch writes nothing"
    );

    let q = Query::knn(vec![0.0; 2], 3);
    assert!(matches!(db.search(&q), Err(Error::InvalidInput(_))));
    let q = Query::knn(vec![0.0; 3], 3).with_filter(Filter::range("likes", 0, 1));
    assert!(matches!(db.search(&q), Err(Error::InvalidInput(_))));
    let q = Query::boolean(Filter::term("a"), 3).with_radius(1.0);
    assert!(matches!(db.search(&q), Err(Error::InvalidInput(_))));
    let e = Query::default()
        .with_filter_str("(and lang:en")
        .unwrap_err();
    assert!(matches!(e, Error::FilterSyntax { position: 12, .. }), "{e}");
}

#[test]
fn boolean_queries_return_keys_in_order_and_docs_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create(tmp.path(), schema()).unwrap();
    let mut b = WriteBatch::new();
    for (k, t, ts) in [
        ("c", "lang:en", 5),
        ("a", "lang:en", 50),
        ("b", "lang:de", 7),
    ] {
        b.put(Document::new(k, k).with_term(t).with_attr("ts", ts));
    }
    db.write(b).unwrap();
    let q = Query::boolean(Filter::parse("(or lang:de (range ts 0 10))").unwrap(), 10).with_docs();
    let hits = db.search(&q).unwrap();
    let keys: Vec<&[u8]> = hits.iter().map(|h| h.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"b"[..], b"c"]);
    assert_eq!(hits[0].doc.as_ref().unwrap().value, b"b");
    assert!(hits.iter().all(|h| h.distance.is_none()));
}

#[test]
fn snapshots_never_change_while_a_writer_runs() {
    let tmp = tempfile::tempdir().unwrap();
    // Small memtables: the writer's batches are frozen and flushed while readers read.
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(8 * 1024);
    let db = Db::create_with(tmp.path(), schema(), opts).unwrap();
    for i in 0..200u32 {
        db.put(Document::new(format!("k{i:04}"), "0").with_vector(vec![i as f32, 0.0, 0.0]))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            // Bounded: the memtable keeps every version until a flush.
            while !stop.load(Ordering::Relaxed) && n < 3000 {
                let mut b = WriteBatch::new();
                b.put(
                    Document::new(format!("k{:04}", n % 300), n.to_string()).with_vector(vec![
                        (n % 97) as f32,
                        1.0,
                        0.0,
                    ]),
                );
                b.delete(format!("k{:04}", (n * 7) % 300));
                db.write(b).unwrap();
                n += 1;
            }
            n
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..30 {
                    let snap = db.snapshot();
                    let q = Query::knn(vec![10.0, 0.0, 0.0], 20);
                    let first = (snap.scan(..).unwrap(), snap.search(&q).unwrap());
                    std::thread::yield_now();
                    let again = (snap.scan(..).unwrap(), snap.search(&q).unwrap());
                    assert_eq!(first, again, "a snapshot changed under a writer");
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let batches = writer.join().unwrap();
    assert!(batches > 0);
    db.flush().unwrap();
    assert!(db.stats().segments > 0, "{:?}", db.stats());
}

#[test]
fn a_corrupt_segment_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::create(&dir, schema()).unwrap();
    for i in 0..50 {
        db.put(Document::new(format!("k{i}"), "value").with_term("t"))
            .unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let seg_dir = dir.join(strata::SEGMENTS_DIR);
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let pristine = std::fs::read(&seg).unwrap();
    for (what, bytes) in [
        ("flipped", {
            let mut b = pristine.clone();
            b[pristine.len() / 3] ^= 0x10;
            b
        }),
        ("truncated", pristine[..pristine.len() - 5].to_vec()),
    ] {
        std::fs::write(&seg, &bytes).unwrap();
        let e = Db::open(&dir, Options::default()).unwrap_err();
        assert!(e.is_corruption(), "{what}: {e}");
        assert!(
            e.to_string().contains(&seg.display().to_string()),
            "{what}: {e}"
        );
    }
    std::fs::write(&seg, &pristine).unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(db.scan(..).unwrap().len(), 50);
}

#[test]
fn batches_are_atomic_for_readers() {
    // Every batch moves one unit from x to y, computed from one snapshot; a reader must never
    // see the sum change, which it would if it saw half a batch.
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::default().with_sync(SyncMode::Never);
    let db = Db::create_with(tmp.path(), schema(), opts).unwrap();
    let mut b = WriteBatch::new();
    b.put(Document::new("x", "100"))
        .put(Document::new("y", "0"));
    db.write(b).unwrap();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let snap = db.snapshot();
                    let (x, y) = (read(&snap, b"x"), read(&snap, b"y"));
                    let mut b = WriteBatch::new();
                    b.put(Document::new("x", (x - 1).to_string()))
                        .put(Document::new("y", (y + 1).to_string()));
                    db.write(b).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..300 {
        let snap = db.snapshot();
        // Every batch writes a pair summing to 100; seeing half of a batch (the new x with the
        // old y) would show 99.
        let (xd, yd) = (
            snap.get(b"x").unwrap().unwrap(),
            snap.get(b"y").unwrap().unwrap(),
        );
        let (x, y): (i64, i64) = (parse(&xd.value), parse(&yd.value));
        assert_eq!(x + y, 100, "saw half a batch: x={x} y={y}");
    }
    for w in writers {
        w.join().unwrap();
    }
}

fn parse(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

fn read(s: &strata::Snapshot, k: &[u8]) -> i64 {
    parse(&s.get(k).unwrap().unwrap().value)
}

#[test]
fn documents_at_the_bounds_round_trip_through_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create(tmp.path(), schema()).unwrap();
    let big = Document::new(
        vec![b'k'; strata::limits::KEY_BYTES_MAX],
        vec![7u8; strata::limits::VALUE_BYTES_MAX],
    )
    .with_vector(vec![1.0, 2.0, 3.0]);
    let mut many = Document::new("many-terms", "v");
    for i in 0..strata::limits::TERMS_PER_DOC_MAX {
        many.terms.push(format!("t:{i}"));
    }
    db.put(big.clone()).unwrap();
    db.put(many.clone()).unwrap();
    db.flush().unwrap();
    assert_eq!(
        *db.get(&big.key).unwrap().unwrap(),
        big.clone().validate(db.schema()).unwrap()
    );
    let got = db.get(b"many-terms").unwrap().unwrap();
    assert_eq!(got.terms.len(), strata::limits::TERMS_PER_DOC_MAX);
    let q = Query::boolean(Filter::term("t:1023"), 10);
    assert_eq!(db.search(&q).unwrap()[0].key, b"many-terms");
    // One byte over a bound is an error, not a truncation.
    let over = Document::new("k", vec![0u8; strata::limits::VALUE_BYTES_MAX + 1]);
    assert!(matches!(db.put(over), Err(Error::InvalidInput(_))));
}

#[test]
fn apply_operator_follows_the_social_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Schema::new(2, Metric::L2).with_attr("uid").with_attr("ts");
    let db = Db::create(tmp.path(), schema).unwrap();
    // Users carry their id and their friendships as terms (edge lists are posting lists).
    for (uid, friend_of) in [(1, 42), (2, 42), (3, 42), (4, 7)] {
        db.put(
            Document::new(format!("user-{uid}"), "")
                .with_attr("uid", uid)
                .with_term(format!("friend-of:{friend_of}"))
                .with_term("kind:user"),
        )
        .unwrap();
    }
    for p in 0..20i64 {
        let author = p % 5;
        db.put(
            Document::new(format!("post-{p:02}"), "")
                .with_vector(vec![p as f32, 0.0])
                .with_term(format!("author:{author}"))
                .with_term(if p % 2 == 0 { "lang:en" } else { "lang:de" }),
        )
        .unwrap();
    }
    let friends_posts = |db: &Db, f: &str| -> Vec<String> {
        db.search(&Query::boolean(Filter::parse(f).unwrap(), 100))
            .unwrap()
            .into_iter()
            .map(|h| String::from_utf8(h.key).unwrap())
            .collect()
    };
    let want: Vec<String> = (0..20)
        .filter(|p| [1, 2, 3].contains(&(p % 5)))
        .map(|p| format!("post-{p:02}"))
        .collect();
    assert_eq!(friends_posts(&db, "(apply author uid friend-of:42)"), want);
    db.flush().unwrap(); // the same through segments
    assert_eq!(friends_posts(&db, "(apply author uid friend-of:42)"), want);
    // Combined with a vector and other filters; the stats report the fan-out.
    let q = Query::knn(vec![0.0, 0.0], 3)
        .with_filter_str("(and lang:en (apply author uid friend-of:42))")
        .unwrap();
    let (hits, st) = db.search_with_stats(&q).unwrap();
    let keys: Vec<&[u8]> = hits.iter().map(|h| h.key.as_slice()).collect();
    assert_eq!(keys, [b"post-02".as_slice(), b"post-06", b"post-08"]);
    assert_eq!((st.apply_fanout, st.apply_truncated), (3, false));
    // A newer write shadows the segment: user 3 is no longer a friend of 42.
    db.put(
        Document::new("user-3", "")
            .with_attr("uid", 3)
            .with_term("friend-of:9"),
    )
    .unwrap();
    let want: Vec<String> = (0..20)
        .filter(|p| [1, 2].contains(&(p % 5)))
        .map(|p| format!("post-{p:02}"))
        .collect();
    assert_eq!(friends_posts(&db, "(apply author uid friend-of:42)"), want);
    // Nested: posts by friends of the users who wrote in German... and the fan-out bound.
    let mut q = Query::boolean(Filter::parse("(apply author uid kind:user)").unwrap(), 100);
    q.apply_fanout_max = 2;
    let (_, st) = db.search_with_stats(&q).unwrap();
    assert_eq!((st.apply_fanout, st.apply_truncated), (2, true));
    // Through segments again, and a deleted user drops out (the segment's deletions).
    db.flush().unwrap();
    assert_eq!(friends_posts(&db, "(apply author uid friend-of:42)"), want);
    db.delete(b"user-2").unwrap();
    db.flush().unwrap();
    let only_1: Vec<String> = (0..20)
        .filter(|p| p % 5 == 1)
        .map(|p| format!("post-{p:02}"))
        .collect();
    assert_eq!(
        friends_posts(&db, "(apply author uid friend-of:42)"),
        only_1
    );
    // Bad input: an undeclared attribute, a malformed form.
    assert!(db
        .search(&Query::boolean(
            Filter::parse("(apply author nope x)").unwrap(),
            5
        ))
        .is_err());
    match Filter::parse("(apply author)") {
        Err(Error::FilterSyntax { expected, .. }) => {
            assert!(expected.contains("attribute"), "{expected}")
        }
        other => panic!("{other:?}"),
    }
    // Round trip through the canonical text.
    let f = Filter::apply(
        "author",
        "uid",
        Filter::and([
            Filter::term("friend-of:42"),
            Filter::not(Filter::term("spam")),
        ]),
    );
    assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
}

#[test]
fn back_pressure_slows_then_stops_writers_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_flush_threshold_bytes(4096)
        .with_frozen_memtables_max(2);
    let db = Db::create_with(tmp.path(), schema(), opts).unwrap();
    // Unsynced writes take microseconds, each flush a segment write and fsyncs: the flusher
    // falls behind and back-pressure engages.
    for i in 0..3000 {
        db.put(Document::new(format!("k{i:05}"), vec![b'x'; 1000]))
            .unwrap();
    }
    let st = db.stats();
    assert!(st.write_slowdowns + st.write_stalls > 0, "{st:?}");
    assert!(st.frozen_memtables <= 2, "{st:?}");
    db.flush().unwrap();
    assert_eq!(db.scan(..).unwrap().len(), 3000);
}

/// The planner's pre-evaluation estimate brackets the true match count for random filters
/// over terms (Zipf-like frequencies) and ranges (sorted and random columns), and its point
/// estimate is exact for single terms.
#[test]
fn filter_estimates_bracket_the_actual_match_count() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create_with(
        tmp.path(),
        Schema::new(2, Metric::L2).with_attr("ts").with_attr("r"),
        Options::default().with_compaction(false),
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let mut b = strata::WriteBatch::new();
    for i in 0..5000i64 {
        let mut d = Document::new(format!("k{i:05}"), "")
            .with_attr("ts", 1_000 + i) // sorted with the keys: blocks are tight
            .with_attr("r", rng.gen_range(0..1000)); // random: every block spans everything
        for t in 0..8 {
            if rng.gen_range(0..(1 << t)) == 0 {
                d = d.with_term(format!("t{t}"));
            }
        }
        b.put(d);
    }
    db.write(b).unwrap();
    db.flush().unwrap();
    let atom = |rng: &mut rand::rngs::StdRng| -> String {
        match rng.gen_range(0..3) {
            0 => format!("t{}", rng.gen_range(0..9)),
            1 => {
                let lo = rng.gen_range(0..6000);
                format!("(range ts {lo} {})", lo + rng.gen_range(0..3000))
            }
            _ => {
                let lo = rng.gen_range(0..1000);
                format!("(range r {lo} {})", lo + rng.gen_range(0..300))
            }
        }
    };
    for _ in 0..300 {
        let f = match rng.gen_range(0..4) {
            0 => atom(&mut rng),
            1 => format!("(and {} {})", atom(&mut rng), atom(&mut rng)),
            2 => format!("(or {} {})", atom(&mut rng), atom(&mut rng)),
            _ => format!("(not (and {} {}))", atom(&mut rng), atom(&mut rng)),
        };
        let q = Query::boolean(Filter::parse(&f).unwrap(), 10);
        let (_, st) = db.search_with_stats(&q).unwrap();
        let seg = st.explain.iter().find(|e| e.segment.is_some()).unwrap();
        let (actual, est) = (seg.matches.unwrap(), seg.estimate.unwrap());
        assert!(
            est.min <= actual
                && actual <= est.max
                && est.min <= est.expected
                && est.expected <= est.max,
            "{f}: actual {actual}, estimate {est:?}"
        );
        if f.starts_with('t') {
            assert_eq!(est.expected, actual, "{f}");
        }
    }
}

/// `open_or_create` creates once, opens after, refuses another schema; every failure has the
/// kind a program matches on.
#[test]
fn open_or_create_and_error_kinds() {
    use strata::ErrorKind;
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::new(2, Metric::L2).with_attr("ts");
    let opts = Options::default().with_sync(SyncMode::Never);
    let db = Db::open_or_create(dir.path(), schema.clone(), opts.clone()).unwrap();
    db.put(Document::new("a", "1")).unwrap();
    // A second writable handle: locked.
    let locked = Db::open_or_create(dir.path(), schema.clone(), opts.clone()).unwrap_err();
    assert_eq!(locked.kind(), ErrorKind::Locked, "{locked}");
    drop(db);
    let db = Db::open_or_create(dir.path(), schema.clone(), opts.clone()).unwrap();
    assert_eq!(db.get(b"a").unwrap().unwrap().value, b"1");
    drop(db);
    let other = Db::open_or_create(dir.path(), Schema::new(3, Metric::L2), opts.clone());
    assert_eq!(other.unwrap_err().kind(), ErrorKind::InvalidInput);
    let exists = Db::create(dir.path(), schema.clone()).unwrap_err();
    assert_eq!(exists.kind(), ErrorKind::AlreadyExists);
    let missing = Db::open(dir.path().join("none"), opts.clone()).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let ro = Db::open_read_only(dir.path(), opts).unwrap();
    assert_eq!(
        ro.put(Document::new("b", "")).unwrap_err().kind(),
        ErrorKind::ReadOnly
    );
    let bad = ro.search(&Query::knn(vec![1.0], 3)).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
}

/// `compact_with` reports the merged segment's graph build up to every merged document.
#[test]
fn compaction_reports_progress_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .with_sync(SyncMode::Never)
        .with_compaction(false)
        .with_compaction_reuse_graph(false)
        .with_ann(strata::AnnOptions {
            min_vectors: 1000,
            ..strata::AnnOptions::default()
        });
    let db = Db::create_with(dir.path(), Schema::new(4, Metric::L2), opts).unwrap();
    for part in 0..2u32 {
        for i in 0..700u32 {
            let k = part * 700 + i;
            db.put(
                Document::new(format!("k{k:05}"), "").with_vector(vec![k as f32, 1.0, 2.0, 3.0]),
            )
            .unwrap();
        }
        db.flush().unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    assert!(db
        .compact_with(&|done, total| seen.lock().unwrap().push((done, total)))
        .unwrap());
    let seen = seen.into_inner().unwrap();
    assert!(!seen.is_empty(), "no progress reported");
    assert!(seen.iter().all(|&(d, t)| t == 1400 && d <= t), "{seen:?}");
    assert_eq!(seen.iter().map(|s| s.0).max(), Some(1400));
}

/// A database at rest takes about the bytes it holds: the active log's preallocated padding
/// is cut at close (and no spare is left beside it), and the cut log reopens with every
/// record and takes new ones.
#[test]
fn a_closed_database_keeps_no_preallocated_log_padding() {
    fn dir_bytes(d: &std::path::Path) -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dir_bytes(&p)
                } else {
                    std::fs::metadata(&p).unwrap().len()
                }
            })
            .sum()
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default(); // preallocation on (spares from 1 MiB), 64 MiB log files
    {
        let db = Db::create_with(dir.path(), Schema::new(4, Metric::L2), opts.clone()).unwrap();
        db.put(Document::new("a", "1")).unwrap();
        // Write until the log has rotated onto a preallocated spare (the preallocator makes
        // one in the background; a slow disk takes longer), at most 30 s.
        let start = std::time::Instant::now();
        for i in 0..200 {
            db.put(Document::new(format!("k{i:03}"), "v")).unwrap();
        }
        // The active log (`*.wal`; spares are `*.wal.tmp`) at its preallocated size.
        let log_bytes = || {
            std::fs::read_dir(dir.path().join("wal"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "wal"))
                .map(|p| std::fs::metadata(p).unwrap().len())
                .max()
                .unwrap_or(0)
        };
        while log_bytes() < 1 << 20 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the log never rotated onto a preallocated file"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
            db.put(Document::new("k000", "v")).unwrap();
        }
    }
    let at_rest = dir_bytes(dir.path());
    assert!(at_rest < 1 << 20, "{at_rest} bytes at rest");
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(db.scan(..).unwrap().len(), 201);
        db.put(Document::new("b", "2")).unwrap();
    }
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(db.get(b"b").unwrap().unwrap().value, b"2");
    assert_eq!(db.scan(..).unwrap().len(), 202);
}
