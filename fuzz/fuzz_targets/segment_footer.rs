#![no_main]
// See streamhouse::fuzzing::segment_footer for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::segment_footer(data));
