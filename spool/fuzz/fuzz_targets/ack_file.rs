//! The ack file decoder gets arbitrary bytes: never panic, and whatever it
//! accepts encodes back to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    owlet_spool::fuzzing::check_decode_invariants(data);
});
