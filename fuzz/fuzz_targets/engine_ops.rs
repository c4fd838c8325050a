//! See `strata::fuzzing::engine_ops`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata::fuzzing::engine_ops(data);
});
