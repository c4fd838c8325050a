//! Child process of `tests/tests/db_process_crash.rs`: opens (or creates) the database in DIR
//! with `SyncMode::Always` and small memtables (so flushes run all the time), then THREADS
//! writers apply batches forever and print `ack ID` for each acknowledged batch. Batch ID puts
//! `b<ID>-0..3` (value = ID) and overwrites `thread-<T>` (value = ID).
//!
//! Usage: `db_crash_child DIR THREADS RUN`

use std::path::PathBuf;

use strata::{Db, Document, Metric, Schema, WriteBatch};

fn main() {
    if let Err(e) = run() {
        eprintln!("db_crash_child: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, threads, run] = args.as_slice() else {
        return Err("usage: db_crash_child DIR THREADS RUN".into());
    };
    let dir = PathBuf::from(dir);
    let threads: u64 = threads.parse()?;
    let run: u64 = run.parse()?;
    let db = if dir.join(strata::meta::SCHEMA_FILE).exists() {
        Db::open(&dir, strata_tests::db_crash_options())?
    } else {
        let schema = Schema::new(4, Metric::L2).with_attr("id");
        match Db::create_with(&dir, schema, strata_tests::db_crash_options()) {
            Ok(db) => db,
            // Killed during an earlier create after the schema landed.
            Err(strata::Error::AlreadyExists(_)) => {
                Db::open(&dir, strata_tests::db_crash_options())?
            }
            Err(e) => return Err(e.into()),
        }
    };
    println!("open");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0u64.. {
                    let id = (run << 32) | (t << 24) | i;
                    let mut b = WriteBatch::new();
                    for j in 0..3 {
                        b.put(
                            Document::new(format!("b{id}-{j}"), id.to_string())
                                .with_vector(vec![j as f32, t as f32, i as f32, 1.0])
                                .with_term(format!("batch:{id}"))
                                .with_attr("id", id as i64),
                        );
                    }
                    b.put(Document::new(format!("thread-{t}"), id.to_string()));
                    db.write(b).map_err(|e| e.to_string())?;
                    strata_tests::print_ack(format_args!("ack {id}"))?;
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
