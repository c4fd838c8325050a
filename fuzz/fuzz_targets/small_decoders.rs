//! See `strata::fuzzing::small_decoders`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata::fuzzing::small_decoders(data);
});
