//! Raw ICMP sockets see every ICMP packet on the host: the parser must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use owlet_probe::icmp_packet::parse;

fuzz_target!(|data: &[u8]| {
    for v6 in [false, true] {
        for ip_header in [false, true] {
            let _ = parse(data, v6, ip_header);
        }
    }
});
