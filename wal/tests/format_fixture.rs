//! The committed fixture `tests/fixtures/v1/00000000000000000001.wal` must (1) equal the bytes
//! that `docs/format.md` specifies, built here by hand from the spec's field table, and (2)
//! decode through the public reader. If the format changes, the version must change and this
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

use strata_wal::io::{FaultFs, Fs};
use strata_wal::{Options, RecordKind, Wal};

const SEED: u32 = 0x0102_0304;
const RECORDS: [(u8, &[u8]); 3] = [(1, b"alpha"), (200, b"ignorable"), (1, b"")];

/// Bytes per docs/format.md, written without the crate's encoder.
fn spec_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"STRATWAL"); // magic
    out.extend_from_slice(&1u32.to_le_bytes()); // format version
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
    }
    out
}

#[test]
fn committed_fixture_matches_the_spec_and_decodes() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/00000000000000000001.wal");
    if std::env::var_os("STRATA_REGEN_FIXTURES").is_some() {
        std::fs::write(&path, spec_bytes()).unwrap();
    }
    let committed = std::fs::read(&path).unwrap();
    assert_eq!(
        committed,
        spec_bytes(),
        "fixture and docs/format.md disagree"
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
