//! The whole per-packet path: every link type's decoder, then the engine
//! (fragments, flows, application parsers) over a short sequence of frames
//! cut from the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use owlet_capture::decode::{LinkType, decode};
use owlet_capture::engine::{Config, Engine};

fuzz_target!(|data: &[u8]| {
    for link in LinkType::ALL {
        let _ = decode(link, data, data.len() as u32);
    }
    let mut e = Engine::new(LinkType::Ethernet, Config::default());
    // Frames separated by a 0xFE 0xFE marker, so one input is a conversation.
    let mut t = 1_700_000_000_000_000_000u64;
    for frame in data.split(|&b| b == 0xFE) {
        e.process(frame, frame.len() as u32, t);
        t += 500_000_000;
        e.drain().for_each(drop);
    }
    e.finish();
    e.drain().for_each(drop);
});
