//! Entry points shared by the cargo-fuzz targets (`fuzz/`) and the corpus replay test, so the
//! fuzzed code and the tested code are the same. Each function panics only when it finds a bug.

use std::path::Path;
use std::sync::Arc;

use crate::format::{decode_record, encode_record, Frame};
use crate::{file_name, Options, RecoveryMode, Wal};
use strata_io::{FaultFs, Fs};

/// Decode one frame (the first 4 bytes are the CRC seed); a valid frame must re-encode to the
/// same bytes.
pub fn decode_record_bytes(data: &[u8]) {
    let (seed, frame) = match data.split_first_chunk::<4>() {
        Some((s, rest)) => (u32::from_le_bytes(*s), rest),
        None => return,
    };
    if let Frame::Valid {
        record,
        frame_bytes,
    } = decode_record(frame, seed)
    {
        let mut again = Vec::new();
        encode_record(&mut again, seed, record.lsn, record.kind, record.payload);
        assert_eq!(
            Some(&again[..]),
            frame.get(..frame_bytes),
            "frame does not round-trip"
        );
    }
}

/// Treat `data` as the only log file, open it (tolerating a torn tail), replay every record,
/// then open again: the second recovery must find nothing left to repair and the same records.
pub fn replay_log_bytes(data: &[u8]) {
    let fs = FaultFs::new();
    let dir = Path::new("/wal");
    if fs.create_dir_all(dir).is_err() {
        return;
    }
    let first_lsn = data
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(1, u64::from_le_bytes)
        .clamp(1, u64::MAX / 2);
    if fs
        .write_file_durable(&dir.join(file_name(first_lsn)), data)
        .is_err()
    {
        return;
    }
    let shared: Arc<dyn Fs> = Arc::new(fs);
    let opts = Options {
        recovery: RecoveryMode::TolerateCorruptTail,
        preallocate: false,
        ..Options::default()
    };
    let first = replay(&shared, dir, opts);
    let second = replay(&shared, dir, opts);
    if let (Some(a), Some(b)) = (&first, &second) {
        assert_eq!(a, b, "recovery is not idempotent");
    }
}

fn replay(fs: &Arc<dyn Fs>, dir: &Path, opts: Options) -> Option<Vec<(u64, Vec<u8>)>> {
    let (wal, _) = Wal::open(fs.clone(), dir, opts).ok()?;
    let mut reader = wal.reader(1).ok()?;
    let mut out = Vec::new();
    while let Ok(Some(r)) = reader.next_record() {
        out.push((r.lsn, r.payload.to_vec()));
    }
    Some(out)
}
