//! Operator faults after a simulated power loss (a damaged or lost log, a lost or damaged
//! manifest): what reopening must do, and that a refused open changes nothing.

use std::path::Path;
use std::sync::Arc;

use super::SimOutcome;

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
// must survive it, kept whole so a failure report reads as one story (fuzzing feature only).
pub(super) fn operator_fault_run(
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
