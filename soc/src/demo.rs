//! `owlet-soc demo --agent-bin PATH`: the whole product on loopback in one
//! command (`owlet demo` execs it with its own path).
//!
//! It creates a throwaway CA, starts a real SOC receiver (this crate: mTLS,
//! SQLite sink) in this process on a free loopback port, enrols an agent and
//! starts it as a child process (`PATH run --config FILE`), and prints what
//! the SOC stores as it arrives, until Ctrl-C, SIGTERM or `--duration`.
//!
//! The agent runs four kinds of check against things the demo owns: a ping
//! of 127.0.0.1 (skipped, with a one-line note, when this user may not
//! ping), a TCP check of the SOC's port, a URL check of a tiny local web
//! server, and `demo-flaky`, a TCP check of a loopback port the demo opens,
//! closes once the check is UP, and reopens a few seconds after the SOC
//! stored the DOWN alert, so a newcomer sees an alert raised and cleared.
//! The agent also watches a small directory of the demo's, in which the
//! demo edits a firewall rules file twice (an editor-style save, then an
//! appended secret, shown redacted), and samples host health every 10 s;
//! as root it also captures loopback traffic (flows, top talkers).
//! The portal runs too ([`crate::demo_portal`]): its URL and two demo logins
//! are printed first.
//!
//! Guarantees: everything it writes stays in one directory (a temporary one
//! removed at the end unless `--dir` is given); nothing needs root; when
//! stdout's reader goes away (`owlet-soc demo ... | head`) it stops the agent
//! and the receiver and exits 0 without another word; the agent child never
//! outlives the demo (SIGTERM, then SIGKILL; `kill_on_drop` as a backstop).
//! The view hides internals (sequence numbers, the SOC's own timings).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use owlet_proto::v1::{Event, Severity, State, event::Kind};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::demo_edits::Edits;
use crate::demo_portal::DemoPortal;
use crate::{enroll, query, serve};

/// Heartbeat period of the demo agent (short, so the view is lively).
const DEMO_HEARTBEAT: &str = "5s";
/// Id of the check that goes DOWN and comes back.
const FLAKY: &str = "demo-flaky";
/// How long the flaky port stays closed after the SOC stored the alert.
const CLOSED_AFTER_ALERT: Duration = Duration::from_secs(3);
/// How often the SOC's database is read for new events.
const POLL: Duration = Duration::from_millis(300);

/// Why the demo stopped.
enum Stop {
    /// --duration elapsed, or Ctrl-C / SIGTERM.
    Asked,
    /// stdout's reader went away.
    ClosedPipe,
}

/// stdout that notices a closed pipe instead of panicking like `println!`.
struct Screen(std::io::Stdout);

impl Screen {
    /// `Ok(false)` once the reader went away.
    fn line(&mut self, text: impl std::fmt::Display) -> std::io::Result<bool> {
        let mut out = self.0.lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Runs the demo; the exit code on success.
pub async fn run(
    agent_bin: &Path,
    duration: Option<Duration>,
    dir: Option<PathBuf>,
) -> anyhow::Result<i32> {
    anyhow::ensure!(
        agent_bin.is_file(),
        "--agent-bin {}: no such file (build the agent with `cargo build -p owlet-agent`, or give the path of `owlet`)",
        agent_bin.display()
    );
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
    let mut screen = Screen(std::io::stdout());
    match demo(&mut screen, agent_bin, duration, &dir).await? {
        Stop::ClosedPipe => Ok(0),
        Stop::Asked => {
            summary(&mut screen, &dir.join("soc").join("soc.db"))?;
            Ok(0)
        }
    }
}

/// Everything between setting up and the summary.
async fn demo(
    screen: &mut Screen,
    agent_bin: &Path,
    duration: Option<Duration>,
    dir: &Path,
) -> anyhow::Result<Stop> {
    macro_rules! say {
        ($($arg:tt)*) => {
            if !screen.line(format_args!($($arg)*))? {
                return Ok(Stop::ClosedPipe);
            }
        };
    }
    say!("owlet demo: working directory {}", dir.display());

    // 1. A CA and a SOC receiver on a free loopback port.
    let ca_dir = dir.join("soc");
    let soc_toml = enroll::init(
        &ca_dir,
        &["localhost".into(), "127.0.0.1".into()],
        "127.0.0.1:0",
    )
    .context("creating the demo CA (with --dir, give a new or empty directory)")?;
    let soc_config = crate::config::load(&soc_toml).map_err(|e| anyhow::anyhow!("{e}"))?;
    let db_path = soc_config.sqlite_path()?.to_path_buf();
    let portal_config = soc_config.clone();
    let receiver = serve::Receiver::bind(soc_config).await?;
    let soc_addr = receiver.local_addr()?;
    let (stop_soc, soc_stopped) = tokio::sync::oneshot::channel::<()>();
    let soc = tokio::spawn(receiver.serve(async {
        let _ = soc_stopped.await;
    }));
    let soc = SocTask {
        stop: Some(stop_soc),
        task: soc,
    };
    say!(
        "SOC receiver on {soc_addr} (mTLS; stores into {})",
        db_path.display()
    );
    let portal = DemoPortal::start(&portal_config, "demo")
        .await
        .context("starting the demo's portal")?;
    for line in portal.lines(&ca_dir.join("ca.pem")) {
        say!("{line}");
    }

    // 2. What the checks look at, and an enrolled agent as a child process.
    let web = start_web_server().await?;
    let flaky = Flaky::open().await?;
    let agent_dir = dir.join("agent");
    let identity = owlet_tls::Identity::new("demo", "sensor-1")?;
    let options = enroll::AgentConfigOptions {
        written_by: enroll::ISSUE,
        soc_address: &soc_addr.to_string(),
        server_name: None,
        hw_profile: enroll::DEFAULT_HW_PROFILE,
        state_dir: &agent_dir.join("state"),
        socket: &agent_dir.join("owlet.sock"),
        status_interval: DEMO_HEARTBEAT,
    };
    let agent_toml = enroll::issue(&ca_dir, &identity, &agent_dir, &options)?.config;
    let icmp = icmp_allowed();
    if !icmp {
        say!(
            "note: ping check skipped (this user may not ping: needs root, CAP_NET_RAW or net.ipv4.ping_group_range)"
        );
    }
    // Capture needs CAP_NET_RAW: root here.
    let capture = is_root();
    if !capture {
        say!(
            "note: packet capture skipped (it needs root or CAP_NET_RAW; as root the demo shows loopback flows and top talkers)"
        );
    }
    let mut edits = Edits::prepare(dir)?;
    add_demo_checks(&agent_toml, icmp, capture, soc_addr, web, flaky.addr)?;
    add_demo_watch_and_host(&agent_toml, edits.watched_dir())?;
    let log = agent_dir.join("agent.log");
    let mut agent = start_agent(agent_bin, &agent_toml, &log)?;
    edits.agent_started();
    say!(
        "agent {identity} started (pid {}), log {}",
        agent.id().unwrap_or(0),
        log.display()
    );
    say!(
        "operator view: {} health --socket {}",
        agent_bin.display(),
        agent_dir.join("owlet.sock").display()
    );
    say!(
        "{FLAKY} checks port {}: the demo closes it once the check is UP and reopens it after the alert",
        flaky.addr.port()
    );
    say!(
        "the agent watches {} (the demo edits firewall.rules in it) and samples host health every 10 s",
        edits.watched_dir().display()
    );
    say!("--- what the SOC stores, live (times UTC; Ctrl-C to stop) ---");

    // 3. The SOC's view, live, driving the flaky port.
    let stop = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => serve::stop_signal().await,
        }
    };
    let outcome = tokio::select! {
        r = watch(screen, &db_path, flaky, edits) => r,
        () = stop => Ok(Stop::Asked),
        status = agent.wait() => Err(anyhow::anyhow!(
            "the agent exited early ({}); the end of its log:\n{}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            tail(&log, 20)
        )),
    };
    stop_agent(&mut agent).await;
    portal.stop().await;
    soc.stop().await;
    outcome
}

/// The in-process receiver and how to stop it.
struct SocTask {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl SocTask {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The loopback port of `demo-flaky`: open, closed, open again.
struct Flaky {
    addr: SocketAddr,
    /// The accept loop while the port is open.
    server: Option<JoinHandle<()>>,
    phase: FlakyPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlakyPhase {
    /// Open; closes once the check is UP.
    Open,
    /// Closed; waiting for the SOC to store the DOWN alert.
    Closed,
    /// Closed, the alert stored; reopens at the deadline.
    Alerted(tokio::time::Instant),
    /// Open again; waiting for the alert to clear.
    Reopened,
    /// The alert cleared: the check's further results are not shown (one a
    /// second would drown the rest).
    Done,
}

impl Flaky {
    async fn open() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            addr,
            server: Some(tokio::spawn(accept_and_drop(listener))),
            phase: FlakyPhase::Open,
        })
    }

    /// Reacts to one stored event; returns a line to print when the demo
    /// did something.
    fn on_event(&mut self, event: &Event) -> Option<String> {
        match (&event.kind, self.phase) {
            (Some(Kind::CheckResult(r)), FlakyPhase::Open)
                if r.check_id == FLAKY && r.state() == State::Up =>
            {
                if let Some(server) = self.server.take() {
                    server.abort();
                }
                self.phase = FlakyPhase::Closed;
                Some(format!(
                    "demo: port {} closed, {FLAKY} will go DOWN",
                    self.addr.port()
                ))
            }
            (Some(Kind::Alert(a)), FlakyPhase::Closed)
                if a.subject == FLAKY && a.new_state() == State::Down =>
            {
                self.phase = FlakyPhase::Alerted(tokio::time::Instant::now() + CLOSED_AFTER_ALERT);
                None
            }
            (Some(Kind::Alert(a)), FlakyPhase::Reopened)
                if a.subject == FLAKY && a.new_state() == State::Up =>
            {
                self.phase = FlakyPhase::Done;
                Some(format!(
                    "demo: alert raised and cleared; {FLAKY}'s further results are not shown"
                ))
            }
            _ => None,
        }
    }

    /// Whether the view shows this event.
    fn shows(&self, event: &Event) -> bool {
        let flaky_result = matches!(&event.kind, Some(Kind::CheckResult(r)) if r.check_id == FLAKY);
        !(flaky_result && self.phase == FlakyPhase::Done)
    }

    /// Reopens the port once its time has come.
    async fn tick(&mut self) -> anyhow::Result<Option<String>> {
        let FlakyPhase::Alerted(at) = self.phase else {
            return Ok(None);
        };
        if tokio::time::Instant::now() < at {
            return Ok(None);
        }
        self.phase = FlakyPhase::Reopened;
        match TcpListener::bind(self.addr).await {
            Ok(listener) => {
                self.server = Some(tokio::spawn(accept_and_drop(listener)));
                Ok(Some(format!(
                    "demo: port {} open again, the alert clears after 2 good checks",
                    self.addr.port()
                )))
            }
            Err(e) => Ok(Some(format!(
                "demo: cannot reopen port {} ({e}); {FLAKY} stays DOWN",
                self.addr.port()
            ))),
        }
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Accepts connections and closes them: enough for a TCP check.
async fn accept_and_drop(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        drop(stream);
    }
}

/// Prints stored events as they arrive and drives the flaky port; returns
/// on a closed pipe or a database error.
async fn watch(
    screen: &mut Screen,
    db_path: &Path,
    mut flaky: Flaky,
    mut edits: Edits,
) -> anyhow::Result<Stop> {
    let store = owlet_soc_store::Store::open(&crate::sink::store_root(db_path))?;
    // Each tenant's log and the last id shown (tenants appear with their
    // first event).
    let mut cursors: std::collections::BTreeMap<String, i64> = Default::default();
    loop {
        let mut events = Vec::new();
        for tenant in store.tenants()? {
            let after = cursors.entry(tenant.clone()).or_insert(0);
            let read = store.reader(&tenant)?.read_after(*after, 500)?;
            if let Some(last) = read.last() {
                *after = last.id;
            }
            events.extend(read);
        }
        for stored in &events {
            let Some(event) = &stored.event else {
                continue;
            };
            if flaky.shows(event) && !screen.line(demo_line(event))? {
                return Ok(Stop::ClosedPipe);
            }
            if let Some(note) = flaky.on_event(event)
                && !screen.line(note)?
            {
                return Ok(Stop::ClosedPipe);
            }
        }
        if let Some(note) = flaky.tick().await?
            && !screen.line(note)?
        {
            return Ok(Stop::ClosedPipe);
        }
        if let Some(note) = edits.tick()
            && !screen.line(note)?
        {
            return Ok(Stop::ClosedPipe);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn state_word(state: State) -> &'static str {
    match state {
        State::Up => "UP",
        State::Down => "DOWN",
        State::Degraded => "DEGRADED",
        State::Unknown | State::Unspecified => "UNKNOWN",
    }
}

/// One line for a newcomer: time, what, the essentials. No sequence
/// numbers; a check's timing only as the check itself reported it.
pub fn demo_line(event: &Event) -> String {
    let time = event
        .time
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp_micros(owlet_proto::timestamp_micros(t)))
        .map_or_else(
            || "--:--:--".to_string(),
            |t| t.format("%H:%M:%S").to_string(),
        );
    let what = match &event.kind {
        Some(Kind::CheckResult(c)) => format!(
            "check    {:<14} {:<4} {:<8} {}",
            c.check_id,
            format!("{:?}", c.check_type()).to_lowercase(),
            state_word(c.result()),
            c.message
        ),
        Some(Kind::Alert(a)) => {
            let cleared = matches!(a.new_state(), State::Up)
                && matches!(a.old_state(), State::Down | State::Degraded);
            let why = a
                .last_result
                .as_ref()
                .map_or(a.message.as_str(), |r| r.message.as_str());
            if cleared {
                format!(
                    "CLEARED  {} is {} again (was {})",
                    a.subject,
                    state_word(a.new_state()),
                    state_word(a.old_state())
                )
            } else if a.source != "check" {
                // Not an up/down state change (file watching ready, a host
                // threshold, a capture signature): what it says, how urgent.
                let label = match a.severity() {
                    Severity::Warning | Severity::Critical => "ALERT   ",
                    _ => "NOTICE  ",
                };
                format!("{label} {}: {} [{}]", a.subject, a.message, a.name)
            } else {
                format!(
                    "ALERT    {} is {}: {why} [{}]",
                    a.subject,
                    state_word(a.new_state()),
                    a.name
                )
            }
        }
        Some(Kind::AgentStatus(s)) => format!(
            "status   agent up {}s, {} events recorded, {} waiting to be sent, {} dropped, rss {} MiB",
            s.uptime_seconds,
            s.events_accepted,
            s.spool_events,
            s.events_dropped,
            s.rss_bytes / (1024 * 1024)
        ),
        Some(Kind::DataLoss(d)) => {
            format!("LOSS     {} events lost ({:?})", d.events_lost, d.reason())
        }
        Some(Kind::FlowRecord(f)) => format!("flow     {}", crate::query::flow_line(f)),
        Some(Kind::CaptureStats(c)) => {
            format!("capture  {}", crate::query::capture_line(c))
        }
        Some(Kind::FileChange(f)) => format!("file     {}", crate::query::file_change_line(f)),
        Some(Kind::HostMetrics(h)) => format!("host     {}", crate::query::host_line(h)),
        _ => format!("event    {}", event.kind_name()),
    };
    format!("{time}  {what}")
}

/// Appends the demo's uptime checks to the agent's config.
fn add_demo_checks(
    agent_toml: &Path,
    icmp: bool,
    capture: bool,
    soc: SocketAddr,
    web: SocketAddr,
    flaky: SocketAddr,
) -> anyhow::Result<()> {
    let mut checks = String::from("\n[probe]\nmax_concurrency = 8\n");
    let check = |id: &str, kind: &str, target: &str, extra: &str| {
        format!(
            "\n[[probe.check]]\nid = \"{id}\"\ntype = \"{kind}\"\ntarget = \"{target}\"\n{extra}"
        )
    };
    let steady = "interval = \"5s\"\ntimeout = \"2s\"\n";
    if icmp {
        checks += &check("demo-ping", "icmp", "127.0.0.1", steady);
    }
    checks += &check("demo-soc-port", "tcp", &soc.to_string(), steady);
    checks += &check("demo-web", "http", &format!("http://{web}/"), steady);
    checks += &check(
        FLAKY,
        "tcp",
        &flaky.to_string(),
        "interval = \"1s\"\ntimeout = \"1s\"\ndown_after = 2\nup_after = 2\n",
    );
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(agent_toml)
        .with_context(|| format!("cannot append the demo checks to {}", agent_toml.display()))?;
    if capture {
        // Packet metadata from the demo's own loopback traffic (the checks):
        // flows and a top-talkers summary every 10 s. The agent's connection
        // to this SOC is left out by default.
        checks += "\n[capture]\ninterfaces = [\"lo\"]\nworkers = 1\nidle_timeout = \"2s\"\nsummary_interval = \"10s\"\n";
    }
    file.write_all(checks.as_bytes())?;
    Ok(())
}

/// Appends the watched directory and a lively host-health interval to the
/// agent's config.
fn add_demo_watch_and_host(agent_toml: &Path, watched: &Path) -> anyhow::Result<()> {
    let section = format!(
        "\n[host]\ninterval = \"10s\"\n\n[[fim.watch]]\npath = {}\ntag = \"demo-firewall\"\nseverity = \"critical\"\n",
        toml_string(&watched.display().to_string())
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(agent_toml)
        .and_then(|mut file| file.write_all(section.as_bytes()))
        .with_context(|| format!("cannot append the demo's watch to {}", agent_toml.display()))
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The real uid or gid of this process (`Uid:` / `Gid:` of /proc/self/status).
fn own_id(field: &str) -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok())
}

/// Whether this process runs as root (the demo's capture needs CAP_NET_RAW).
fn is_root() -> bool {
    own_id("Uid:") == Some(0)
}

/// Whether this process may send ICMP echo: root, or a group inside the
/// kernel's unprivileged ping range. (A binary given CAP_NET_RAW also may; the
/// demo does not look for that.)
fn icmp_allowed() -> bool {
    if is_root() {
        return true;
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    match (bounds.next(), bounds.next(), own_id("Gid:")) {
        (Some(lo), Some(hi), Some(gid)) => lo <= gid && gid <= hi,
        _ => false,
    }
}

/// A tiny HTTP/1.1 server on a free loopback port for the demo's URL check.
async fn start_web_server() -> anyhow::Result<SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await?;
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

fn start_agent(agent_bin: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)
        .with_context(|| format!("cannot create the agent log {}", log.display()))?;
    Command::new(agent_bin)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start the demo agent {}", agent_bin.display()))
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

fn summary(screen: &mut Screen, db_path: &Path) -> anyhow::Result<()> {
    let db = query::open_read_only(db_path)?;
    let store = owlet_soc_store::Store::open(&crate::sink::store_root(db_path))?;
    let mut lines = vec!["--- summary ---".to_string()];
    let agents = query::agents(&db, &store)?;
    let stored: u64 = agents.iter().map(|a| a.events_stored).sum();
    for a in agents {
        lines.push(format!(
            "agent {}/{} (owlet {}): clock offset {} ms, duplicates dropped {}",
            a.tenant, a.agent_id, a.version, a.clock_offset_ms, a.duplicates_dropped
        ));
    }
    lines.push(format!("{stored} events stored at the SOC"));
    for line in lines {
        if !screen.line(line)? {
            break;
        }
    }
    Ok(())
}
