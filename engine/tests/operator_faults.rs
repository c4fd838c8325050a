//! What a bad disk and a careless operator do to a database directory, through the public API:
//! a damaged, cut or lost log after a checkpoint, a lost manifest, unknown files, read-only
//! handles next to a writer. Each case failed (lost acknowledged writes, deleted segments or
//! changed the directory) before the recovery rules of `docs/durability.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{same, tree};
use strata::wal::TailKind;
use strata::{Db, Document, Error, Metric, Options, Query, Schema};

fn schema() -> Schema {
    Schema::new(2, Metric::L2)
}

fn doc(k: &str) -> Document {
    Document::new(k, format!("value of {k}")).with_vector(vec![k.len() as f32, 1.0])
}

fn wal_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    v.sort();
    v
}

/// Options without the spare-file thread, so the log files are exactly the written ones.
fn opts() -> Options {
    Options::default().with_wal_preallocate(false)
}

/// A database with `a`, `b` compacted into a segment (checkpoint = last LSN) and nothing after.
fn checkpointed(dir: &Path) {
    let db = Db::create_with(dir, schema(), opts()).unwrap();
    db.put(doc("a")).unwrap();
    db.put(doc("b")).unwrap();
    db.compact().unwrap();
    assert_eq!(db.stats().checkpoint_lsn, 2);
}

fn flip_last_record_byte(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let last = b.iter().rposition(|&x| x != 0).unwrap();
    b[last - 1] ^= 0x08;
    std::fs::write(path, b).unwrap();
}

#[test]
fn new_writes_survive_a_damaged_cut_or_lost_log_after_a_checkpoint() {
    for case in ["flip", "cut", "remove"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        checkpointed(&dir);
        // The damage hits records the checkpoint covers (the repro of the issue): the log
        // then ends below the checkpoint.
        for p in wal_files(&dir) {
            match case {
                "flip" => flip_last_record_byte(&p),
                "cut" => std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(32)
                    .unwrap(),
                _ => std::fs::remove_file(&p).unwrap(),
            }
        }
        let db = Db::open(&dir, opts()).unwrap();
        db.put(doc("n")).unwrap();
        drop(db);
        for _ in 0..2 {
            let db = Db::open(&dir, opts()).unwrap();
            assert!(
                db.get(b"n").unwrap().is_some(),
                "{case}: acknowledged put lost"
            );
            assert!(db.get(b"a").unwrap().is_some(), "{case}");
            assert!(!db.recovery().wal_restarted, "{case}: restarted twice");
        }
    }
}

#[test]
fn damage_to_an_acknowledged_record_is_refused_then_set_aside_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    checkpointed(&dir);
    let db = Db::open(&dir, opts()).unwrap();
    db.put(doc("c")).unwrap();
    db.put(doc("dd")).unwrap();
    drop(db);
    let wal = wal_files(&dir);
    flip_last_record_byte(wal.last().unwrap());
    let before = tree(&dir);
    let err = Db::open(&dir, opts()).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("LSN 4"), "{err}");
    same(&tree(&dir), &before, "a refused open");
    // Read-only: sees the records before the damage, reports it, changes nothing.
    let ro = Db::open_read_only(&dir, opts()).unwrap();
    assert!(ro.get(b"c").unwrap().is_some());
    assert!(ro.get(b"dd").unwrap().is_none());
    let lost: Vec<_> = ro.recovery().lost_past_checkpoint().collect();
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].lsn, lost[0].kind), (4, TailKind::Damaged));
    drop(ro);
    same(&tree(&dir), &before, "a read-only open");
    // The explicit repair sets the damaged bytes aside and opens.
    let db = Db::open(
        &dir,
        opts().with_recovery(strata::wal::RecoveryMode::SetAside),
    )
    .unwrap();
    let t = db.recovery().wal_tail.clone().unwrap();
    let saved = t.saved_to.unwrap();
    assert!(saved.starts_with(dir.join("wal").join("lost+found")));
    assert!(!std::fs::read(&saved).unwrap().is_empty());
    assert!(db.get(b"c").unwrap().is_some());
    db.put(doc("e")).unwrap();
    drop(db);
    let db = Db::open(&dir, opts()).unwrap();
    assert!(db.get(b"e").unwrap().is_some());
}

#[test]
fn a_torn_tail_is_cut_and_kept_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::create_with(&dir, schema(), opts()).unwrap();
    for k in ["a", "b", "c"] {
        db.put(doc(k)).unwrap();
    }
    drop(db);
    let p = wal_files(&dir).pop().unwrap();
    let len = std::fs::metadata(&p).unwrap().len();
    // The file ends inside the last frame: an interrupted write.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let db = Db::open(&dir, opts()).unwrap();
    let t = db.recovery().wal_tail.clone().unwrap();
    assert_eq!((t.kind, t.lsn, t.covered), (TailKind::Torn, 3, false));
    assert!(t.saved_to.is_some());
    assert!(db.get(b"b").unwrap().is_some());
    assert!(db.get(b"c").unwrap().is_none());
}

#[test]
fn a_lost_manifest_is_an_error_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    checkpointed(&dir);
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("MANIFEST-")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let before = tree(&dir);
    for read_only in [false, true] {
        let r = if read_only {
            Db::open_read_only(&dir, opts())
        } else {
            Db::open(&dir, opts())
        };
        match r {
            Err(Error::MissingManifest { evidence, .. }) => {
                assert!(evidence.contains(".seg"), "{evidence}")
            }
            other => panic!("read_only {read_only}: {other:?}"),
        }
        same(&tree(&dir), &before, "a refused open");
    }
}

#[test]
fn opening_removes_only_its_own_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    checkpointed(&dir);
    let seg = dir.join("segments");
    let seg_name = std::fs::read_dir(&seg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".seg"))
        .unwrap();
    let foreign = [
        seg.join(format!("{seg_name}.bak")),
        seg.join("NOTES.txt"),
        dir.join("MANIFEST-backup"),
        dir.join("mine.tmp"),
        seg.join("0000000000000001.seg.orig"),
    ];
    for f in &foreign {
        std::fs::write(f, b"operator's file").unwrap();
    }
    // Garbage the database can prove is its own: an unnamed segment id, a stale bitmap, an
    // older manifest, a temp of its own manifest.
    let own = [
        seg.join("00000000000000ff.seg"),
        seg.join("0000000000000001-00000009.del"),
        dir.join("MANIFEST-0000000000000000"),
        dir.join("MANIFEST-00000000000000ff.tmp"),
    ];
    for f in &own {
        std::fs::write(f, b"x").unwrap();
    }
    let db = Db::open(&dir, opts()).unwrap();
    assert_eq!(
        db.recovery().removed.len(),
        own.len(),
        "{:?}",
        db.recovery()
    );
    drop(db);
    for f in &foreign {
        assert_eq!(
            std::fs::read(f).unwrap(),
            b"operator's file",
            "{}",
            f.display()
        );
    }
    for f in &own {
        assert!(!f.exists(), "{}", f.display());
    }
}

#[test]
fn read_only_handles_change_nothing_and_live_next_to_a_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    checkpointed(&dir);
    let db = Db::open(&dir, Options::default()).unwrap(); // preallocating, like production
    db.put(doc("live")).unwrap(); // a live log tail past the checkpoint
    std::fs::write(dir.join("x.tmp"), b"t").unwrap();
    std::fs::write(dir.join("MANIFEST-backup"), b"m").unwrap();
    // Several readers at once, next to the writer.
    let r1 = Db::open_read_only(&dir, opts()).unwrap();
    let r2 = Db::open_read_only(&dir, opts()).unwrap();
    for r in [&r1, &r2] {
        assert!(r.is_read_only());
        assert!(r.get(b"live").unwrap().is_some());
        assert_eq!(r.search(&Query::knn(vec![1.0, 1.0], 10)).unwrap().len(), 3);
        r.verify().unwrap();
        assert!(matches!(r.put(doc("w")), Err(Error::ReadOnly(_))));
        assert!(matches!(r.delete(b"a"), Err(Error::ReadOnly(_))));
        assert!(matches!(r.flush(), Err(Error::ReadOnly(_))));
        assert!(matches!(r.compact(), Err(Error::ReadOnly(_))));
    }
    // A reader sees the database as of its open.
    db.put(doc("later")).unwrap();
    assert!(r1.get(b"later").unwrap().is_none());
    db.flush().unwrap();
    db.compact().unwrap();
    assert!(
        r1.get(b"live").unwrap().is_some(),
        "files removed under a reader"
    );
    let r3 = Db::open_read_only(&dir, opts()).unwrap();
    assert!(r3.get(b"later").unwrap().is_some());
    drop((r1, r2, r3));
    drop(db);
    // Without the writer: read-only opens leave every byte and name as they were.
    let before = tree(&dir);
    for _ in 0..3 {
        let r = Db::open_read_only(&dir, opts()).unwrap();
        r.verify().unwrap();
        let _ = r.scan(..).unwrap();
    }
    same(&tree(&dir), &before, "read-only opens");
}

#[test]
fn a_read_only_open_of_a_fresh_database_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(Db::create(&dir, schema()).unwrap());
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    std::fs::remove_dir_all(dir.join("wal")).unwrap();
    let before = tree(&dir);
    let r = Db::open_read_only(&dir, opts()).unwrap();
    assert!(r.get(b"a").unwrap().is_none());
    drop(r);
    same(&tree(&dir), &before, "a read-only open");
    assert!(matches!(
        Db::open_read_only(tmp.path().join("nothing"), opts()),
        Err(Error::NotFound(_))
    ));
}

/// Documents for the memtable-filter tests: `ts` attribute, `t:<i % 50>` and a language.
fn social(db: &Db, n: usize) {
    let mut b = strata::WriteBatch::new();
    for i in 0..n {
        b.put(
            Document::new(format!("m{i:05}"), "")
                .with_vector(vec![(i % 97) as f32, (i % 13) as f32])
                .with_term(format!("t:{}", i % 50))
                .with_term(if i % 3 == 0 { "lang:de" } else { "lang:en" })
                .with_attr("ts", (i % 70) as i64),
        );
    }
    db.write(b).unwrap();
}

#[test]
fn memtable_filters_equal_segment_filters_and_honour_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::create(tmp.path(), Schema::new(2, Metric::L2).with_attr("ts")).unwrap();
    social(&db, 3000);
    let wide = format!(
        "(or {})",
        (0..2000)
            .map(|i| format!("t:{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let nested = "(apply t ts (apply t ts (apply t ts (and lang:de (range ts 3 5)))))";
    let filters = [
        wide.as_str(),
        nested,
        "(apply t ts lang:en)",
        "(and (not lang:de) (or t:3 (apply t ts (range ts 1 2))))",
    ];
    let run = |db: &Db| -> Vec<Vec<(Vec<u8>, Option<f32>)>> {
        filters
            .iter()
            .map(|f| {
                let q =
                    Query::knn(vec![3.0, 4.0], 20).with_filter(strata::Filter::parse(f).unwrap());
                db.search(&q)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.key, h.distance))
                    .collect()
            })
            .collect()
    };
    let in_memtable = run(&db);
    assert!(in_memtable.iter().all(|r| !r.is_empty()));
    // A deadline already passed: a typed error, not an answer.
    let q = Query::knn(vec![3.0, 4.0], 20)
        .with_filter(strata::Filter::parse(nested).unwrap())
        .with_timeout(std::time::Duration::ZERO);
    assert!(matches!(db.search(&q), Err(Error::Timeout { .. })));
    db.flush().unwrap();
    assert_eq!(
        run(&db),
        in_memtable,
        "memtable and segment evaluation differ"
    );
}

#[test]
fn a_truncated_segment_is_refused_before_it_is_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    checkpointed(&dir);
    let seg = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    for cut in [len - 1, len / 2, 0] {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut)
            .unwrap();
        for read_only in [true, false] {
            let r = if read_only {
                Db::open_read_only(&dir, opts())
            } else {
                Db::open(&dir, opts())
            };
            let e = r.unwrap_err();
            assert!(e.is_corruption(), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("the manifest recorded {len}")),
                "{e}"
            );
        }
    }
}
