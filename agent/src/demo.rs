//! `owlet demo`: the whole product on loopback in one command.
//!
//! It creates a throwaway CA, starts a real SOC receiver (the `owlet-soc`
//! library: mTLS, SQLite sink) on a free loopback port, starts a real agent
//! (this binary, `owlet run`, as a child process) enrolled with an issued
//! certificate, and prints what the SOC stores as it arrives, until Ctrl-C or
//! `--duration`. Everything it writes stays in one directory (a temporary one
//! unless `--dir` is given). Nothing needs root; checks that do (ICMP without
//! the unprivileged ping socket) report themselves as such.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use owlet_soc::{enroll, query, serve};
use tokio::process::{Child, Command};

/// Heartbeat period of the demo agent (short, so the view is lively).
const DEMO_HEARTBEAT: &str = "5s";

pub async fn run(duration: Option<Duration>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let _temp;
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => {
            _temp = tempfile::Builder::new().prefix("owlet-demo-").tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    println!("owlet demo — working directory {}", dir.display());

    // 1. A CA and a SOC receiver on a free loopback port.
    let ca_dir = dir.join("soc");
    let soc_toml = enroll::init(
        &ca_dir,
        &["localhost".into(), "127.0.0.1".into()],
        "127.0.0.1:0",
    )
    .context("creating the demo CA")?;
    let soc_config = owlet_soc::config::load(&soc_toml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db_path = soc_config.sqlite_path().to_path_buf();
    let receiver = serve::Receiver::bind(soc_config).await?;
    let soc_addr = receiver.local_addr()?;
    let (stop_soc, soc_stopped) = tokio::sync::oneshot::channel::<()>();
    let soc = tokio::spawn(receiver.serve(async {
        let _ = soc_stopped.await;
    }));
    println!(
        "SOC receiver listening on {soc_addr} (mTLS, SQLite sink {})",
        db_path.display()
    );

    // 2. An enrolled agent, as a separate process.
    let agent_dir = dir.join("agent");
    let identity = owlet_tls::Identity::new("demo", "sensor-1")?;
    let options = enroll::AgentConfigOptions {
        soc_address: &soc_addr.to_string(),
        state_dir: &agent_dir.join("state"),
        socket: &agent_dir.join("owlet.sock"),
        status_interval: DEMO_HEARTBEAT,
    };
    let agent_toml = enroll::issue(&ca_dir, &identity, &agent_dir, &options)?;
    let web = start_web_server().await?;
    add_demo_checks(&agent_toml, soc_addr, web)?;
    let mut agent = start_agent(&agent_toml, &agent_dir.join("agent.log"))?;
    println!(
        "agent {identity} started (pid {}), log {}",
        agent.id().unwrap_or(0),
        agent_dir.join("agent.log").display()
    );
    println!(
        "operator view: owlet health --socket {}",
        agent_dir.join("owlet.sock").display()
    );
    println!("--- what the SOC stores, live (Ctrl-C to stop) ---");

    // 3. The SOC's view, live.
    let view = watch_soc(&db_path);
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let outcome = tokio::select! {
        r = view => r,
        () = stop => Ok(()),
        status = agent.wait() => Err(anyhow::anyhow!("the agent exited early ({status:?}); see {}", agent_dir.join("agent.log").display())),
    };

    stop_agent(&mut agent).await;
    let _ = stop_soc.send(());
    let _ = soc.await;
    summary(&db_path)?;
    outcome
}

/// Appends the demo's uptime checks: a ping of loopback (when this user may
/// ping), a TCP check of the SOC's port and a URL check of a local web server.
fn add_demo_checks(agent_toml: &Path, soc: SocketAddr, web: SocketAddr) -> anyhow::Result<()> {
    let mut checks = String::from("\n[probe]\nmax_concurrency = 8\n");
    let check = |id: &str, kind: &str, target: &str| {
        format!(
            "\n[[probe.check]]\nid = \"{id}\"\ntype = \"{kind}\"\ntarget = \"{target}\"\ninterval = \"5s\"\ntimeout = \"2s\"\n"
        )
    };
    if icmp_allowed() {
        checks += &check("demo-ping", "icmp", "127.0.0.1");
    } else {
        println!(
            "note: ICMP check skipped (needs root, CAP_NET_RAW or net.ipv4.ping_group_range for this group)"
        );
    }
    checks += &check("demo-soc-port", "tcp", &soc.to_string());
    checks += &check("demo-web", "http", &format!("http://{web}/"));
    let mut file = std::fs::OpenOptions::new().append(true).open(agent_toml)?;
    std::io::Write::write_all(&mut file, checks.as_bytes())?;
    Ok(())
}

/// Whether this process may send ICMP echo: root, or a group inside the
/// kernel's unprivileged ping range. (A binary given CAP_NET_RAW also may; the
/// demo does not look for that.)
fn icmp_allowed() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let id = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok())
    };
    if id("Uid:") == Some(0) {
        return true;
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    match (bounds.next(), bounds.next(), id("Gid:")) {
        (Some(lo), Some(hi), Some(gid)) => lo <= gid && gid <= hi,
        _ => false,
    }
}

/// A tiny HTTP/1.1 server on a free loopback port for the demo's URL check.
async fn start_web_server() -> anyhow::Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 8192];
                let mut len = 0;
                while len < request.len() && !request[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        stream.read(&mut request[len..]),
                    )
                    .await
                    {
                        Ok(Ok(n)) if n > 0 => len += n,
                        _ => return,
                    }
                }
                let body = "owlet demo web server\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

fn start_agent(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("cannot find the owlet executable")?;
    let log = std::fs::File::create(log)?;
    Command::new(exe)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the demo agent")
}

/// SIGTERM, then a few seconds for a clean stop, then SIGKILL.
async fn stop_agent(agent: &mut Child) {
    if let Some(pid) = agent.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(Duration::from_secs(5), agent.wait())
        .await
        .is_err()
    {
        let _ = agent.kill().await;
    }
}

/// Prints stored events as they arrive; returns only on a database error.
async fn watch_soc(db_path: &Path) -> anyhow::Result<()> {
    let db = query::open_read_only(db_path)?;
    let mut after = 0;
    loop {
        let events = query::events_after(&db, after, None, 500)?;
        for e in &events {
            println!("{}", query::text_line(e));
            after = e.row;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn summary(db_path: &Path) -> anyhow::Result<()> {
    let db = query::open_read_only(db_path)?;
    println!("--- summary ---");
    for a in query::agents(&db)? {
        println!(
            "agent {}/{} (owlet {}): acknowledged up to seq {}, state {}, clock offset {} ms",
            a.tenant, a.agent_id, a.version, a.acked_seq, a.state, a.clock_offset_ms
        );
    }
    println!("{} events stored at the SOC", query::event_count(&db)?);
    Ok(())
}
