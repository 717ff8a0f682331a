//! Benchmark driver for bench/probe/run.sh.
//!
//! bench rate TYPE TARGET N CONCURRENCY
//!     run N checks of TYPE (tcp|http|icmp) against TARGET through
//!     owlet_probe::run_check, CONCURRENCY at a time; print wall time, own CPU
//!     seconds and checks/s as one `key=value` line.
//! bench rss N SECONDS TCP_TARGET HTTP_URL
//!     configure N checks (a third each TCP, HTTP, ICMP to 127.0.0.1, 10s
//!     interval) through owlet_probe::spawn, run for SECONDS, print peak RSS.
//! bench port
//!     print a free loopback TCP port.
//! bench drive URL[,URL...] N CONCURRENCY [RATE]
//!     HTTP load generator for peers (e.g. blackbox_exporter's /probe):
//!     N GETs over CONCURRENCY keep-alive connections, request i to the
//!     i-th URL (round robin, one host); with RATE, request i is sent at
//!     i / RATE seconds (a steady load, as a scraper would make); prints
//!     failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use owlet_probe::{CheckConfig, CheckSpec, CheckTypeName, ProbeConfig};
use owlet_proto::v1::State;

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (USER_HZ = 100 on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn check(t: CheckTypeName, target: &str, id: String) -> CheckConfig {
    let mut c = CheckConfig::new(id, t, target);
    c.timeout = Duration::from_secs(5);
    c.interval = Duration::from_secs(10);
    if t == CheckTypeName::Icmp {
        c.count = Some(1);
    }
    c
}

fn parse_type(s: &str) -> CheckTypeName {
    match s {
        "tcp" => CheckTypeName::Tcp,
        "http" => CheckTypeName::Http,
        "icmp" => CheckTypeName::Icmp,
        other => panic!("unknown type {other}"),
    }
}

async fn rate(t: &str, target: &str, n: usize, conc: usize) {
    let spec = Arc::new(
        CheckSpec::from_config(&check(parse_type(t), target, "bench".into())).expect("valid check"),
    );
    // Warm up (TLS roots, ICMP socket, resolver) outside the measurement.
    let _ = owlet_probe::run_check(&spec).await;
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore");
        let spec = spec.clone();
        handles.push(tokio::spawn(async move {
            let r = owlet_probe::run_check(&spec).await;
            drop(permit);
            r.result == State::Up as i32
        }));
    }
    let mut ok = 0;
    for h in handles {
        if h.await.unwrap_or(false) {
            ok += 1;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "tool=owlet type={t} checks={n} ok={ok} wall_s={wall:.3} cpu_s={cpu:.2} checks_per_s={:.0} cpu_s_per_10k={:.2}",
        n as f64 / wall,
        cpu / n as f64 * 10_000.0
    );
}

async fn rss(n: usize, secs: u64, tcp: &str, url: &str) {
    let checks = (0..n)
        .map(|i| match i % 3 {
            0 => check(CheckTypeName::Tcp, tcp, format!("tcp-{i}")),
            1 => check(CheckTypeName::Http, url, format!("http-{i}")),
            _ => check(CheckTypeName::Icmp, "127.0.0.1", format!("icmp-{i}")),
        })
        .collect();
    let cfg = ProbeConfig {
        max_concurrency: 256,
        checks,
    };
    assert!(cfg.validate().is_empty());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let cpu0 = cpu_seconds();
    let handle = owlet_probe::spawn(cfg, tx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let (mut results, mut up) = (0u64, 0u64);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let Some(owlet_proto::v1::event::Kind::CheckResult(r)) = ev.kind {
            results += 1;
            if r.result == State::Up as i32 {
                up += 1;
            }
        }
    }
    let cpu = cpu_seconds() - cpu0;
    handle.shutdown().await;
    println!(
        "tool=owlet configured_checks={n} seconds={secs} results={results} up={up} cpu_s={cpu:.2} peak_rss_mb={:.1}",
        peak_rss_kb() as f64 / 1024.0
    );
}

async fn drive(urls: &str, n: usize, conc: usize, rate: f64) {
    use http_body_util::{BodyExt, Empty};
    let uris: Vec<http::Uri> = urls.split(',').map(|u| u.parse().expect("url")).collect();
    let auth = uris[0].authority().expect("authority").clone();
    let paths: Arc<Vec<String>> = Arc::new(
        uris.iter()
            .map(|u| {
                u.path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or("/".into())
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fails = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (auth, paths, next, fails) = (auth.clone(), paths.clone(), next.clone(), fails.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if rate > 0.0 {
                    let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(at.into()).await;
                }
                let path = &paths[i % paths.len()];
                if sender.is_none() {
                    let tcp = tokio::net::TcpStream::connect(auth.as_str())
                        .await
                        .expect("connect");
                    let (s, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                            .await
                            .expect("handshake");
                    tokio::spawn(conn);
                    sender = Some(s);
                }
                let Some(s) = sender.as_mut() else { continue };
                let req = http::Request::get(path.as_str())
                    .header("host", auth.as_str())
                    .body(Empty::<bytes::Bytes>::new())
                    .expect("request");
                match s.send_request(req).await {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        let body = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        // blackbox_exporter: probe_success 1
                        if !good
                            || (path.starts_with("/probe")
                                && !body.windows(15).any(|w| w == b"probe_success 1"))
                        {
                            fails.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        fails.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        sender = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "drive requests={n} failed={} wall_s={:.3}",
        fails.load(std::sync::atomic::Ordering::Relaxed),
        t0.elapsed().as_secs_f64()
    );
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let arg = |i: usize| a.get(i).cloned().unwrap_or_default();
    let num = |i: usize| arg(i).parse::<usize>().expect("number");
    match arg(1).as_str() {
        "rate" => rt.block_on(rate(&arg(2), &arg(3), num(4), num(5))),
        "rss" => rt.block_on(rss(num(2), num(3) as u64, &arg(4), &arg(5))),
        "drive" => rt.block_on(drive(
            &arg(2),
            num(3),
            num(4),
            arg(5).parse().unwrap_or(0.0),
        )),
        "port" => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => println!("{}", a.port()),
            Err(e) => eprintln!("no free port: {e}"),
        },
        _ => eprintln!(
            "usage: bench rate TYPE TARGET N CONC | rss N SECONDS TCP URL | drive URL[,URL] N CONC [RATE]"
        ),
    }
}
