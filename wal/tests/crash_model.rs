//! Property tests against the fault-injecting file system: records round-trip, and after a
//! crash at any operation the recovered log is a prefix of what was appended that holds every
//! acknowledged record (`SyncMode::Always`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use proptest::prelude::*;
use strata_io::FaultConfig;
use strata_wal::{Options, RecordKind, Wal};

fn opts(segment_bytes_max: u64) -> Options {
    Options {
        segment_bytes_max,
        record_bytes_max: 2048,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_records_round_trip(
        records in prop::collection::vec((1u8..=255, prop::collection::vec(any::<u8>(), 0..2048)), 0..120),
        segment in prop::sample::select(vec![4096u64, 8192, 1 << 20]),
    ) {
        let (_fs, shared) = fault_fs();
        let (wal, _) = Wal::open(shared.clone(), &dir(), opts(segment)).unwrap();
        for (i, (kind, p)) in records.iter().enumerate() {
            prop_assert_eq!(wal.append(RecordKind(*kind), p).unwrap(), i as u64 + 1);
        }
        drop(wal);
        let (wal, rec) = Wal::open(shared, &dir(), opts(segment)).unwrap();
        prop_assert_eq!(rec.next_lsn, records.len() as u64 + 1);
        let mut r = wal.reader(1).unwrap();
        for (i, (kind, p)) in records.iter().enumerate() {
            let got = r.next_record().unwrap().unwrap();
            prop_assert_eq!(got.lsn, i as u64 + 1);
            prop_assert_eq!(got.kind, RecordKind(*kind));
            prop_assert_eq!(got.payload, &p[..]);
        }
        prop_assert!(r.next_record().unwrap().is_none());
    }

    /// One writer; crash after `crash_at` file operations; power loss keeps a random prefix of
    /// unsynced bytes (seed `image`). Then a second crash during recovery itself.
    #[test]
    fn crash_at_any_op_keeps_a_prefix_with_every_ack(
        crash_at in 0u64..400,
        image in any::<u64>(),
        recovery_crash in prop::option::of(0u64..6),
        segment in prop::sample::select(vec![4096u64, 8192]),
    ) {
        let (fs, shared) = fault_fs();
        let mut acked = 0u64;
        let mut attempted = 0u64;
        if let Ok((wal, _)) = Wal::open(shared.clone(), &dir(), opts(segment)) {
            fs.set_faults(FaultConfig { crash_after_ops: Some(crash_at), ..FaultConfig::default() });
            for i in 1..=300u64 {
                attempted = i;
                match wal.append_data(&payload(i, (i as usize * 37) % 700)) {
                    Ok(lsn) => { prop_assert_eq!(lsn, i); acked = i; }
                    Err(_) => break,
                }
            }
            // The process dies: nothing more reaches the disk, background threads stop.
            fs.set_faults(FaultConfig { crash_after_ops: Some(0), ..FaultConfig::default() });
            drop(wal);
        }
        fs.crash(image);
        if let Some(n) = recovery_crash {
            fs.set_faults(FaultConfig { crash_after_ops: Some(n), ..FaultConfig::default() });
            let _ = Wal::open(shared.clone(), &dir(), opts(segment));
            fs.crash(image.rotate_left(7));
        }
        let got = read_all(&shared, &dir(), opts(segment)).unwrap();
        prop_assert!(got.len() as u64 >= acked, "lost acked records: got {} acked {}", got.len(), acked);
        prop_assert!(got.len() as u64 <= attempted);
        for (j, (lsn, p)) in got.iter().enumerate() {
            let i = j as u64 + 1;
            prop_assert_eq!(*lsn, i);
            prop_assert_eq!(p, &payload(i, (i as usize * 37) % 700));
        }
    }

    /// Several writer threads; acknowledged (LSN, payload) pairs must all be recovered.
    #[test]
    fn concurrent_crash_keeps_every_ack(crash_at in 0u64..300, image in any::<u64>()) {
        let (fs, shared) = fault_fs();
        let acked: Arc<Mutex<HashMap<u64, Vec<u8>>>> = Arc::default();
        let (wal, _) = Wal::open(shared.clone(), &dir(), opts(4096)).unwrap();
        let wal = Arc::new(wal);
        fs.set_faults(FaultConfig { crash_after_ops: Some(crash_at), ..FaultConfig::default() });
        let handles: Vec<_> = (0..4u64).map(|t| {
            let (wal, acked) = (wal.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..60u64 {
                    let p = payload(t << 32 | i, 100 + (i as usize % 5) * 50);
                    match wal.append_data(&p) {
                        Ok(lsn) => { acked.lock().unwrap().insert(lsn, p); }
                        Err(_) => return,
                    }
                }
            })
        }).collect();
        for h in handles { h.join().unwrap(); }
        fs.set_faults(FaultConfig { crash_after_ops: Some(0), ..FaultConfig::default() });
        drop(wal);
        fs.crash(image);
        let got: HashMap<u64, Vec<u8>> = read_all(&shared, &dir(), opts(4096)).unwrap().into_iter().collect();
        let n = got.len() as u64;
        prop_assert!((1..=n).all(|l| got.contains_key(&l)), "recovered LSNs are not 1..=n");
        for (lsn, p) in acked.lock().unwrap().iter() {
            prop_assert_eq!(got.get(lsn), Some(p), "acked LSN {} lost or changed", lsn);
        }
    }
}
