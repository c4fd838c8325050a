//! Behaviour of the log through its public API: append, rotate, replay, truncate, options,
//! record kinds, poisoning.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_io::{FaultConfig, StdFs};
use strata_wal::{Error, Options, RecordKind, RecoveryMode, SyncMode, Wal};

/// Small files and no background spare-file thread: its writes and fsyncs would race the
/// faults these tests inject (and could take the injected error). Preallocation is covered by
/// `crash_model.rs` and `corruption.rs`.
fn small() -> Options {
    Options {
        segment_bytes_max: 4096,
        record_bytes_max: 1024,
        preallocate: false,
        ..Options::default()
    }
}

#[test]
fn records_round_trip_across_rotation_and_reopen() {
    let (_fs, shared) = fault_fs();
    let (wal, rec) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    assert_eq!(rec.next_lsn, 1);
    let mut expect = Vec::new();
    for i in 1..=300u64 {
        let p = payload(i, (i as usize * 7) % 900);
        assert_eq!(wal.append_data(&p).unwrap(), i);
        expect.push((i, p));
    }
    assert!(wal.files().len() > 10, "4 KiB files must rotate");
    assert_eq!(collect(&wal, 1).unwrap(), expect);
    assert_eq!(collect(&wal, 150).unwrap(), expect[149..].to_vec());
    drop(wal);
    let (wal, rec) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    assert_eq!(rec.next_lsn, 301);
    assert_eq!(rec.tail, None);
    assert_eq!(collect(&wal, 1).unwrap(), expect);
    assert_eq!(wal.append_data(b"more").unwrap(), 301);
}

#[test]
fn truncate_below_drops_whole_old_files_only() {
    let (_fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    for i in 1..=200u64 {
        wal.append_data(&payload(i, 500)).unwrap();
    }
    let files = wal.files();
    let third_first = files[3].first_lsn;
    // A checkpoint just below file 3's first LSN frees files 0..=2.
    assert_eq!(wal.truncate_below(third_first - 1).unwrap(), 3);
    assert_eq!(wal.files()[0].first_lsn, third_first);
    assert!(matches!(
        wal.reader(1),
        Err(Error::LsnTruncated { requested: 1, oldest }) if oldest == third_first
    ));
    assert_eq!(
        collect(&wal, third_first).unwrap().len() as u64,
        200 - third_first + 1
    );
    // Checkpoint past the end keeps the active file and the LSN counter.
    wal.truncate_below(10_000).unwrap();
    assert_eq!(wal.files().len(), 1);
    drop(wal);
    let (wal, rec) = Wal::open(shared, &dir(), small()).unwrap();
    assert_eq!(rec.next_lsn, 201);
    assert_eq!(wal.append_data(b"x").unwrap(), 201);
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let (_fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared, &dir(), small()).unwrap();
    assert!(matches!(
        wal.append_data(&[0u8; 1025]),
        Err(Error::RecordTooLarge {
            len: 1025,
            max: 1024
        })
    ));
    assert!(matches!(
        wal.append(RecordKind(0), b"x"),
        Err(Error::ReservedKind(0))
    ));
    assert_eq!(wal.last_lsn(), 0);
    assert_eq!(wal.append_data(&[7u8; 1024]).unwrap(), 1);
}

#[test]
fn invalid_options_are_rejected() {
    let (_fs, shared) = fault_fs();
    for opts in [
        Options {
            segment_bytes_max: 100,
            ..Options::default()
        },
        Options {
            record_bytes_max: 0,
            ..Options::default()
        },
        Options {
            segment_bytes_max: 4096,
            record_bytes_max: 4096,
            ..Options::default()
        },
        Options {
            sync: SyncMode::Batch(Duration::ZERO),
            ..Options::default()
        },
    ] {
        assert!(matches!(
            Wal::open(shared.clone(), &dir(), opts),
            Err(Error::InvalidOptions(_))
        ));
    }
}

#[test]
fn ignorable_kinds_are_skipped_unknown_required_kinds_fail() {
    let (_fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    wal.append(RecordKind(1), b"a").unwrap();
    wal.append(RecordKind(200), b"optional").unwrap();
    wal.append(RecordKind(2), b"b").unwrap();
    drop(wal);
    let old_reader = Options {
        known_kinds_max: 2,
        ..small()
    };
    let got = read_all(&shared, &dir(), old_reader).unwrap();
    assert_eq!(got, vec![(1, b"a".to_vec()), (3, b"b".to_vec())]);
    let older = Options {
        known_kinds_max: 1,
        ..small()
    };
    assert!(matches!(
        read_all(&shared, &dir(), older),
        Err(Error::UnknownKind {
            kind: 2,
            lsn: 3,
            ..
        })
    ));
}

#[test]
fn failed_fsync_poisons_and_reopen_recovers_acknowledged() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    wal.append_data(b"one").unwrap();
    fs.set_faults(FaultConfig {
        fail_sync_at: Some(1),
        ..FaultConfig::default()
    });
    let e = wal.append_data(b"two").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{e}"
    );
    assert!(wal.poisoned().is_some());
    // Never retried: every later call fails, even though the disk works again.
    assert!(matches!(
        wal.append_data(b"three"),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(wal.sync(), Err(Error::Poisoned { .. })));
    drop(wal);
    let got = read_all(&shared, &dir(), small()).unwrap();
    assert_eq!(got[0], (1, b"one".to_vec()));
    assert!(
        got.len() <= 2,
        "the unacknowledged record may or may not be there"
    );
}

#[test]
fn enospc_poisons_and_reopen_works() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    wal.append_data(b"one").unwrap();
    fs.set_faults(FaultConfig {
        enospc_write_at: Some(1),
        ..FaultConfig::default()
    });
    let e = wal.append_data(b"two").unwrap_err();
    match &e {
        Error::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(28)),
        other => panic!("expected ENOSPC, got {other}"),
    }
    assert!(matches!(wal.append_data(b"x"), Err(Error::Poisoned { .. })));
    drop(wal);
    let (wal, rec) = Wal::open(shared, &dir(), small()).unwrap();
    assert_eq!(rec.next_lsn, 2);
    assert_eq!(wal.append_data(b"two again").unwrap(), 2);
}

#[test]
fn concurrent_writers_share_fsyncs_on_a_real_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(StdFs::shared(), tmp.path(), Options::default()).unwrap();
    let wal = Arc::new(wal);
    let threads = 8;
    let per = 50u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| {
                        let lsn = wal.append_data(&payload(t * 1000 + i, 256)).unwrap();
                        assert!(wal.durable_lsn() >= lsn, "acknowledged before durable");
                        (lsn, t * 1000 + i)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked: Vec<(u64, u64)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    acked.sort_unstable();
    let stats = wal.stats();
    assert_eq!(stats.records, threads * per);
    assert!(stats.syncs <= stats.records);
    let got = collect(&wal, 1).unwrap();
    assert_eq!(got.len(), acked.len());
    for ((lsn, id), (glsn, gp)) in acked.iter().zip(&got) {
        assert_eq!(lsn, glsn);
        assert_eq!(gp, &payload(*id, 256));
    }
}

#[test]
fn batch_mode_syncs_in_the_background() {
    let (_fs, shared) = fault_fs();
    let opts = Options {
        sync: SyncMode::Batch(Duration::from_millis(5)),
        ..small()
    };
    let (wal, _) = Wal::open(shared, &dir(), opts).unwrap();
    let lsn = wal.append_data(b"a").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.durable_lsn() < lsn {
        assert!(
            std::time::Instant::now() < deadline,
            "background sync never ran"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    wal.close().unwrap();
}

#[test]
fn never_mode_acks_written_and_sync_makes_durable() {
    let (fs, shared) = fault_fs();
    let opts = Options {
        sync: SyncMode::Never,
        ..small()
    };
    let (wal, _) = Wal::open(shared.clone(), &dir(), opts).unwrap();
    for i in 1..=5 {
        wal.append_data(&payload(i, 40)).unwrap();
    }
    assert_eq!(wal.durable_lsn(), 0);
    assert_eq!(wal.sync().unwrap(), 5);
    wal.append_data(b"lost on power failure, maybe").unwrap();
    // Power loss right now: no close-time sync reaches the disk.
    fs.set_faults(FaultConfig {
        crash_after_ops: Some(0),
        ..FaultConfig::default()
    });
    drop(wal);
    fs.crash(3);
    let got = read_all(&shared, &dir(), opts).unwrap();
    assert!(got.len() == 5 || got.len() == 6);
}

#[test]
fn strict_mode_refuses_a_torn_tail_tolerant_mode_cuts_it() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    wal.append_data(b"first").unwrap();
    wal.append_data(b"second").unwrap();
    let path = wal.files()[0].path.clone();
    drop(wal);
    let len = fs.read_file(&path).unwrap().len() as u64;
    fs.truncate(&path, len - 3).unwrap();
    let strict = Options {
        recovery: RecoveryMode::Strict,
        ..small()
    };
    assert!(Wal::open(shared.clone(), &dir(), strict)
        .unwrap_err()
        .is_corruption());
    let (wal, rec) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    let tail = rec.tail.unwrap();
    assert_eq!(tail.bytes, 20 + 6 + 1 - 3);
    assert_eq!(collect(&wal, 1).unwrap(), vec![(1, b"first".to_vec())]);
    assert_eq!(wal.append_data(b"again").unwrap(), 2);
    drop(wal);
    // Recovery is idempotent: nothing more to cut.
    let (_wal, rec) = Wal::open(shared, &dir(), strict).unwrap();
    assert_eq!((rec.next_lsn, rec.tail), (3, None));
}

/// Options with a checkpoint: records <= `cp` are durable elsewhere.
fn with_checkpoint(cp: u64) -> Options {
    Options {
        checkpoint_lsn: cp,
        ..small()
    }
}

#[test]
fn lsns_never_repeat_after_a_lost_or_cut_log() {
    // Every way the log can end at or below the checkpoint: its files removed, cut to the
    // header, or its last record damaged.
    for case in ["removed", "cut", "flipped"] {
        let (fs, shared) = fault_fs();
        let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
        for i in 1..=5u64 {
            wal.append_data(&payload(i, 40)).unwrap();
        }
        let path = wal.files()[0].path.clone();
        drop(wal);
        let len = fs.read_file(&path).unwrap().len() as u64;
        match case {
            "removed" => {
                use strata_io::Fs as _;
                fs.remove_file(&path).unwrap();
            }
            "cut" => fs.truncate(&path, 32).unwrap(),
            _ => fs.flip_bit(&path, len - 5, 3).unwrap(),
        }
        // The caller's checkpoint covers all five records.
        let (wal, rec) = Wal::open(shared.clone(), &dir(), with_checkpoint(5)).unwrap();
        assert_eq!(rec.next_lsn, 6, "{case}");
        assert!(rec.restarted_after_checkpoint, "{case}");
        if case == "flipped" {
            let t = rec.tail.as_ref().unwrap();
            assert!(t.covered && t.saved_to.is_none(), "{case}: {t}");
            assert_eq!(t.lsn, 5);
        }
        assert_eq!(wal.append_data(b"new").unwrap(), 6, "{case}");
        wal.truncate_below(5).unwrap();
        drop(wal);
        // The new record survives a reopen and is replayed from the checkpoint on.
        let (wal, rec) = Wal::open(shared.clone(), &dir(), with_checkpoint(5)).unwrap();
        assert_eq!(rec.next_lsn, 7, "{case}");
        assert!(!rec.restarted_after_checkpoint);
        assert_eq!(
            collect(&wal, 6).unwrap(),
            vec![(6, b"new".to_vec())],
            "{case}"
        );
    }
}

#[test]
fn damage_past_the_checkpoint_is_refused_until_set_aside() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    for i in 1..=5u64 {
        wal.append_data(&payload(i, 40)).unwrap();
    }
    let path = wal.files()[0].path.clone();
    drop(wal);
    let before = fs.read_file(&path).unwrap();
    let len = before.len() as u64;
    fs.flip_bit(&path, len - 5, 3).unwrap(); // inside record 5, every sector written
    let damaged = fs.read_file(&path).unwrap();
    // Not covered (checkpoint 3): an error naming the file, the offset and the LSN; no byte cut.
    let err = Wal::open(shared.clone(), &dir(), with_checkpoint(3)).unwrap_err();
    match &err {
        Error::Corruption { lsn, path: p, .. } => assert_eq!((*lsn, p), (5, &path)),
        other => panic!("{other}"),
    }
    assert_eq!(fs.read_file(&path).unwrap(), damaged);
    // The read-only view reports it and reads the records before it.
    let view = strata_wal::LogView::open(shared.clone(), &dir(), &with_checkpoint(3)).unwrap();
    let t = view.tail().unwrap();
    assert_eq!(
        (t.lsn, t.kind, t.covered),
        (5, strata_wal::TailKind::Damaged, false)
    );
    assert_eq!(view.next_lsn(), 5);
    // The explicit repair saves the bytes aside, cuts, and reports it.
    let repair = Options {
        recovery: RecoveryMode::SetAside,
        ..with_checkpoint(3)
    };
    let (wal, rec) = Wal::open(shared.clone(), &dir(), repair).unwrap();
    let t = rec.tail.unwrap();
    let saved = t.saved_to.clone().unwrap();
    assert_eq!(fs.read_file(&saved).unwrap(), damaged[t.offset as usize..]);
    assert_eq!(collect(&wal, 4).unwrap().len(), 1);
    assert_eq!(wal.append_data(b"x").unwrap(), 5);
}

#[test]
fn set_aside_moves_later_files_past_damage_in_an_older_one() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    for i in 1..=200u64 {
        wal.append_data(&payload(i, 100)).unwrap();
    }
    let files = wal.files();
    assert!(files.len() >= 3);
    drop(wal);
    // Damage in the middle of the first file: every later record is behind it.
    fs.flip_bit(&files[0].path, 500, 1).unwrap();
    assert!(Wal::open(shared.clone(), &dir(), small())
        .and_then(|(w, _)| collect(&w, 1))
        .unwrap_err()
        .is_corruption());
    let repair = Options {
        recovery: RecoveryMode::SetAside,
        ..small()
    };
    let (wal, rec) = Wal::open(shared.clone(), &dir(), repair).unwrap();
    assert_eq!(rec.set_aside.len(), files.len()); // the cut + every later file moved
    let kept = collect(&wal, 1).unwrap();
    assert!(!kept.is_empty() && kept.len() < 20);
    assert_eq!(wal.append_data(b"x").unwrap(), kept.len() as u64 + 1);
    for f in &files[1..] {
        assert!(!shared.exists(&f.path));
    }
}

#[test]
fn set_aside_never_replaces_what_lost_and_found_holds() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    for i in 1..=200u64 {
        wal.append_data(&payload(i, 100)).unwrap();
    }
    let files = wal.files();
    drop(wal);
    // An earlier repair left a file under the name this one would move the second log file to.
    let name = files[1]
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let earlier = dir().join("lost+found").join(format!("{name}@0"));
    strata_io::Fs::create_dir_all(&fs, &dir().join("lost+found")).unwrap();
    fs.write_file_durable(&earlier, b"evidence of an earlier repair")
        .unwrap();
    fs.flip_bit(&files[0].path, 500, 1).unwrap();
    let repair = Options {
        recovery: RecoveryMode::SetAside,
        ..small()
    };
    let (_wal, rec) = Wal::open(shared.clone(), &dir(), repair).unwrap();
    assert_eq!(
        fs.read_file(&earlier).unwrap(),
        b"evidence of an earlier repair",
        "a repair replaced lost+found evidence"
    );
    let moved = rec
        .set_aside
        .iter()
        .find(|t| t.path == files[1].path)
        .and_then(|t| t.saved_to.clone())
        .unwrap();
    assert_ne!(moved, earlier);
    // The moved file is the whole second log file (it starts with the log magic).
    assert_eq!(&fs.read_file(&moved).unwrap()[..8], b"STRATWAL");
}

#[test]
fn damage_with_valid_records_after_it_is_never_taken_as_covered() {
    let (fs, shared) = fault_fs();
    let (wal, _) = Wal::open(shared.clone(), &dir(), small()).unwrap();
    for i in 1..=5u64 {
        wal.append_data(&payload(i, 40)).unwrap();
    }
    let path = wal.files()[0].path.clone();
    drop(wal);
    // Record 2 damaged (inside its payload); records 3..=5 follow, valid, past checkpoint 2.
    fs.flip_bit(&path, 32 + 60 + 30, 2).unwrap();
    assert!(Wal::open(shared.clone(), &dir(), with_checkpoint(2))
        .unwrap_err()
        .is_corruption());
    let view = strata_wal::LogView::open(shared.clone(), &dir(), &with_checkpoint(2)).unwrap();
    let t = view.tail().unwrap();
    assert_eq!((t.lsn, t.covered), (2, false));
}

/// Spares follow the write rate: an open log that takes no writes holds no preallocated file;
/// the first write asks for a small one (1 MiB) and the log moves onto it; a file whose first
/// half filled quickly asks for one four times larger; the padding goes at close.
#[test]
fn spares_are_made_on_demand_and_sized_to_the_write_rate() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        sync: SyncMode::Never,
        ..Options::default() // preallocation on, 64 MiB files at most
    };
    type Files = Vec<(String, u64)>;
    let names_and_sizes = || -> Files {
        let mut v: Files = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let wait_for = |what: &str, ok: &dyn Fn(&Files) -> bool| {
        let start = std::time::Instant::now();
        loop {
            let files = names_and_sizes();
            if ok(&files) {
                return files;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what}: {files:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let (wal, _) = Wal::open(StdFs::shared(), dir.path(), opts).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let idle = names_and_sizes();
    assert!(
        idle.iter()
            .all(|(n, len)| !n.ends_with(".tmp") && *len < 4096),
        "an idle log holds no spare: {idle:?}"
    );
    wal.append_data(b"first").unwrap();
    wait_for("a 1 MiB spare", &|f| {
        f.iter()
            .any(|(n, len)| n.ends_with(".wal.tmp") && *len == 1 << 20)
    });
    // A record after the spare is ready moves the log onto it (the file above may still be
    // being filled and synced); filling its first half at once asks for 4 MiB.
    let start = std::time::Instant::now();
    while !names_and_sizes()
        .iter()
        .any(|(n, len)| n.ends_with(".wal") && *len == 1 << 20)
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never moved onto the spare"
        );
        wal.append_data(b"tick").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let record = vec![7u8; 4000];
    for _ in 0..140 {
        wal.append_data(&record).unwrap();
    }
    let files = wait_for("a 4 MiB spare", &|f| {
        f.iter()
            .any(|(n, len)| n.ends_with(".wal.tmp") && *len == 4 << 20)
    });
    assert!(
        files
            .iter()
            .any(|(n, len)| n.ends_with(".wal") && *len == 1 << 20),
        "the active file is the 1 MiB spare: {files:?}"
    );
    let last = wal.last_lsn();
    drop(wal);
    let closed = names_and_sizes();
    assert!(
        closed
            .iter()
            .all(|(n, len)| !n.ends_with(".tmp") && *len < 1 << 20),
        "closed: no spare, no padding: {closed:?}"
    );
    let (wal, rec) = Wal::open(StdFs::shared(), dir.path(), opts).unwrap();
    assert_eq!(rec.next_lsn, last + 1);
    let mut r = wal.reader(1).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, last);
}
