//! The corpus: real-world configuration files, one per product, in
//! `tests/corpus/`, redacted line by line the way owlet-fim redacts a diff
//! (PEM private-key bodies whole, the file's layout from its path, every
//! other line through the rules).
//!
//! Syntax of a corpus file:
//! * `#% path: /etc/shadow` — the path the file is watched at (tells the
//!   layout); other `#%` lines are notes. Neither is a line of the file.
//! * `⟦…⟧` marks a planted secret: the markers are stripped, and neither the
//!   secret nor any 8-character piece of it may survive (a shorter secret
//!   may not survive whole).
//! * a line starting with `~` may change (over-redaction that is accepted,
//!   such as a comment that names a secret); the `~` is stripped.
//! * every other line must come out exactly as it went in.

mod common;

use std::path::Path;

use common::leaked;

use owlet_redact::{FileKind, REDACTED, Redactor, pem_private_key_lines};

/// One line of a corpus file.
struct Line {
    number: usize,
    text: String,
    secrets: Vec<String>,
    may_change: bool,
}

struct CorpusFile {
    name: String,
    path: String,
    lines: Vec<Line>,
}

fn parse(name: &str, raw: &str) -> CorpusFile {
    let mut path = None;
    let mut lines = Vec::new();
    for (i, l) in raw.lines().enumerate() {
        if let Some(note) = l.strip_prefix("#%") {
            if let Some(p) = note.trim().strip_prefix("path:") {
                path = Some(p.trim().to_string());
            }
            continue;
        }
        let (may_change, l) = match l.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, l),
        };
        let mut text = String::new();
        let mut secrets = Vec::new();
        let mut rest = l;
        while let Some(open) = rest.find('⟦') {
            text.push_str(&rest[..open]);
            let after = &rest[open + '⟦'.len_utf8()..];
            let close = after
                .find('⟧')
                .unwrap_or_else(|| panic!("{name}:{}: ⟦ without ⟧", i + 1));
            text.push_str(&after[..close]);
            secrets.push(after[..close].to_string());
            rest = &after[close + '⟧'.len_utf8()..];
        }
        text.push_str(rest);
        lines.push(Line {
            number: i + 1,
            text,
            secrets,
            may_change,
        });
    }
    let path = path.unwrap_or_else(|| panic!("{name}: no `#% path:` line"));
    CorpusFile {
        name: name.to_string(),
        path,
        lines,
    }
}

fn corpus() -> Vec<CorpusFile> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<CorpusFile> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            parse(&name, &std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// Redacts `file` as owlet-fim redacts a diff of it.
fn redact(file: &CorpusFile) -> Vec<String> {
    let redactor = Redactor::new(&[]).unwrap();
    let kinds: Vec<FileKind> = FileKind::from_path(&file.path).into_iter().collect();
    let pem = pem_private_key_lines(file.lines.iter().map(|l| l.text.as_str()));
    file.lines
        .iter()
        .zip(pem)
        .map(|(l, in_pem)| {
            if in_pem {
                REDACTED.to_string()
            } else {
                redactor.redact_line_in(&l.text, &kinds).into_owned()
            }
        })
        .collect()
}

#[test]
fn no_planted_secret_survives_and_ordinary_lines_stay() {
    let mut failures = Vec::new();
    let (mut planted, mut unchanged) = (0, 0);
    for file in corpus() {
        for (line, out) in file.lines.iter().zip(redact(&file)) {
            let at = format!("{}:{}", file.name, line.number);
            for secret in &line.secrets {
                planted += 1;
                if let Some(piece) = leaked(&out, secret) {
                    failures.push(format!("{at}: {piece:?} of a secret survives in {out:?}"));
                }
            }
            if line.secrets.is_empty() && !line.may_change {
                unchanged += 1;
                if out != line.text {
                    failures.push(format!(
                        "{at}: ordinary line changed: {:?} -> {out:?}",
                        line.text
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The corpus is what it claims to be (a parse error would make this pass
    // vacuously).
    eprintln!("{planted} planted secrets, {unchanged} ordinary lines");
    assert!(planted >= 150, "{planted} planted secrets");
    assert!(unchanged >= 400, "{unchanged} ordinary lines");
}

#[test]
fn corpus_covers_the_products() {
    let names: Vec<String> = corpus().into_iter().map(|f| f.name).collect();
    for product in [
        "strongswan-ipsec.conf",
        "strongswan-ipsec.secrets",
        "strongswan-swanctl.conf",
        "frr.conf",
        "cisco-ios",
        "nginx.conf",
        "sshd_config",
        "postfix-main.cf",
        "postfix-sasl_passwd",
        "wpa_supplicant.conf",
        "hostapd.conf",
        "keepalived.conf",
        "snmpd.conf",
        "shadow",
        "gshadow",
        "pgpass",
        "htpasswd",
        "chap-secrets",
        "pap-secrets",
        "openvpn-client.conf",
        "app.env",
        "k8s-secret.yaml",
    ] {
        assert!(
            names.contains(&format!("{product}.txt")),
            "{product} missing from {names:?}"
        );
    }
}

#[test]
fn the_checker_itself_catches_a_leak() {
    assert_eq!(leaked("a [redacted] b", "hunter2hunter2"), None);
    assert_eq!(leaked("x=hunter2h", "hunter2hunter2"), Some("hunter2h"));
    assert_eq!(leaked("community public", "public"), Some("public"));
    let f = parse("t", "#% path: /x\npw ⟦abc⟧ ⟦défghijk⟧\n~# changes\nplain");
    assert_eq!(f.path, "/x");
    assert_eq!(f.lines[0].text, "pw abc défghijk");
    assert_eq!(f.lines[0].secrets, ["abc", "défghijk"]);
    assert!(f.lines[1].may_change && f.lines[1].text == "# changes");
    assert!(!f.lines[2].may_change);
}
