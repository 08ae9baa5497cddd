//! Fuzz target: `kroxide::fuzzing::rgd_admission` on arbitrary UTF-8 text.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| kroxide::fuzzing::rgd_admission(text));
