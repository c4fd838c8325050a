//! The committed fixtures `tests/fixtures/v1/00000000000000000001.wal` (layout 1) and
//! `tests/fixtures/v2/00000000000000000001.wal` (layout 2: a trailer byte ends every frame) must
//! (1) equal the bytes that `docs/format.md` specifies, built here by hand from the spec's field
//! table, and (2) decode through the public reader; a log whose newest file is layout 1 takes
//! new records in a new layout-2 file. If the format changes, the version must change and this
//! fixture stays readable or is explicitly retired.
//!
//! Regenerate (only with a format version bump): `STRATA_REGEN_FIXTURES=1 cargo test -p strata-wal --test format_fixture`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use std::path::Path;
use std::sync::Arc;

use strata_io::{FaultFs, Fs};
use strata_wal::{Options, RecordKind, Wal};

const SEED: u32 = 0x0102_0304;
const RECORDS: [(u8, &[u8]); 3] = [(1, b"alpha"), (200, b"ignorable"), (1, b"")];

/// Bytes per docs/format.md, written without the crate's encoder, in layout `version`.
fn spec_bytes(version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"STRATWAL"); // magic
    out.extend_from_slice(&version.to_le_bytes()); // format version
    out.extend_from_slice(&SEED.to_le_bytes()); // crc seed
    out.extend_from_slice(&1u64.to_le_bytes()); // first LSN
    out.extend_from_slice(&0u32.to_le_bytes()); // reserved
    let crc = crc32fast::hash(&out[..28]);
    out.extend_from_slice(&crc.to_le_bytes());
    for (i, (kind, payload)) in RECORDS.iter().enumerate() {
        let mut rest = Vec::new();
        rest.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        rest.push(*kind);
        rest.extend_from_slice(&[0, 0, 0]); // flags, reserved
        rest.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        let mut h = crc32fast::Hasher::new_with_initial(SEED);
        h.update(&rest);
        h.update(payload);
        out.extend_from_slice(&h.finalize().to_le_bytes());
        out.extend_from_slice(&rest);
        out.extend_from_slice(payload);
        if version >= 2 {
            out.push(0xA5); // trailer
        }
    }
    out
}

fn fixture_path(version: u32) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/v{version}/00000000000000000001.wal"
    ))
}

#[test]
fn committed_fixtures_match_the_spec_and_decode() {
    for version in [1u32, 2] {
        check_fixture(version);
    }
}

#[test]
fn a_layout_1_log_takes_new_records_in_a_layout_2_file() {
    let committed = std::fs::read(fixture_path(1)).unwrap();
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new("/w")).unwrap();
    fs.write_file_durable(Path::new("/w/00000000000000000001.wal"), &committed)
        .unwrap();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    let (wal, _) = Wal::open(shared.clone(), Path::new("/w"), Options::default()).unwrap();
    assert_eq!(wal.append_data(b"new").unwrap(), 4);
    let files = wal.files();
    assert_eq!(files.len(), 2);
    drop(wal);
    assert_eq!(
        fs.read_file(&files[0].path).unwrap(),
        committed,
        "the old file was touched"
    );
    assert_eq!(
        &fs.read_file(&files[1].path).unwrap()[8..12],
        &2u32.to_le_bytes()
    );
    let (wal, _) = Wal::open(shared, Path::new("/w"), Options::default()).unwrap();
    let mut r = wal.reader(1).unwrap();
    let mut n = 0;
    while let Some(rec) = r.next_record().unwrap() {
        n += 1;
        assert_eq!(rec.lsn, n);
    }
    assert_eq!(n, 4);
}

fn check_fixture(version: u32) {
    let path = fixture_path(version);
    if std::env::var_os("STRATA_REGEN_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, spec_bytes(version)).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert_eq!(
        committed,
        spec_bytes(version),
        "fixture v{version} and docs/format.md disagree"
    );
    let fs = FaultFs::new();
    fs.create_dir_all(Path::new("/w")).unwrap();
    fs.write_file_durable(Path::new("/w/00000000000000000001.wal"), &committed)
        .unwrap();
    let shared: Arc<dyn Fs> = Arc::new(fs);
    let (wal, rec) = Wal::open(shared, Path::new("/w"), Options::default()).unwrap();
    assert_eq!(rec.next_lsn, 4);
    assert_eq!(rec.tail, None);
    let mut r = wal.reader(1).unwrap();
    for (i, (kind, payload)) in RECORDS.iter().enumerate() {
        let got = r.next_record().unwrap().unwrap();
        assert_eq!(
            (got.lsn, got.kind, got.payload),
            (i as u64 + 1, RecordKind(*kind), *payload)
        );
    }
    assert!(r.next_record().unwrap().is_none());
}
