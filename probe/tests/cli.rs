//! `owlet probe` through its argument parser and output: Nagios first line
//! with perfdata, latency thresholds, status ranges, failure output, and
//! errors that name the flags the user typed.
mod common;

use common::*;
use owlet_probe::cli;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn parse_err(line: &str) -> String {
    match try_args(line) {
        Ok(_) => panic!("{line}: parsed"),
        Err(e) => e.to_string(),
    }
}

async fn listener() -> u16 {
    serve(|s| async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        drop(s);
    })
    .await
}

/// An HTTP server answering every request with `status` and a 5-byte body.
async fn http_server(status: &'static str) -> u16 {
    serve(move |mut s| async move {
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf).await;
        let reply = format!(
            "HTTP/1.1 {status}\r\nLocation: /elsewhere\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        );
        let _ = s.write_all(reply.as_bytes()).await;
    })
    .await
}

#[tokio::test]
async fn first_line_is_nagios_status_with_perfdata() {
    let port = listener().await;
    let out = cli::execute(&args(&format!(
        "tcp 127.0.0.1:{port} --warning 5 --critical 10s"
    )))
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with("TCP OK - "), "{first}");
    let (_, perf) = first.split_once(" | ").expect("perfdata after ' | '");
    assert!(perf.starts_with("time="), "{perf}");
    assert!(perf.ends_with("s;5;10;0"), "{perf}");

    let web = http_server("200 OK").await;
    let out = cli::execute(&args(&format!(
        "http http://127.0.0.1:{web}/ --critical 0.5"
    )))
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with("HTTP OK - "), "{first}");
    assert!(first.contains(";;0.5;0 size=5B;;;0"), "{first}");

    let out = cli::execute(&args("icmp 127.0.0.1 --count 2 --echo-interval 10ms")).await;
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with("PING OK - "), "{first}");
    assert!(
        first.contains(" | rta=") && first.ends_with("pl=0%;;;0;100"),
        "{first}"
    );
}

#[tokio::test]
async fn latency_over_the_thresholds_is_warning_or_critical() {
    let port = listener().await;
    // Any real connect takes more than zero time.
    let out = cli::execute(&args(&format!("tcp 127.0.0.1:{port} --warning 0"))).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("TCP WARNING - "), "{}", out.stdout);
    assert!(
        out.stdout.contains("over the warning threshold 0s"),
        "{}",
        out.stdout
    );
    let out = cli::execute(&args(&format!("tcp 127.0.0.1:{port} -w 0 -c 0ms"))).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.starts_with("TCP CRITICAL - "), "{}", out.stdout);
    assert!(
        out.stdout.contains("over the critical threshold"),
        "{}",
        out.stdout
    );
    // A DOWN check stays CRITICAL whatever the thresholds.
    let closed = free_tcp_port();
    let out = cli::execute(&args(&format!("tcp 127.0.0.1:{closed} --warning 60"))).await;
    assert_eq!(out.code, 2);
    assert!(out.stdout.starts_with("TCP CRITICAL - "), "{}", out.stdout);
    assert!(parse_err("tcp h:1 --warning soon").contains("use seconds (0.5) or a duration"));
}

#[tokio::test]
async fn expect_status_takes_classes_and_ranges() {
    let web = http_server("302 Found").await;
    let run = |set: &str| {
        let line = format!("http http://127.0.0.1:{web}/ --no-follow --expect-status {set}");
        async move { cli::execute(&args(&line)).await.code }
    };
    assert_eq!(run("3xx").await, 0);
    assert_eq!(run("200,301-399").await, 0);
    assert_eq!(run("2xx").await, 2);
    assert_eq!(run("200,303-399").await, 2);
    let (cfg, _) = cli::to_config(&args("http http://h/ --expect-status 2xx,301"));
    let codes = cfg.expect_status.unwrap();
    assert_eq!(codes.len(), 101);
    assert_eq!((codes[0], codes[99], codes[100]), (200, 299, 301));
    for bad in ["2x9", "99", "600", "399-301", "7xx"] {
        let e = parse_err(&format!("http http://h/ --expect-status {bad}"));
        assert!(
            e.contains("a class (2xx) or a range (301-399)"),
            "{bad}: {e}"
        );
    }
}

#[tokio::test]
async fn failure_output_has_no_filler_rows() {
    let closed = free_tcp_port();
    let out = cli::execute(&args(&format!("http http://127.0.0.1:{closed}/"))).await;
    assert_eq!(out.code, 2);
    let text = &out.stdout;
    assert!(text.starts_with("HTTP CRITICAL - "), "{text}");
    assert!(text.contains("[refused]"), "{text}");
    for filler in [
        "status    0",
        "body      0",
        "tls 0.000",
        "first byte 0.000",
        "total 0.000",
    ] {
        assert!(!text.contains(filler), "filler row {filler:?} in:\n{text}");
    }
    let out = cli::execute(&args(&format!("tcp 127.0.0.1:{closed}"))).await;
    assert!(!out.stdout.contains("connect   0.000"), "{}", out.stdout);
}

#[tokio::test]
async fn errors_name_the_flags_not_config_keys() {
    let out = cli::execute(&args("http http://h/ --insecure --ca /nonexistent/ca.pem")).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr
            .contains("--insecure: set either --ca or --insecure, not both"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("insecure_skip_verify"),
        "{}",
        out.stderr
    );
    let out = cli::execute(&args("tcp h:1 --timeout 500000000years")).await;
    assert!(
        out.stderr.starts_with("owlet probe: --timeout: "),
        "{}",
        out.stderr
    );
    let out = cli::execute(&args("http example.com/health")).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains(
            "<URL>: \"example.com/health\" has no scheme; write it as \"http://example.com/health\""
        ),
        "{}",
        out.stderr
    );
}
