//! Fuzz target: `kroxide::fuzzing::template` on arbitrary UTF-8 text.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| kroxide::fuzzing::template(text));
