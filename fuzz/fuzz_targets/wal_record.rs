//! Decode one WAL record frame (first 4 bytes: CRC seed); valid frames must round-trip.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_wal::fuzzing::decode_record_bytes(data);
});
