//! `[log]` of `owlet-soc serve`, with the real binary: the human format
//! writes no colour codes when stderr is not a terminal (here: a pipe).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const SOC: &str = env!("CARGO_BIN_EXE_owlet-soc");

#[test]
fn human_logs_into_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(SOC)
        .args(["ca", "init", "--dir"])
        .arg(dir.path())
        .args(["--listen", &addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "ca init: {out:?}");
    let config = dir.path().join("soc.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("format = \"auto\""),
        "ca init wrote no [log]: {text}"
    );
    std::fs::write(
        &config,
        text.replace("format = \"auto\"", "format = \"human\""),
    )
    .unwrap();

    let mut soc = Command::new(SOC)
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = soc.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let done = line.contains("serving");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = soc.kill();
    let _ = soc.wait();
    let log = seen.join("\n");
    assert!(log.contains("serving"), "no start-up line: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log:?}"
    );
}
