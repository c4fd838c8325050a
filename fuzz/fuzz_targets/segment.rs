//! See `strata::fuzzing::segment_bytes`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata::fuzzing::segment_bytes(data);
});
