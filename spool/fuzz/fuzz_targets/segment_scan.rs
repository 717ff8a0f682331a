//! A segment file is whatever the disk hands back after a crash or damage:
//! the scanner must never panic, never claim a record beyond the bytes it
//! has, and only return records that follow each other.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    owlet_spool::fuzzing::check_scan_invariants(data);
});
