//! The TLS ClientHello parser, plus the HTTP and Stratum first-bytes parsers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = owlet_capture::app::parse_client_hello(data);
    let _ = owlet_capture::app::parse_http_request(data, 64);
    let _ = owlet_capture::app::parse_stratum(data);
});
