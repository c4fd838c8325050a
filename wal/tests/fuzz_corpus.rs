//! Replays the committed fuzz seed corpora (`fuzz/corpus/<target>/*`) through the same entry
//! points the fuzz targets call, so every past crash stays fixed in the default test run.
//! `STRATA_REGEN_CORPUS=1` rewrites the generated seeds (valid logs, torn and damaged variants).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::path::{Path, PathBuf};

use strata_wal::format::{encode_record, FileHeader, RecordKind};
use strata_wal::fuzzing::{decode_record_bytes, replay_log_bytes};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn seed_log(records: usize, seed: u32) -> Vec<u8> {
    let mut out = FileHeader {
        version: strata_wal::format::FORMAT_VERSION,
        crc_seed: seed,
        first_lsn: 1,
    }
    .encode()
    .to_vec();
    for i in 0..records {
        let payload: Vec<u8> = (0..(i * 13) % 90).map(|j| (i + j) as u8).collect();
        let kind = if i % 5 == 4 {
            RecordKind(130)
        } else {
            RecordKind::DATA
        };
        encode_record(&mut out, seed, i as u64 + 1, kind, &payload);
    }
    out
}

fn regenerate() {
    let rec = corpus("wal_record");
    let log = corpus("wal_replay");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    for (i, n) in [0usize, 1, 3, 12].into_iter().enumerate() {
        let bytes = seed_log(n, 0xA5A5_0000 + i as u32);
        // Seeds of the current layout carry its version in their names; those of older
        // layouts (unprefixed: version 1) stay committed as they are.
        let v = strata_wal::format::FORMAT_VERSION;
        std::fs::write(log.join(format!("v{v}-valid-{n}")), &bytes).unwrap();
        if bytes.len() > 40 {
            std::fs::write(
                log.join(format!("v{v}-torn-{n}")),
                &bytes[..bytes.len() - 7],
            )
            .unwrap();
            let mut flipped = bytes.clone();
            flipped[40] ^= 4;
            std::fs::write(log.join(format!("v{v}-flipped-{n}")), &flipped).unwrap();
            let mut frame = (0xA5A5_0000u32 + i as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&bytes[32..]);
            std::fs::write(rec.join(format!("v{v}-frame-{n}")), frame).unwrap();
        }
    }
    std::fs::write(rec.join("zeros"), [0u8; 40]).unwrap();
}

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus(target)).unwrap() {
        let path = entry.unwrap().path();
        f(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn seed_corpora_replay_without_panics() {
    if std::env::var_os("STRATA_REGEN_CORPUS").is_some() {
        regenerate();
    }
    assert!(replay("wal_record", decode_record_bytes) >= 4);
    assert!(replay("wal_replay", replay_log_bytes) >= 10);
}
