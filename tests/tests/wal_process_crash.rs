//! A real process crash: a child appends with `SyncMode::Always` from several threads and
//! prints each acknowledged LSN; we SIGKILL it at random moments (some during its own
//! recovery), reopen, and require every acknowledged record, byte for byte, with LSNs 1..=n.
//!
//! Iterations: 50 by default, `STRATA_WAL_KILL_ITERS=N` for more.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::collections::HashMap;
use std::time::Duration;

use rand::SeedableRng;
use strata_io::StdFs;
use strata_tests::{env_u64, kill_delay, parse_ack, payload, run_and_kill, seed};
use strata_wal::{Options, Wal};

const RECORD_BYTES: usize = 256;
const SEGMENT_BYTES: u64 = 64 * 1024;

#[test]
fn sigkill_never_loses_an_acknowledged_record() {
    let iters = env_u64("STRATA_WAL_KILL_ITERS", 50);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("wal_process_crash"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut acked: HashMap<u64, u64> = HashMap::new(); // lsn -> id
    let mut kills_during_recovery = 0;

    for iter in 0..iters {
        let delay = kill_delay(
            &mut rng,
            Duration::from_millis(2),
            Duration::from_millis(40),
        );
        let lines = run_and_kill(
            env!("CARGO_BIN_EXE_wal_crash_child"),
            &[
                dir.to_str().unwrap(),
                "4",
                &RECORD_BYTES.to_string(),
                &SEGMENT_BYTES.to_string(),
            ],
            delay,
        )
        .unwrap();
        if !lines.iter().any(|l| l.starts_with("open ")) {
            kills_during_recovery += 1;
        }
        for line in &lines {
            if let Some((lsn, id)) = parse_ack(line) {
                assert!(
                    acked.insert(lsn, id).is_none(),
                    "LSN {lsn} acknowledged twice"
                );
            }
        }

        let (wal, _) = Wal::open(
            StdFs::shared(),
            &dir,
            Options {
                segment_bytes_max: SEGMENT_BYTES,
                record_bytes_max: 16 * 1024,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("iteration {iter}: reopen failed: {e}"));
        let mut r = wal.reader(1).unwrap();
        let mut seen = 0u64;
        let mut got: HashMap<u64, Vec<u8>> = HashMap::new();
        while let Some(rec) = r
            .next_record()
            .unwrap_or_else(|e| panic!("iteration {iter}: {e}"))
        {
            seen += 1;
            assert_eq!(rec.lsn, seen, "LSNs must be 1..=n");
            got.insert(rec.lsn, rec.payload.to_vec());
        }
        for (lsn, id) in &acked {
            let want = payload(*id, RECORD_BYTES);
            assert_eq!(
                got.get(lsn),
                Some(&want),
                "iteration {iter}: acknowledged LSN {lsn} lost or changed"
            );
        }
    }
    eprintln!(
        "wal_process_crash: {iters} kills, {} acknowledged records verified, {kills_during_recovery} kills before open finished",
        acked.len()
    );
    assert!(!acked.is_empty(), "the child never acknowledged anything");
}
