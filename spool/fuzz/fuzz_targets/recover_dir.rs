//! Recovery end to end: arbitrary bytes as the last segment and as the ack
//! file, then open, read, append, reopen. Never a panic; an error must name
//! a file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    owlet_spool::fuzzing::open_arbitrary(dir.path(), data);
});
