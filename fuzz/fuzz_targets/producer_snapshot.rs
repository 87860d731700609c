#![no_main]
// See streamhouse::fuzzing::producer_snapshot for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::producer_snapshot(data));
