#![no_main]
// See streamhouse::fuzzing::produce_request for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::produce_request(data));
