//! Open and replay arbitrary bytes as a WAL file, twice (recovery must be idempotent).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_wal::fuzzing::replay_log_bytes(data);
});
