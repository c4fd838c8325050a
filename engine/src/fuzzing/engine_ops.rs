//! The engine-operations fuzz target: random operations against a model with one injected
//! I/O failure, a power loss, and a reopen that must show the model.

use std::path::Path;
use std::sync::Arc;

use super::operator_faults::operator_fault_run;
use crate::{Filter, Metric, Schema};

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
pub(super) fn check(
    db: &crate::Db,
    model: &std::collections::BTreeMap<Vec<u8>, crate::Document>,
    ctx: &str,
) {
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
