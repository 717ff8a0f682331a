//! SNMP replies are untrusted: every decoder entry point must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use owlet_probe::snmp::{ber, v3};

fuzz_target!(|data: &[u8]| {
    let _ = ber::peek_version(data);
    let _ = ber::decode_v2c(data);
    let _ = v3::decode_v3(data);
    let _ = v3::decode_scoped(data);
});
