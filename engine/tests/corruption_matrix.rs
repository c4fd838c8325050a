//! The corruption matrix of the torture suite, for every file kind of a database directory —
//! `SCHEMA`, the manifest, a deletion bitmap, a segment: truncation at every tail offset (every
//! offset for small files), one flipped bit per 4 KiB (and in the last bytes), each 4 KiB sector
//! (or 512-byte block of a small file) zeroed, and two blocks swapped. Every mutation that
//! changes the bytes must make `Db::open` — or, for the bytes an open checks on first use
//! instead (vector chunks, graph sectors), `Db::verify` — fail with a corruption error naming
//! the file: never a panic, never a database that opens and verifies with other content. (The WAL's own matrix, where a torn
//! tail is truncated instead, lives in `wal/`; ANN graph sectors, checked on first read, in
//! `engine/src/ann/disk.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::path::{Path, PathBuf};

use strata::{Db, Document, Metric, Options, Schema};

mod common;
use common::copy_dir;

fn options() -> Options {
    Options::default()
        .with_compaction(false)
        .with_wal_preallocate(false)
}

/// A database with two segments (the first of `n` documents, a third of them deleted by the
/// second flush: its deletion bitmap is `n / 8` bytes) and a non-empty manifest.
fn build(dir: &Path, n: u32) {
    let db = Db::create_with(dir, Schema::new(4, Metric::L2).with_attr("ts"), options()).unwrap();
    let mut b = strata::WriteBatch::new();
    for i in 0..n {
        b.put(
            Document::new(format!("k{i:06}"), "v")
                .with_vector(vec![i as f32, 1.0, 2.0, 3.0])
                .with_term(format!("t{}", i % 7))
                .with_attr("ts", i64::from(i)),
        );
    }
    db.write(b).unwrap();
    db.flush().unwrap();
    for i in (0..n).step_by(3) {
        db.delete(format!("k{i:06}").as_bytes()).unwrap();
    }
    db.put(Document::new("z", "last")).unwrap();
    db.flush().unwrap();
    drop(db);
}

fn file_of(dir: &Path, pick: impl Fn(&str) -> bool) -> PathBuf {
    for d in [dir.to_owned(), dir.join(strata::SEGMENTS_DIR)] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if pick(p.file_name().unwrap().to_str().unwrap()) {
                return p;
            }
        }
    }
    panic!("no such file in {}", dir.display());
}

/// (name, mutated bytes) for every mutation of the matrix that changes `b`.
fn mutations(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let len = b.len();
    // Truncation: every offset of a small file; the last 4 KiB and every 97th byte otherwise.
    for cut in 0..len {
        if len <= 8192 || cut + 4096 >= len || cut % 97 == 0 {
            out.push((format!("truncated to {cut}"), b[..cut].to_vec()));
        }
    }
    // One bit per 4 KiB page, plus each of the last 64 bytes (footers and checksums live there).
    let mut flips: Vec<usize> = (0..len)
        .step_by(4096)
        .map(|p| (p + p / 4096 * 37) % len)
        .collect();
    flips.extend(len.saturating_sub(64)..len);
    for at in flips {
        let mut c = b.to_vec();
        c[at] ^= 1 << (at % 8);
        out.push((format!("bit flipped at {at}"), c));
    }
    // Each sector zeroed (512-byte blocks for files under 16 KiB).
    let sector = if len < 16 * 1024 { 512 } else { 4096 };
    for s in (0..len).step_by(sector) {
        let mut c = b.to_vec();
        c[s..(s + sector).min(len)].fill(0);
        out.push((format!("sector at {s} zeroed"), c));
    }
    // Two blocks swapped: the first and the last, and two neighbours in the middle.
    let blk = sector.min(len / 2).max(1);
    let mid = (len / 2 / blk).saturating_sub(1) * blk;
    for (x, y) in [(0, (len - blk) / blk * blk), (mid, mid + blk)] {
        if x != y && y + blk <= len && x + blk <= y {
            let mut c = b.to_vec();
            let (head, tail) = c.split_at_mut(y);
            head[x..x + blk].swap_with_slice(&mut tail[..blk]);
            out.push((format!("blocks at {x} and {y} swapped"), c));
        }
    }
    out.retain(|(_, c)| c != b);
    out
}

fn matrix(kind: &str, n: u32, pick: impl Fn(&str) -> bool) {
    let tmp = tempfile::tempdir().unwrap();
    let pristine_dir = tmp.path().join("pristine");
    build(&pristine_dir, n);
    let work = tmp.path().join("work");
    copy_dir(&pristine_dir, &work);
    let file = file_of(&work, pick);
    let pristine = std::fs::read(&file).unwrap();
    let cases = mutations(&pristine);
    assert!(cases.len() > 10, "{kind}: only {} mutations", cases.len());
    for (what, bytes) in &cases {
        std::fs::write(&file, bytes).unwrap();
        // Bytes an open leaves to first use (vector chunks, graph sectors) must fail
        // `verify` instead.
        match Db::open(&work, options()).and_then(|db| db.verify().map(|()| db)) {
            Ok(db) => panic!(
                "{kind} ({} bytes), {what}: opened and verified ({} documents)",
                pristine.len(),
                db.scan(..).map(|v| v.len()).unwrap_or(0)
            ),
            Err(e) => {
                assert!(
                    e.is_corruption(),
                    "{kind}, {what}: not a corruption error: {e}"
                );
                let name = file.file_name().unwrap().to_str().unwrap();
                assert!(
                    e.to_string().contains(name),
                    "{kind}, {what}: {e} does not name {name}"
                );
            }
        }
    }
    // And the pristine bytes still open with the right content.
    std::fs::write(&file, &pristine).unwrap();
    let db = Db::open(&work, options()).unwrap();
    assert_eq!(db.scan(..).unwrap().len() as u32, n - n.div_ceil(3) + 1);
    eprintln!(
        "{kind}: {} bytes, {} mutations, all detected",
        pristine.len(),
        cases.len()
    );
}

#[test]
fn manifest_corruption_is_always_detected() {
    matrix("manifest", 300, |n| n.starts_with("MANIFEST-"));
}

#[test]
fn deletion_bitmap_corruption_is_always_detected() {
    matrix("deletion bitmap", 30_000, |n| n.ends_with(".del"));
}

#[test]
fn schema_corruption_is_always_detected() {
    matrix("schema", 300, |n| n == "SCHEMA");
}

#[test]
fn segment_corruption_is_always_detected() {
    // The larger segment (the one with the bitmap): 2,000 documents, ~40 KiB.
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), 2000);
    let seg = std::fs::read_dir(tmp.path().join(strata::SEGMENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_owned();
    matrix("segment", 2000, |n| n == name);
}

/// A segment's vectors are checked a 64 KiB chunk at a time on first read: a damaged chunk
/// past the presence bitset lets the database open, but every read of a vector in it (a get, an
/// exact search) is a corruption error naming the file, `verify` fails, and the vectors of the
/// other chunks are served.
#[test]
fn a_damaged_vector_chunk_fails_its_reads_and_verify_not_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let dim = 64usize; // 256 bytes per vector: 256 vectors per chunk
    let n = 2000u32;
    {
        let db = Db::create_with(&dir, Schema::new(dim as u32, Metric::L2), options()).unwrap();
        let mut b = strata::WriteBatch::new();
        for i in 0..n {
            b.put(Document::new(format!("k{i:06}"), "v").with_vector(vec![i as f32; dim]));
        }
        db.write(b).unwrap();
        db.flush().unwrap();
    }
    let seg = file_of(&dir, |n| n.ends_with(".seg"));
    let mut bytes = std::fs::read(&seg).unwrap();
    // Section 3 from the table (docs/format.md: footer, then 24-byte entries).
    let f = bytes.len() - 64;
    let count = u32::from_le_bytes(bytes[f + 12..f + 16].try_into().unwrap()) as usize;
    let table = u64::from_le_bytes(bytes[f + 16..f + 24].try_into().unwrap()) as usize;
    let entry = (0..count)
        .map(|i| table + i * 24)
        .find(|&e| u32::from_le_bytes(bytes[e..e + 4].try_into().unwrap()) == 3)
        .unwrap();
    let at = u64::from_le_bytes(bytes[entry + 8..entry + 16].try_into().unwrap()) as usize;
    let kinds: Vec<u32> = (0..count)
        .map(|i| {
            u32::from_le_bytes(
                bytes[table + i * 24..table + i * 24 + 4]
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&10), "no vector chunk checksums: {kinds:?}");
    // Byte 2 · 64 KiB + 100 of the section: ordinal (131,172 − 256 bitset bytes) / 256 = 511.
    let words = (n as usize).div_ceil(64) * 8;
    let flip = at + 2 * 65_536 + 100;
    bytes[flip] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    let damaged = (flip - at - words) / (dim * 4);
    let db = Db::open(&dir, options()).unwrap();
    let e = db
        .get(format!("k{damaged:06}").as_bytes())
        .expect_err("a vector from a damaged chunk was served");
    assert!(
        e.is_corruption() && e.to_string().contains("chunk 2"),
        "{e}"
    );
    let e = db.verify().unwrap_err();
    assert!(e.is_corruption(), "{e}");
    // Another chunk's vector is served, and is the one written.
    let ok = db.get(b"k000010").unwrap().unwrap();
    assert_eq!(ok.vector.as_deref(), Some(&vec![10.0f32; dim][..]));
    // An exact search scores every vector: it reaches the damaged chunk and fails.
    let q = strata::Query::knn(vec![0.0; dim], 5).exact();
    assert!(db.search(&q).unwrap_err().is_corruption());
}
