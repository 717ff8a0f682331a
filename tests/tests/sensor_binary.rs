//! The sensor binary carries only the sensor: no SOC code, no SQLite, no
//! listening server, no test generator (issue 7, section 2). Checked on the
//! built `owlet` binary itself, so a dependency that sneaks back in fails.

use owlet_tests::bin;

/// Symbols and strings that would only be there if the code were linked in.
const FORBIDDEN: &[(&str, &str)] = &[
    ("sqlite3_prepare", "SQLite"),
    // The crate's module paths (tracing targets, panic locations); plain
    // "owlet_soc" also names the Prometheus metrics about the SOC link.
    ("owlet_soc::", "the SOC crate"),
    ("rusqlite", "rusqlite"),
    ("rcgen", "certificate generation (rcgen)"),
    ("synthetic load finished", "the synthetic load generator"),
    // owlet-loadgen turns on owlet-spool's fault injection (systemd watchdog tests).
    ("FaultyFs", "the spool's fault injection"),
];

#[test]
fn the_owlet_binary_links_no_soc_sqlite_or_load_generator() {
    let owlet = std::fs::read(bin("owlet")).unwrap();
    for (needle, what) in FORBIDDEN {
        assert!(
            !contains(&owlet, needle.as_bytes()),
            "the owlet sensor binary contains {what} ({needle:?})"
        );
    }
    // The same probe finds them where they belong, so it can fail.
    let soc = std::fs::read(bin("owlet-soc")).unwrap();
    assert!(contains(&soc, b"sqlite3_prepare"));
    assert!(contains(&soc, b"owlet_soc::"));
    let loadgen = std::fs::read(bin("owlet-loadgen")).unwrap();
    assert!(contains(&loadgen, b"synthetic load finished"));
    assert!(contains(&loadgen, b"FaultyFs"));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
