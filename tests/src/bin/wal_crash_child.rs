//! Child process of `tests/tests/wal_process_crash.rs`: opens the log in `DIR` with
//! `SyncMode::Always`, appends from `THREADS` threads forever and prints `ack LSN ID` for every
//! acknowledged record. The parent SIGKILLs it at a random moment.
//!
//! Usage: `wal_crash_child DIR THREADS RECORD_BYTES SEGMENT_BYTES`

use std::path::PathBuf;
use std::sync::Arc;

use strata_io::StdFs;
use strata_tests::{payload, print_ack};
use strata_wal::{Options, Wal};

fn main() {
    if let Err(e) = run() {
        eprintln!("wal_crash_child: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads, record_bytes, segment_bytes] = args.as_slice() else {
        return Err("usage: wal_crash_child DIR THREADS RECORD_BYTES SEGMENT_BYTES".into());
    };
    let dir = PathBuf::from(dir);
    let threads: u64 = threads.parse()?;
    let record_bytes: usize = record_bytes.parse()?;
    let opts = Options {
        segment_bytes_max: segment_bytes.parse()?,
        record_bytes_max: 16 * 1024,
        ..Options::default()
    };
    let (wal, rec) = Wal::open(StdFs::shared(), &dir, opts)?;
    let wal = Arc::new(wal);
    // Ids are unique across incarnations: the first LSN of this run keys them.
    let base = rec.next_lsn << 20;
    println!("open {}", rec.next_lsn);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0u64.. {
                    let id = base + (t << 16) + i;
                    let lsn = wal
                        .append_data(&payload(id, record_bytes))
                        .map_err(|e| e.to_string())?;
                    print_ack(format_args!("ack {lsn} {id}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "writer panicked")??;
    }
    Ok(())
}
