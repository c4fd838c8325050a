//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test
//! (`engine/tests/fuzz_corpus.rs`). Each panics only when it finds a bug.

use std::path::Path;
use std::sync::Arc;

use crate::manifest::Manifest;
use crate::meta::decode_schema;
use crate::mmap::FileBytes;
use crate::segment::Segment;
use crate::{Filter, Metric, Schema};

/// The schema every fuzzed record and segment is decoded against.
pub fn fuzz_schema() -> Schema {
    Schema::new(3, Metric::L2).with_attr("ts").with_attr("n")
}

/// Parse arbitrary text as a filter; a parsed filter prints to text that parses back equal.
pub fn filter_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Filter::parse(text) {
        let again = Filter::parse(&f.to_string());
        assert!(
            again.as_ref().ok() == Some(&f),
            "{f} does not round-trip: {again:?}"
        );
    }
}

/// First byte picks a decoder (WAL batch, schema, manifest, deletion bitmap, calibration
/// section); the rest is input.
pub fn small_decoders(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let schema = fuzz_schema();
    match which % 5 {
        0 => {
            if let Ok(ops) = crate::batch::decode(rest, &schema) {
                let enc = crate::batch::encode(&ops, &schema, crate::limits::BATCH_BYTES_MAX).ok();
                let back = enc.as_deref().map(|e| crate::batch::decode(e, &schema));
                assert!(
                    matches!(back, Some(Ok(ref o)) if *o == ops),
                    "batch does not round-trip"
                );
            }
        }
        1 => {
            if let Ok(s) = decode_schema(rest) {
                assert_eq!(decode_schema(&crate::meta::encode_schema(&s)).ok(), Some(s));
            }
        }
        2 => {
            if let Ok(m) = Manifest::decode(rest) {
                assert_eq!(Manifest::decode(&m.encode()).ok(), Some(m));
            }
        }
        3 => {
            let n = rest.first().copied().unwrap_or(0) as usize;
            let _ = crate::segment::deletes::decode(rest.get(1..).unwrap_or_default(), n);
        }
        _ => {
            use crate::query::calibrated::Calibration;
            if let Ok(c) = Calibration::decode(rest) {
                assert_eq!(Calibration::decode(&c.encode()).ok(), Some(c));
            }
        }
    }
}

/// Open arbitrary bytes as a segment; if they verify, every accessor must work without panics.
/// The first byte is a mode: odd = recompute every checksum first, so mutations reach the
/// structural checks behind them instead of stopping at a CRC.
pub fn segment_bytes(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        fix_segment_crcs(&mut bytes);
    }
    let Ok(seg) = Segment::from_bytes(
        FileBytes::Owned(bytes),
        Path::new("fuzz.seg"),
        1,
        Arc::new(fuzz_schema()),
    ) else {
        return;
    };
    let mut v = Vec::new();
    for i in 0..seg.len().min(64) {
        let k = seg.key(i).to_vec();
        assert_eq!(seg.find(&k), Some(i), "key {i} not found by its own bytes");
        let _ = seg.doc(i);
        let _ = seg.vector_into(i, &mut v);
    }
    for f in [
        "a",
        "(not a)",
        "(and a (range ts 0 10))",
        "(or b (range n -5 5))",
    ] {
        if let Ok(f) = Filter::parse(f) {
            let _ = seg.eval(&f);
        }
    }
    // The graph is verified lazily, sector by sector: a search must fail cleanly or succeed.
    if let Some(idx) = seg.ann() {
        let params = crate::SearchParams {
            list: 64,
            beam_width: 4,
            exact: false,
            ..crate::SearchParams::default()
        };
        let mut st = crate::QueryStats::default();
        let found = idx.search(
            seg.file_bytes(),
            &[0.5, -0.5, 1.0],
            10,
            &params,
            &|_| true,
            &mut st,
        );
        if let Ok(found) = found {
            assert!(
                found.iter().all(|(_, o)| *o < seg.len()),
                "ordinal out of range"
            );
        }
    }
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le64(b: &[u8], at: usize) -> Option<usize> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?) as usize)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(d) = b.get_mut(at..at + 4) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// Rewrite section, table and footer CRCs of a segment-shaped buffer (best effort).
fn fix_segment_crcs(b: &mut [u8]) {
    let Some(f) = b.len().checked_sub(64) else {
        return;
    };
    let (Some(count), Some(table_at)) = (le32(b, f + 12), le64(b, f + 16)) else {
        return;
    };
    let table_len = (count as usize).saturating_mul(24);
    if table_at.checked_add(table_len) == Some(f) {
        // Vector chunk checksums first: their section's own CRC is computed below.
        let range = |kind: crate::segment::SectionKind| {
            (table_at..f).step_by(24).find_map(|e| {
                (le32(b, e) == Some(kind as u32))
                    .then(|| Some((le64(b, e + 8)?, le64(b, e + 16)?)))
                    .flatten()
            })
        };
        use crate::segment::SectionKind as K;
        if let (Some(v), Some(c)) = (range(K::Vectors), range(K::VectorChunks)) {
            crate::segment::chunks::fix(b, c, v);
        }
        for e in (table_at..f).step_by(24) {
            let (Some(kind), Some(at), Some(len)) = (le32(b, e), le64(b, e + 8), le64(b, e + 16))
            else {
                continue;
            };
            if kind == crate::segment::SectionKind::AnnGraph as u32 {
                crate::ann::disk::fix_sector_crcs(b, at, len);
            }
            let covered = crate::segment::SectionKind::table_crc_bytes(kind, len);
            let crc = at
                .checked_add(covered)
                .and_then(|end| b.get(at..end))
                .map(crc32fast::hash);
            if let Some(crc) = crc {
                put32(b, e + 4, crc);
            }
        }
        let crc = crc32fast::hash(b.get(table_at..f).unwrap_or_default());
        put32(b, f + 24, crc);
    }
    let crc = crc32fast::hash(b.get(f..f + 60).unwrap_or_default());
    put32(b, f + 60, crc);
}

/// A small valid segment under [`fuzz_schema`], as a seed for the segment target (mode byte 1
/// first: checksums are fixed up).
pub fn seed_segment() -> Vec<u8> {
    let schema = fuzz_schema();
    let docs: Vec<Arc<crate::Document>> = (0..5)
        .filter_map(|i| {
            crate::Document::new(format!("k{i}"), vec![b'x'; i * 10])
                .with_vector(vec![i as f32, 0.5, -1.0])
                .with_term(if i % 2 == 0 { "a" } else { "b" })
                .with_attr("ts", i as i64)
                .validate(&schema)
                .ok()
                .map(Arc::new)
        })
        .collect();
    let mut out = vec![1u8];
    out.extend_from_slice(&crate::segment::encode_for_fuzz(&docs, &schema, None));
    out
}

/// A valid segment with ANN sections (40 vectors, degree 4), a seed for the segment target.
pub fn seed_segment_ann() -> Vec<u8> {
    let schema = fuzz_schema();
    let docs: Vec<Arc<crate::Document>> = (0..40)
        .filter_map(|i| {
            let x = i as f32;
            crate::Document::new(format!("k{i:02}"), "v")
                .with_vector(vec![x.sin(), x.cos(), x / 40.0])
                .validate(&schema)
                .ok()
                .map(Arc::new)
        })
        .collect();
    let ann = crate::AnnOptions {
        min_vectors: 2,
        degree: 4,
        build_list: 8,
        ..crate::AnnOptions::default()
    };
    let mut out = vec![1u8];
    out.extend_from_slice(&crate::segment::encode_for_fuzz(&docs, &schema, Some(&ann)));
    out
}

/// Random operations on a database in a simulated file system, against a model, with one
/// injected I/O failure (the first two bytes pick it: a crash after N file operations, an
/// fsync EIO or an ENOSPC at the N-th call). After the failure, the process "dies" (power
/// loss: unsynced data randomly lost or torn), the database reopens, and its content must be
/// the model with the failed operation applied in full or not at all. Every acknowledged
/// write (`Sync::Always`) survives; documents, postings and exact k-NN equal the model after
/// every reopen and at the end.
pub fn engine_ops(data: &[u8]) {
    let _ = engine_ops_run(data);
}

/// What one [`engine_ops`] run did (for the simulated-crash campaign's summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimOutcome {
    /// The fault armed: 0 none, 1 crash after N file operations, 2 fsync EIO, 3 ENOSPC; after
    /// the power loss: 4 a damaged log record, 5 a lost log, 6 lost manifests, 7 a damaged
    /// manifest.
    pub fault: u8,
    /// Whether the armed fault fired before the operations ran out.
    pub fired: bool,
    /// Operations acknowledged before the fault (or the end).
    pub acknowledged: usize,
    /// Mutating file operations the run made before the power loss.
    pub file_ops: u64,
    /// Whether recovery kept the failed operation (applied in full) rather than dropping it.
    pub failed_op_kept: bool,
    /// Documents after recovery.
    pub recovered: usize,
    /// Operator / disk faults (kinds 4..=7): which rule recovery applied.
    pub operator_outcome: Option<&'static str>,
}

/// The [`engine_ops`] input of one simulated-crash seed: a fault (crash 45 %, fsync EIO 15 %,
/// ENOSPC 15 %, none 5 %; after the power loss, a damaged or lost log, a lost or damaged
/// manifest, 5 % each), its countdown and 2–120 random operations. `strata crashsim --seed N`
/// replays exactly this input.
pub fn sim_input(seed: u64) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kind: u8 = match rng.gen_range(0..100) {
        0..=44 => 1,
        45..=59 => 2,
        60..=74 => 3,
        75..=79 => 4,
        80..=84 => 5,
        85..=89 => 6,
        90..=94 => 7,
        _ => 0,
    };
    // The mode's upper bits shift the crash point so every file operation can be hit (and
    // pick the bit an operator fault flips).
    let mode = kind | (rng.gen_range(0u8..24) << 3);
    // The smaller of two uniform countdowns: skewed early, so most armed faults fire inside
    // the run, while late crash points (deep in flushes and compactions) still occur.
    let count: u8 = rng.gen::<u8>().min(rng.gen());
    let ops = rng.gen_range(2..=120usize);
    let mut out = vec![mode, count];
    out.extend((0..ops * 2).map(|_| rng.gen::<u8>()));
    out
}

/// [`engine_ops`], returning what the run did.
#[allow(
    clippy::panic,
    reason = "a fuzz entry point reports a bug by panicking"
)]
// Long (~200 lines): one interpreter loop over the fuzz input's operations against the
// model, kept whole so a crash report reads as one story (fuzzing feature only).
pub fn engine_ops_run(data: &[u8]) -> SimOutcome {
    use std::collections::BTreeMap;

    use strata_io::{FaultConfig, FaultFs, Fs};

    use crate::{Db, Document, Options, SyncMode, WriteBatch};

    let Some((&mode, rest)) = data.split_first() else {
        return SimOutcome::default();
    };
    let Some((&count, ops)) = rest.split_first() else {
        return SimOutcome::default();
    };
    let kind = mode % 8;
    let mut outcome = SimOutcome {
        fault: kind,
        ..SimOutcome::default()
    };
    let fs = FaultFs::new();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let dir = Path::new("/fuzz/db");
    let schema = Schema::new(2, Metric::L2).with_attr("ts");
    let mut options = Options {
        fs: shared,
        sync: SyncMode::Always,
        flush_threshold_bytes: 1024,
        wal_preallocate: false,
        segments_max: 2,
        maintenance_threads: 1,
        ..Options::default()
    };
    options.ann.min_vectors = 8;
    let Ok(created) = Db::create_with(dir, schema, options.clone()) else {
        return outcome;
    };
    let mut db = Some(created);
    let n = u64::from(count) + 1;
    fs.set_faults(match kind {
        // Crash points 1..=768: every file operation of a typical run can be the last one.
        1 => FaultConfig {
            crash_after_ops: Some((n * 3).saturating_sub(u64::from(mode >> 3) % 3)),
            ..FaultConfig::default()
        },
        2 => FaultConfig {
            fail_sync_at: Some(n),
            ..FaultConfig::default()
        },
        3 => FaultConfig {
            enospc_write_at: Some(n),
            ..FaultConfig::default()
        },
        // None, or an operator / disk fault applied after the power loss (4..=7).
        _ => FaultConfig::default(),
    });
    let key = |b: u8| format!("k{:02}", b % 24).into_bytes();
    let doc = |b: u8, salt: usize| {
        Document::new(key(b), format!("v{salt}"))
            .with_vector(vec![f32::from(b % 24), (salt % 13) as f32])
            .with_term(format!("t{}", salt % 3))
            .with_attr("ts", salt as i64)
    };
    // Acknowledged state, and the effects of an operation that failed (applied or not).
    let mut model: BTreeMap<Vec<u8>, Document> = BTreeMap::new();
    let mut failed: Option<Vec<(Vec<u8>, Option<Document>)>> = None;
    // The acknowledged state after each log record: `history[l]` is the state at LSN `l`
    // (every acknowledged write is one record; flushes, compactions and reopens write none).
    let mut history: Vec<BTreeMap<Vec<u8>, Document>> = vec![BTreeMap::new()];
    for (i, w) in ops.chunks(2).enumerate() {
        let (op, arg) = (
            w.first().copied().unwrap_or(0),
            w.get(1).copied().unwrap_or(0),
        );
        let effects: Vec<(Vec<u8>, Option<Document>)> = match op % 8 {
            0..=2 => vec![(key(arg), Some(doc(arg, i)))],
            3 => vec![(key(arg), None)],
            4 => vec![
                (key(arg), Some(doc(arg, i))),
                (key(arg.wrapping_add(5)), None),
                (
                    key(arg.wrapping_add(9)),
                    Some(doc(arg.wrapping_add(9), i + 1)),
                ),
            ],
            _ => Vec::new(),
        };
        let Some(h) = db.as_ref() else {
            break;
        };
        let r = match op % 8 {
            0..=2 => effects
                .first()
                .and_then(|(_, d)| d.clone())
                .map_or(Ok(()), |d| h.put(d)),
            3 => h.delete(&key(arg)),
            4 => {
                let mut b = WriteBatch::new();
                for (k, d) in &effects {
                    match d {
                        Some(d) => {
                            b.put(d.clone());
                        }
                        None => {
                            b.delete(k.clone());
                        }
                    }
                }
                h.write(b)
            }
            5 => h.flush(),
            6 => h.compact().map(|_| ()),
            _ => {
                db = None; // closed (its flusher joined) before the reopen
                Db::open(dir, options.clone()).map(|d| {
                    check(&d, &model, "reopen");
                    db = Some(d);
                })
            }
        };
        match r {
            Ok(()) => {
                let wrote = !effects.is_empty();
                for (k, d) in effects {
                    match d {
                        Some(d) => model.insert(k, d),
                        None => model.remove(&k),
                    };
                }
                if wrote {
                    history.push(model.clone());
                }
            }
            Err(_) => {
                failed = Some(effects);
                break;
            }
        }
        outcome.acknowledged += 1;
    }
    outcome.fired = failed.is_some() || fs.is_crashed();
    outcome.file_ops = fs.mutating_ops();
    // Power loss now (after a failure, or at the end), then recovery.
    fs.set_faults(FaultConfig {
        crash_after_ops: Some(0),
        ..FaultConfig::default()
    });
    drop(db);
    fs.crash(u64::from(mode) << 8 | u64::from(count));
    fs.set_faults(FaultConfig::default());
    if kind >= 4 {
        let with_failed = failed.map(|f| {
            let mut m = model.clone();
            for (k, d) in f {
                match d {
                    Some(d) => m.insert(k, d),
                    None => m.remove(&k),
                };
            }
            m
        });
        operator_fault_run(
            &fs,
            dir,
            &options,
            kind,
            mode >> 3,
            &history,
            with_failed,
            &mut outcome,
        );
        return outcome;
    }
    let db = match Db::open(dir, options) {
        Ok(db) => db,
        // Killed inside `create` before the schema was durable: nothing was acknowledged.
        Err(crate::Error::NotFound(_)) if model.is_empty() => return outcome,
        Err(e) => panic!("reopen after a crash failed: {e}"),
    };
    let state = |db: &Db| -> BTreeMap<Vec<u8>, Document> {
        db.scan(..)
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.key.clone(), Document::clone(&d)))
            .collect()
    };
    let got = state(&db);
    let mut with_failed = model.clone();
    for (k, d) in failed.into_iter().flatten() {
        match d {
            Some(d) => with_failed.insert(k, d),
            None => with_failed.remove(&k),
        };
    }
    let normalize = |m: &BTreeMap<Vec<u8>, Document>| -> Vec<(Vec<u8>, Vec<u8>)> {
        m.iter()
            .map(|(k, d)| (k.clone(), d.value.clone()))
            .collect()
    };
    let kept_failed = normalize(&got) == normalize(&with_failed);
    assert!(
        normalize(&got) == normalize(&model) || kept_failed,
        "recovered state is neither the acknowledged one nor it plus the failed operation"
    );
    check(&db, &got, "after recovery");
    outcome.failed_op_kept = kept_failed && normalize(&with_failed) != normalize(&model);
    outcome.recovered = got.len();
    outcome
}

/// Documents, postings and exact k-NN of `db` equal `model`.
#[allow(
    clippy::panic,
    reason = "a fuzz entry point reports a bug by panicking"
)]
fn check(db: &crate::Db, model: &std::collections::BTreeMap<Vec<u8>, crate::Document>, ctx: &str) {
    use crate::Query;
    let Ok(all) = db.scan(..) else {
        panic!("{ctx}: scan failed");
    };
    let keys: Vec<&Vec<u8>> = all.iter().map(|d| &d.key).collect();
    assert_eq!(keys, model.keys().collect::<Vec<_>>(), "{ctx}: keys");
    for d in &all {
        assert!(model.get(&d.key) == Some(&**d), "{ctx}: document differs");
    }
    for t in 0..3 {
        let term = format!("t{t}");
        let want: Vec<&Vec<u8>> = model
            .iter()
            .filter(|(_, d)| d.terms.contains(&term))
            .map(|(k, _)| k)
            .collect();
        let got = db
            .search(&Query::boolean(Filter::term(term.clone()), 1000))
            .unwrap_or_default();
        let got: Vec<&Vec<u8>> = got.iter().map(|h| &h.key).collect();
        assert_eq!(got, want, "{ctx}: postings of {term}");
    }
    let q = vec![7.0, 3.0];
    let mut brute: Vec<(f32, &Vec<u8>)> = model
        .iter()
        .filter_map(|(k, d)| Some((crate::distance(Metric::L2, &q, d.vector.as_ref()?), k)))
        .collect();
    brute.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let got = db.search(&Query::knn(q, 5).exact()).unwrap_or_default();
    let got: Vec<&Vec<u8>> = got.iter().map(|h| &h.key).collect();
    let want: Vec<&Vec<u8>> = brute.into_iter().take(5).map(|x| x.1).collect();
    assert_eq!(got, want, "{ctx}: exact k-NN");
}

/// Every file of the simulated database directory (but its lock) with its bytes.
fn sim_files(
    fs: &strata_io::FaultFs,
    dir: &Path,
) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    use strata_io::Fs;
    let mut out = std::collections::BTreeMap::new();
    for d in [
        dir.to_owned(),
        dir.join(crate::SEGMENTS_DIR),
        dir.join(crate::WAL_DIR),
        dir.join(crate::WAL_DIR).join(strata_wal::LOST_FOUND_DIR),
    ] {
        for n in fs.list_dir(&d).unwrap_or_default() {
            let p = d.join(&n);
            if n == crate::LOCK_FILE {
                continue;
            }
            if let Ok(b) = fs.read_file(&p) {
                out.insert(p, b);
            }
        }
    }
    out
}

/// The operator and disk faults of `strata crashsim` (kinds 4..=7), applied to the database
/// after the power loss, and their oracle (`docs/durability.md`, "Faults and what recovery
/// does"):
/// - 4, a bit flipped in one of the 24 bytes before the log's final trailer (the last record): recovery opens (the record is covered by the
///   checkpoint, or the damage looks torn and is cut: the state is then exactly the one before
///   that record) or refuses with a corruption error and changes nothing; the explicit repair
///   (`RecoveryMode::SetAside`) then opens at the state before the first record it set aside,
///   never below the checkpoint;
/// - 5, the log lost (every file removed, or the only file cut to its header): the state is
///   the one at the end of what is left, at least the checkpoint's;
/// - 6, the manifests removed: an error naming the missing manifest with nothing changed, or
///   (no segment was ever written) the full acknowledged state from the log;
/// - 7, a bit flipped in the manifest: a corruption error, nothing changed.
///
/// After every recovery that opens, a new write must survive a reopen: LSNs never repeat.
#[allow(
    clippy::panic,
    clippy::too_many_arguments,
    reason = "a fuzz entry point reports a bug by panicking; the run's whole context is passed"
)]
// Long (~250 lines): one operator-fault scenario from damage to reopen and the write that
// must survive it, kept whole for the same reason (fuzzing feature only).
fn operator_fault_run(
    fs: &strata_io::FaultFs,
    dir: &Path,
    options: &crate::Options,
    kind: u8,
    variant: u8,
    history: &[std::collections::BTreeMap<Vec<u8>, crate::Document>],
    with_failed: Option<std::collections::BTreeMap<Vec<u8>, crate::Document>>,
    outcome: &mut SimOutcome,
) {
    use std::collections::BTreeMap;

    use strata_io::Fs;

    use crate::{Db, Document, Error, Options};

    type State = BTreeMap<Vec<u8>, Document>;
    let acked = history.len() - 1;
    // The state at LSN `l`, if the run can have reached it.
    let state_at = |l: u64| -> Option<State> {
        let l = usize::try_from(l).ok()?;
        match l.cmp(&acked) {
            std::cmp::Ordering::Greater if l == acked + 1 => with_failed.clone(),
            std::cmp::Ordering::Greater => None,
            _ => history.get(l).cloned(),
        }
    };
    let values = |m: &State| -> Vec<(Vec<u8>, Vec<u8>)> {
        m.iter()
            .map(|(k, d)| (k.clone(), d.value.clone()))
            .collect()
    };
    let state = |db: &Db| -> State {
        db.scan(..)
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.key.clone(), Document::clone(&d)))
            .collect()
    };
    let shared: strata_io::SharedFs = Arc::new(fs.clone());
    let Ok(Some(manifest)) = crate::manifest::read_latest(&shared, dir) else {
        return; // the database was never created durably: nothing to damage
    };
    let checkpoint = manifest.checkpoint_lsn;
    let wal_dir = dir.join(crate::WAL_DIR);
    let mut wal_files: Vec<(u64, std::path::PathBuf)> = fs
        .list_dir(&wal_dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Some((strata_wal::parse_file_name(n)?, wal_dir.join(n))))
        .collect();
    wal_files.sort();
    let manifests: Vec<std::path::PathBuf> = fs
        .list_dir(dir)
        .unwrap_or_default()
        .iter()
        .filter(|n| crate::manifest::parse_manifest_name(n).is_some())
        .map(|n| dir.join(n))
        .collect();
    // Apply the fault; `expect` is the LSN whose state a default open must show (kinds 5, 6).
    let mut expect: Option<u64> = None;
    match kind {
        4 => {
            let Some((_, newest)) = wal_files.last() else {
                return;
            };
            let bytes = fs.read_file(newest).unwrap_or_default();
            let Some(last) = bytes.iter().rposition(|&b| b != 0) else {
                return;
            };
            if last < 32 + 20 + 24 {
                return; // no record in the newest file
            }
            // The last non-zero byte is the last frame's trailer: flip a bit in one of the 24
            // bytes before it — the last record's payload, or its header when the payload is
            // short (a trailer flip alone could never look like a tear).
            let at = last - 1 - usize::from(variant) % 24;
            if fs.flip_bit(newest, at as u64, variant & 7).is_err() {
                return;
            }
        }
        5 => {
            if variant.is_multiple_of(2) || wal_files.len() != 1 {
                for (_, p) in &wal_files {
                    let _ = fs.remove_file(p);
                }
                expect = Some(checkpoint);
            } else if let Some((first, p)) = wal_files.first() {
                if fs.truncate(p, 32).is_err() {
                    return;
                }
                expect = Some(checkpoint.max(first.saturating_sub(1)));
            }
        }
        6 => {
            for p in &manifests {
                let _ = fs.remove_file(p);
            }
        }
        _ => {
            let Some(newest) = manifests.iter().max() else {
                return;
            };
            let len = fs.read_file(newest).map(|b| b.len()).unwrap_or(0);
            if len == 0 || fs.flip_bit(newest, (len / 2) as u64, variant & 7).is_err() {
                return;
            }
        }
    }
    outcome.fired = true;
    let before = sim_files(fs, dir);
    let segments_existed = before.keys().any(|p| {
        p.parent() == Some(&dir.join(crate::SEGMENTS_DIR))
            && p.extension().is_some_and(|x| x == "seg" || x == "del")
    });
    let unchanged = |what: &str| {
        assert!(
            sim_files(fs, dir) == before,
            "{what}: a refused open changed the directory"
        );
    };
    let db = match (kind, Db::open(dir, options.clone())) {
        (4, Ok(db)) => {
            let got = state(&db);
            let want = match db.recovery().wal_tail.as_ref().filter(|t| !t.covered) {
                Some(t) => {
                    assert!(
                        t.kind == strata_wal::TailKind::Torn,
                        "damage past the checkpoint was cut by a default open: {t}"
                    );
                    state_at(t.lsn - 1)
                }
                None => None,
            };
            outcome.operator_outcome = Some(if want.is_some() {
                "damaged log: torn, cut"
            } else {
                "damaged log: covered by the checkpoint"
            });
            match want {
                Some(w) => assert!(values(&got) == values(&w), "state after a cut torn tail"),
                None => assert!(
                    state_at(acked as u64).is_some_and(|h| values(&got) == values(&h))
                        || with_failed
                            .as_ref()
                            .is_some_and(|f| values(&got) == values(f)),
                    "a covered damaged record changed the state"
                ),
            }
            db
        }
        (4, Err(e)) => {
            assert!(e.is_corruption(), "damaged log: wrong error {e}");
            unchanged("damaged log");
            outcome.operator_outcome = Some("damaged log: refused, then set aside by the repair");
            let repair = Options {
                recovery: strata_wal::RecoveryMode::SetAside,
                ..options.clone()
            };
            let db = match Db::open(dir, repair) {
                Ok(db) => db,
                Err(e) => panic!("the explicit repair failed: {e}"),
            };
            let r = db.recovery();
            let Some(first) = r.wal_set_aside.first().or(r.wal_tail.as_ref()) else {
                panic!("a refused log needed no repair");
            };
            assert!(
                first.lsn > checkpoint,
                "the repair set aside checkpointed records"
            );
            assert!(
                first.saved_to.is_some(),
                "the repair did not keep the bytes"
            );
            let got = state(&db);
            match state_at(first.lsn - 1) {
                Some(w) => assert!(values(&got) == values(&w), "state after the repair"),
                None => panic!("repair reported LSN {} past the run", first.lsn),
            }
            db
        }
        (5, Ok(db)) => {
            outcome.operator_outcome = Some(if db.recovery().wal_restarted {
                "lost log: restarted past the checkpoint"
            } else {
                "lost log: nothing past the checkpoint lost"
            });
            let got = state(&db);
            match expect.and_then(state_at) {
                Some(w) => assert!(values(&got) == values(&w), "state after a lost log"),
                None => panic!("lost log: no state at LSN {expect:?}"),
            }
            db
        }
        (6, Err(Error::MissingManifest { .. })) => {
            assert!(
                segments_existed,
                "a lost manifest reported with no segment written"
            );
            unchanged("lost manifest");
            outcome.operator_outcome = Some("lost manifest: refused, nothing changed");
            return;
        }
        (6, Ok(db)) => {
            assert!(!segments_existed, "segments opened without a manifest");
            outcome.operator_outcome = Some("lost manifest: never flushed, log replayed");
            let got = state(&db);
            assert!(
                state_at(acked as u64).is_some_and(|h| values(&got) == values(&h))
                    || with_failed
                        .as_ref()
                        .is_some_and(|f| values(&got) == values(f)),
                "lost manifest, never flushed: the log must give the acknowledged state"
            );
            db
        }
        (7, Err(e)) => {
            assert!(e.is_corruption(), "damaged manifest: wrong error {e}");
            unchanged("damaged manifest");
            outcome.operator_outcome = Some("damaged manifest: refused, nothing changed");
            return;
        }
        (k, r) => panic!("fault kind {k}: unexpected outcome {:?}", r.map(|_| ())),
    };
    outcome.recovered = state(&db).len();
    // LSNs never repeat: a write after the recovery survives a reopen.
    let marker = Document::new("zz-after-recovery", "x").with_vector(vec![1.0, 2.0]);
    if let Err(e) = db.put(marker) {
        panic!("a write after recovery failed: {e}");
    }
    let expected = {
        let mut m = state(&db);
        m.remove(b"zz-after-recovery".as_slice());
        m
    };
    drop(db);
    let db = match Db::open(dir, options.clone()) {
        Ok(db) => db,
        Err(e) => panic!("reopen after recovery failed: {e}"),
    };
    let mut got = state(&db);
    assert!(
        got.remove(b"zz-after-recovery".as_slice()).is_some(),
        "a write acknowledged after recovery was lost (LSN reused?)"
    );
    assert!(
        values(&got) == values(&expected),
        "state changed across the reopen"
    );
}
