//! Fuzz target: `kroxide::fuzzing::simple_schema` on arbitrary UTF-8 text.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| kroxide::fuzzing::simple_schema(text));
