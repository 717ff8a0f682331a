//! Bad input never panics and is always counted: random bytes, truncated
//! frames and lying length fields through the whole engine, and random
//! bytes through the DNS / TLS / HTTP / Stratum parsers.

use owlet_capture::app;
use owlet_capture::decode::{LinkType, decode};
use owlet_capture::engine::{Config, Engine};
use proptest::prelude::*;

/// A valid Ethernet / IPv4 / TCP frame with a TLS-looking payload.
fn valid_frame() -> Vec<u8> {
    let mut f = vec![
        2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x81, 0, 0, 5, 0x08, 0x00,
    ];
    let payload = [22u8, 3, 1, 0, 40, 1, 0, 0, 36, 3, 3];
    let total = (20 + 20 + payload.len()) as u16;
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f[20..22].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[
        0x9c, 0x40, 1, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(&payload);
    f
}

fn counted(e: &Engine) -> u64 {
    let s = e.stats();
    s.decode_errors.iter().sum::<u64>() + s.arp + s.non_ip
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256), wire in 0u32..2000) {
        for link in LinkType::ALL {
            let _ = decode(link, &data, wire);
        }
        let mut e = Engine::new(LinkType::Ethernet, Config::default());
        e.process(&data, wire, 1);
        e.finish();
        prop_assert_eq!(e.stats().frames, 1);
        let _ = app::parse_dns(&data, &mut |_| {});
        let _ = app::parse_client_hello(&data);
        let _ = app::parse_http_request(&data, 64);
        let _ = app::parse_stratum(&data);
    }

    #[test]
    fn mutated_frames_are_decoded_or_counted(
        edits in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
        cut in 0usize..70,
    ) {
        let mut f = valid_frame();
        for (at, v) in edits {
            if at < f.len() {
                f[at] = v;
            }
        }
        let len = f.len().min(cut.max(1));
        let mut e = Engine::new(LinkType::Ethernet, Config::default());
        e.process(&f[..len], f.len() as u32, 1);
        let errors = counted(&e);
        e.finish();
        let in_flows: u64 = e
            .drain()
            .filter_map(|o| match o {
                owlet_capture::Output::Flow(r) => Some(r.packets_out + r.packets_in),
                _ => None,
            })
            .sum();
        // Every frame is in exactly one place: a flow, or a counter.
        prop_assert_eq!(in_flows + errors, 1);
    }
}

#[test]
fn lying_ipv4_length_is_counted_as_bad_length() {
    let mut f = valid_frame();
    f[20..22].copy_from_slice(&9000u16.to_be_bytes());
    let mut e = Engine::new(LinkType::Ethernet, Config::default());
    e.process(&f, f.len() as u32, 1);
    assert_eq!(e.stats().decode_errors, [0, 1, 0, 0]);
}
