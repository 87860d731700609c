#![no_main]
// See streamhouse::fuzzing::kafka_request for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::kafka_request(data));
