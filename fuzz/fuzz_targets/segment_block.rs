#![no_main]
// See streamhouse::fuzzing::segment_block for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::segment_block(data));
