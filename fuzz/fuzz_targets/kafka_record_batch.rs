#![no_main]
// See streamhouse::fuzzing::kafka_record_batch for what is checked.
libfuzzer_sys::fuzz_target!(|data: &[u8]| streamhouse::fuzzing::kafka_record_batch(data));
