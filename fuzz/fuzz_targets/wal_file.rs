#![no_main]
// See streamhouse::fuzzing::wal_file for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::wal_file(data));
