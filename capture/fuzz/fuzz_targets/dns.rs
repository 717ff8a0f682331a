#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = owlet_capture::app::parse_dns(data, &mut |r| {
        let _ = r.name.as_str();
        let _ = r.target.map(|t| t.as_str().len());
    });
});
