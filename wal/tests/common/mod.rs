//! Helpers for the WAL test suites.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_io::{FaultFs, Fs};
use strata_wal::{Options, Wal};

pub fn dir() -> PathBuf {
    PathBuf::from("/db/wal")
}

pub fn fault_fs() -> (FaultFs, Arc<dyn Fs>) {
    let fs = FaultFs::new();
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    (fs, shared)
}

/// Every record of the log in `dir`, opened fresh.
pub fn read_all(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    opts: Options,
) -> strata_wal::Result<Vec<(u64, Vec<u8>)>> {
    let (wal, _) = Wal::open(fs.clone(), dir, opts)?;
    collect(&wal, 1)
}

pub fn collect(wal: &Wal, from: u64) -> strata_wal::Result<Vec<(u64, Vec<u8>)>> {
    let mut r = wal.reader(from)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push((rec.lsn, rec.payload.to_vec()));
    }
    Ok(out)
}

/// Deterministic payload for record `i`.
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = i.to_le_bytes().to_vec();
    v.extend((0..len.saturating_sub(8)).map(|j| (i as usize * 31 + j) as u8));
    v.truncate(len.max(8));
    v
}
