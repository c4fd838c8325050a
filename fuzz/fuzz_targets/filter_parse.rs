//! See `strata::fuzzing::filter_parse`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata::fuzzing::filter_parse(data);
});
