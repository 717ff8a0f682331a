//! Harness for owlet's end-to-end tests: it starts the real `owlet`,
//! `owlet-loadgen` and `owlet-soc` binaries and talks to them only through
//! their real interfaces (command line, config files, the agent's control
//! socket, the SOC's SQLite file). A [`Relay`] between agent and SOC can
//! delay and cut a live connection, to make resends happen on purpose.
//!
//! Every test gets its own temporary directory and its own loopback port;
//! every process is owned by a [`Proc`] guard that SIGKILLs it on drop, so a
//! failing test leaves nothing running. When a test panics, each guard prints
//! the tail of its process's log to help diagnosis.
//!
//! Waits are bounded and polled every 100 ms ([`wait_until`]) with generous
//! deadlines: the machines are shared and noisy, so no test asserts timing.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use owlet_proto::v1::{Alert, CheckResult, Event, event::Kind};
use prost::Message;

/// Generous default deadline for "eventually" conditions.
pub const DEADLINE: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ binaries

/// Path of a workspace binary (`owlet`, `owlet-soc`) in the target directory
/// this test executable was built into. Panics with a clear message if the
/// binary has not been built.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/TEST-HASH -> target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable has no target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "binary {} not found: run cargo build --workspace --bins first (or cargo build -p owlet-agent -p owlet-soc)",
        path.display()
    );
    path
}

pub fn owlet() -> Command {
    Command::new(bin("owlet"))
}

pub fn owlet_soc() -> Command {
    Command::new(bin("owlet-soc"))
}

/// The bench / test load generator: the agent with a synthetic producer.
pub fn owlet_loadgen() -> Command {
    Command::new(bin("owlet-loadgen"))
}

/// Runs a command to completion, panicking if it cannot be started.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

// ------------------------------------------------------------------- waiting

/// Polls `cond` every 100 ms until it holds; panics naming `what` after
/// `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

// ----------------------------------------------------------------- processes

/// A running child process, SIGKILLed on drop. Its stdout and stderr go to
/// files next to its config, readable at any time with [`Proc::log`].
pub struct Proc {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `cmd` with output captured into `log_dir/NAME.{out,err}`
    /// (appending, so restarts keep earlier runs' logs).
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let stdout = log_dir.join(format!("{name}.out"));
        let stderr = log_dir.join(format!("{name}.err"));
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        cmd.stdin(Stdio::null())
            .stdout(open(&stdout))
            .stderr(open(&stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process already reaped").id()
    }

    /// Everything the process wrote to stderr so far (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Everything the process wrote to stdout so far (all runs).
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let mut status = None;
        let name = self.name.clone();
        wait_until(&format!("{name} to exit after SIGTERM"), deadline, || {
            status = self.try_wait();
            status.is_some()
        });
        self.child = None;
        status.unwrap()
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "----- last log lines of {} ({}) -----\n{}",
                self.name,
                self.stderr.display(),
                self.tail(40)
            );
        }
    }
}

// ----------------------------------------------------------------------- SOC

/// A SOC receiver set up by `owlet-soc ca init` in its own temp dir: CA,
/// server certificate, `soc.toml` on a free loopback port and SQLite file.
pub struct Soc {
    // Declared first so it is dropped (killed, log printed) before the
    // temporary directory is removed.
    proc: Option<Proc>,
    pub tmp: tempfile::TempDir,
    pub ca_dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub db: PathBuf,
}

impl Soc {
    /// `owlet-soc ca init` with a free port; not started.
    pub fn init() -> Soc {
        let tmp = tempfile::Builder::new()
            .prefix("owlet-e2e")
            .tempdir()
            .unwrap();
        let ca_dir = tmp.path().join("ca");
        let port = free_port();
        run_ok(
            owlet_soc()
                .args(["ca", "init", "--dir"])
                .arg(&ca_dir)
                .args([
                    "--soc-name",
                    "localhost",
                    "--soc-name",
                    "127.0.0.1",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                ]),
        );
        let config = ca_dir.join("soc.toml");
        assert!(
            config.is_file(),
            "ca init did not write {}",
            config.display()
        );
        let db = ca_dir.join("soc.db");
        Soc {
            tmp,
            ca_dir,
            config,
            port,
            db,
            proc: None,
        }
    }

    /// Sets the `[liveness]` section of `soc.toml`.
    pub fn set_liveness(&self, silent_after: &str, check_every: &str) {
        let mut table: toml::Table = fs::read_to_string(&self.config).unwrap().parse().unwrap();
        let mut liveness = toml::Table::new();
        liveness.insert("silent_after".into(), silent_after.into());
        liveness.insert("check_every".into(), check_every.into());
        table.insert("liveness".into(), liveness.into());
        fs::write(&self.config, toml::to_string(&table).unwrap()).unwrap();
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts `owlet-soc serve` and waits until it logs that it serves.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "SOC already running");
        let serving_before = self.log().matches(" serving").count();
        let mut cmd = owlet_soc();
        cmd.args(["serve", "--config"]).arg(&self.config);
        // Plain logs (no colours) so tests can search them.
        cmd.env("NO_COLOR", "1");
        let mut proc = Proc::spawn("owlet-soc", cmd, self.tmp.path());
        wait_until("owlet-soc to serve", DEADLINE, || {
            if let Some(status) = proc.try_wait() {
                panic!("owlet-soc exited early with {status}:\n{}", proc.log());
            }
            self.log().matches(" serving").count() > serving_before
        });
        self.proc = Some(proc);
    }

    /// Sends `sig` to the running SOC (SIGSTOP / SIGCONT to freeze it).
    pub fn signal(&self, sig: Signal) {
        self.proc.as_ref().expect("SOC not running").signal(sig);
    }

    /// SIGKILL, no chance to finish anything (the database stays as the
    /// crash left it).
    pub fn kill9(&mut self) {
        self.proc.take().expect("SOC not running").kill9();
    }

    /// SIGTERM and wait (60 s) for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.proc
            .take()
            .expect("SOC not running")
            .terminate(DEADLINE)
    }

    /// SIGTERM; if the SOC has not exited after `grace`, SIGKILL. Returns
    /// the exit status, or `None` if it had to be killed.
    pub fn stop_or_kill(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut proc = self.proc.take().expect("SOC not running");
        proc.signal(Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(status) = proc.try_wait() {
                return Some(status);
            }
            sleep(Duration::from_millis(100));
        }
        proc.kill9();
        None
    }

    /// The SOC's stderr (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.tmp.path().join("owlet-soc.err")).unwrap_or_default()
    }

    /// Connections the SOC refused before gRPC (TLS handshake or
    /// certificate identity), counted in its log (all runs).
    pub fn refusals(&self) -> usize {
        self.log().matches("connection refused").count()
    }

    /// Issues an agent certificate and `owlet.toml` with `owlet-soc ca issue`
    /// into a fresh directory, rewritten for the test (state dir, control
    /// socket, heartbeat period in the temp dir).
    pub fn issue(&self, tenant: &str, agent: &str) -> Agent {
        let dir = self.tmp.path().join(format!("agent-{tenant}-{agent}"));
        run_ok(
            owlet_soc()
                .args(["ca", "issue", "--dir"])
                .arg(&self.ca_dir)
                .args(["--tenant", tenant, "--agent", agent, "--out"])
                .arg(&dir)
                .args(["--soc", &self.address()]),
        );
        Agent::from_issued(dir)
    }

    /// `owlet-soc agents --json`: one object per agent.
    pub fn agents_json(&self) -> Vec<serde_json::Value> {
        let out = run_ok(
            owlet_soc()
                .args(["agents", "--json", "--config"])
                .arg(&self.config),
        );
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("owlet-soc agents --json printed no JSON array ({e}): {out}")
        })
    }

    /// `duplicates_dropped` of one agent from `owlet-soc agents --json`
    /// (0 while the agent is unknown).
    pub fn duplicates_dropped(&self, tenant: &str, agent: &str) -> u64 {
        let Some(row) = self
            .agents_json()
            .into_iter()
            .find(|a| a["tenant"] == tenant && a["agent_id"] == agent)
        else {
            return 0;
        };
        row["duplicates_dropped"].as_u64().unwrap_or_else(|| {
            panic!("owlet-soc agents --json has no duplicates_dropped count: {row}")
        })
    }

    /// Read access to the SOC's database.
    pub fn db(&self) -> Db {
        Db {
            path: self.db.clone(),
        }
    }
}

// --------------------------------------------------------------------- agent

/// An agent's directory (certificate, key, `owlet.toml`, state) and, when
/// started, its process.
pub struct Agent {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// The config written on [`Agent::start`]; edit freely before.
    pub config: toml::Table,
    /// `Some((rate, total))`: [`Agent::start`] runs `owlet-loadgen`.
    load: Option<(u64, u64)>,
    proc: Option<Proc>,
}

impl Agent {
    fn from_issued(dir: PathBuf) -> Agent {
        let config_path = dir.join("owlet.toml");
        let mut config: toml::Table = fs::read_to_string(&config_path).unwrap().parse().unwrap();
        let state_dir = dir.join("state");
        let socket = dir.join("owlet.sock");
        config["agent"]
            .as_table_mut()
            .unwrap()
            .insert("state_dir".into(), state_dir.display().to_string().into());
        config["control"]
            .as_table_mut()
            .unwrap()
            .insert("socket".into(), socket.display().to_string().into());
        config["status"]
            .as_table_mut()
            .unwrap()
            .insert("interval".into(), "200ms".into());
        // Reconnect quickly in tests (the SOC restarts often).
        config["soc"]
            .as_table_mut()
            .unwrap()
            .insert("backoff_max".into(), "1s".into());
        let mut log = toml::Table::new();
        log.insert("format".into(), "json".into());
        config.insert("log".into(), log.into());
        Agent {
            dir,
            config_path,
            state_dir,
            socket,
            config,
            load: None,
            proc: None,
        }
    }

    /// Sets `[section] key = value` in the config (creating the section).
    pub fn set(&mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        let table = self
            .config
            .entry(section.to_string())
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .unwrap();
        table.insert(key.to_string(), value.into());
        self
    }

    /// Removes `[section] key` from the config.
    pub fn unset(&mut self, section: &str, key: &str) -> &mut Self {
        if let Some(t) = self.config.get_mut(section).and_then(|t| t.as_table_mut()) {
            t.remove(key);
        }
        self
    }

    /// Makes [`Agent::start`] run the same agent with the synthetic
    /// producer: `owlet-loadgen run --config FILE --rate RATE --total TOTAL`
    /// (`total` 0: no end). Check results with check id "synthetic" and a
    /// counter from 0 as message; it logs "synthetic load finished".
    pub fn synthetic(&mut self, rate: u64, total: u64) -> &mut Self {
        self.load = Some((rate, total));
        self
    }

    pub fn write_config(&self) {
        fs::write(&self.config_path, toml::to_string(&self.config).unwrap()).unwrap();
    }

    /// Writes the config and starts `owlet run`, or `owlet-loadgen run`
    /// after [`Agent::synthetic`]. Both log to `owlet.{out,err}`.
    pub fn start(&mut self) {
        assert!(self.proc.is_none(), "agent already running");
        self.write_config();
        let mut cmd = if self.load.is_some() {
            owlet_loadgen()
        } else {
            owlet()
        };
        cmd.args(["run", "--config"]).arg(&self.config_path);
        if let Some((rate, total)) = self.load {
            cmd.args(["--rate", &rate.to_string(), "--total", &total.to_string()]);
        }
        self.proc = Some(Proc::spawn("owlet", cmd, &self.dir));
    }

    /// Panics with the agent's log if it has exited.
    pub fn assert_running(&mut self) {
        let status = self.proc.as_mut().and_then(Proc::try_wait);
        if let Some(status) = status {
            panic!("the agent exited with {status}:\n{}", self.log());
        }
    }

    pub fn running(&mut self) -> bool {
        match &mut self.proc {
            Some(p) => p.try_wait().is_none(),
            None => false,
        }
    }

    /// SIGKILL, no chance to drain.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Waits (up to `deadline`) until the `[synthetic]` producer has produced
    /// its total.
    pub fn wait_synthetic_finished(&self, deadline: Duration) {
        wait_until("the synthetic load to finish", deadline, || {
            self.log().contains("synthetic load finished")
        });
    }

    /// Waits until the SOC acknowledged everything spooled, gives a late
    /// duplicate a second to show up at the SOC, then stops the agent and
    /// asserts it exited 0.
    pub fn drain_and_stop(&mut self, deadline: Duration) {
        wait_until("the agent's spool to be empty", deadline, || {
            self.spool_events() == Some(0)
        });
        sleep(Duration::from_secs(1));
        assert!(self.stop().success(), "agent did not exit 0 after SIGTERM");
    }

    /// SIGTERM and wait for exit (drains first).
    pub fn stop(&mut self) -> ExitStatus {
        self.proc
            .take()
            .expect("agent not running")
            .terminate(Duration::from_secs(90))
    }

    /// The agent's stderr log (all runs).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("owlet.err")).unwrap_or_default()
    }

    /// `owlet health --json`; `None` while the agent cannot be reached.
    pub fn health(&self) -> Option<serde_json::Value> {
        let out = output(
            owlet()
                .args(["health", "--json", "--socket"])
                .arg(&self.socket),
        );
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until `owlet health` shows the uplink problem `class`; returns
    /// that health JSON. On timeout, panics with the last health and the
    /// agent's log.
    pub fn health_with_problem(&self, class: &str) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let start = Instant::now();
        loop {
            if let Some(health) = self.health() {
                last = health;
                if last["metrics"]["uplink_problem"]["class"] == class {
                    return last;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "health never showed the uplink problem {class:?}; last health: {last}\nagent log:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(200));
        }
    }

    /// `spool_events` from `owlet health --json`.
    pub fn spool_events(&self) -> Option<u64> {
        self.health().and_then(|h| h["spool_events"].as_u64())
    }

    /// `spool_last_seq` from `owlet health --json`: the highest sequence
    /// number the spool has accepted. `None` while the agent cannot be
    /// reached.
    pub fn spool_last_seq(&self) -> Option<u64> {
        let health = self.health()?;
        Some(
            health["spool_last_seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("owlet health --json has no spool_last_seq: {health}")),
        )
    }

    /// `owlet reload --socket SOCKET`, run to completion.
    pub fn reload(&self) -> Output {
        output(
            owlet()
                .args(["reload", "--json", "--socket"])
                .arg(&self.socket),
        )
    }

    /// Copies another certificate and key over this agent's (keeping 0600)
    /// and drops the config's `agent.tenant` / `agent.id` claims, which
    /// named the old certificate's identity (the agent refuses to start
    /// with claims its certificate contradicts).
    pub fn replace_credentials(&mut self, cert: &Path, key: &Path) {
        self.unset("agent", "tenant").unset("agent", "id");
        fs::copy(cert, self.dir.join("agent.pem")).unwrap();
        fs::copy(key, self.dir.join("agent.key")).unwrap();
        fs::set_permissions(
            self.dir.join("agent.key"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() && self.running() {
            eprintln!("----- agent health at failure -----\n{:?}", self.health());
        }
    }
}

impl Drop for Soc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- SOC database at failure: events by agent and kind -----\n{:?}",
                self.db().summary()
            );
        }
    }
}

// --------------------------------------------------------------------- relay

/// A TCP relay on a free loopback port that forwards every connection to a
/// target, byte for byte (TLS passes through untouched: the agent still
/// talks to the SOC). A test makes it misbehave like a network, one
/// deterministic step at a time:
/// - [`Relay::hold`]: what the agent sends on the connections open now is
///   kept here instead of delivered (the SOC's bytes still flow back);
/// - [`Relay::cut_agent_side`]: those connections are closed towards the
///   agent only, so it reconnects, while the SOC's end stays open and idle;
/// - [`Relay::release`]: the held bytes reach the SOC, late, on the old
///   connection; or [`Relay::sever`]: they never do, both sides are closed.
///
/// Connections opened later are forwarded normally. Dropping the relay
/// closes every connection.
pub struct Relay {
    pub port: u16,
    shared: Arc<RelayShared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct RelayShared {
    stop: AtomicBool,
    links: Mutex<Vec<Arc<Link>>>,
}

/// One relayed connection.
struct Link {
    agent: TcpStream,
    soc: TcpStream,
    /// `Some`: agent-to-SOC bytes are held here instead of delivered.
    held: Mutex<Option<Vec<u8>>>,
    /// The agent's side ended (or was cut).
    agent_gone: AtomicBool,
}

impl Relay {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: &str) -> Relay {
        let target: SocketAddr = target.parse().expect("relay target address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(RelayShared::default());
        let accept = {
            let shared = shared.clone();
            std::thread::spawn(move || relay_accept(listener, target, &shared))
        };
        Relay {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn live_links(&self) -> Vec<Arc<Link>> {
        let links = self.shared.links.lock().unwrap();
        links
            .iter()
            .filter(|l| !l.agent_gone.load(Ordering::SeqCst))
            .cloned()
            .collect()
    }

    /// Starts holding the agent's bytes on every connection open now;
    /// returns how many connections that is.
    pub fn hold(&self) -> usize {
        let links = self.live_links();
        for link in &links {
            link.held.lock().unwrap().get_or_insert_with(Vec::new);
        }
        links.len()
    }

    /// Bytes held so far.
    pub fn held_bytes(&self) -> usize {
        let links = self.shared.links.lock().unwrap();
        links
            .iter()
            .map(|l| l.held.lock().unwrap().as_ref().map_or(0, Vec::len))
            .sum()
    }

    /// Closes the held connections towards the agent (it sees the
    /// connection end); their SOC side stays open.
    pub fn cut_agent_side(&self) {
        let links = self.shared.links.lock().unwrap();
        for link in links.iter().filter(|l| l.held.lock().unwrap().is_some()) {
            link.agent_gone.store(true, Ordering::SeqCst);
            let _ = link.agent.shutdown(Shutdown::Both);
        }
    }

    /// Closes the held connections on both sides; the held bytes are
    /// discarded (the SOC never sees them).
    pub fn sever(&self) {
        let links = self.shared.links.lock().unwrap();
        for link in links.iter() {
            let mut held = link.held.lock().unwrap();
            if let Some(bytes) = held.as_mut() {
                bytes.clear();
                link.agent_gone.store(true, Ordering::SeqCst);
                let _ = link.agent.shutdown(Shutdown::Both);
                let _ = link.soc.shutdown(Shutdown::Both);
            }
        }
    }

    /// Delivers the held bytes to the SOC (the connections stay open and
    /// keep holding anything else); returns how many bytes.
    pub fn release(&self) -> usize {
        let links = self.shared.links.lock().unwrap();
        let mut released = 0;
        for link in links.iter() {
            let mut held = link.held.lock().unwrap();
            if let Some(bytes) = held.as_mut() {
                // A SOC that already closed this connection gets nothing.
                if (&link.soc).write_all(bytes).is_ok() {
                    released += bytes.len();
                }
                bytes.clear();
            }
        }
        released
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for link in self.shared.links.lock().unwrap().iter() {
            let _ = link.agent.shutdown(Shutdown::Both);
            let _ = link.soc.shutdown(Shutdown::Both);
        }
    }
}

fn relay_accept(listener: TcpListener, target: SocketAddr, shared: &RelayShared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let agent = match listener.accept() {
            Ok((agent, _)) => agent,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => panic!("relay accept: {e}"),
        };
        agent.set_nonblocking(false).unwrap();
        // A target that is down: the agent sees its connection closed.
        let Ok(soc) = TcpStream::connect(target) else {
            continue;
        };
        let link = Arc::new(Link {
            agent,
            soc,
            held: Mutex::new(None),
            agent_gone: AtomicBool::new(false),
        });
        shared.links.lock().unwrap().push(link.clone());
        let up = link.clone();
        std::thread::spawn(move || relay_agent_to_soc(&up));
        std::thread::spawn(move || relay_soc_to_agent(&link));
    }
}

fn relay_agent_to_soc(link: &Link) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match (&link.agent).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut held = link.held.lock().unwrap();
        match held.as_mut() {
            Some(bytes) => bytes.extend_from_slice(&buf[..n]),
            None => {
                drop(held);
                if (&link.soc).write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    link.agent_gone.store(true, Ordering::SeqCst);
    // A held connection's SOC side stays open: the held bytes come later.
    if link.held.lock().unwrap().is_none() {
        let _ = link.soc.shutdown(Shutdown::Write);
    }
}

fn relay_soc_to_agent(link: &Link) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match (&link.soc).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Once the agent side is cut, what the SOC sends is read and dropped
        // so its writes never block.
        let _ = (&link.agent).write_all(&buf[..n]);
    }
    let _ = link.agent.shutdown(Shutdown::Write);
}

// ------------------------------------------------------------------ SOC DB

/// Read-only view of the SOC's SQLite file. Each query opens the file anew
/// (read-only, WAL) so it sees the latest commits.
pub struct Db {
    pub path: PathBuf,
}

/// One row of `events`, body decoded.
#[derive(Debug, Clone)]
pub struct Stored {
    pub row: i64,
    pub tenant: String,
    pub agent: String,
    pub seq: Option<u64>,
    pub kind: String,
    pub event: Event,
}

impl Stored {
    /// The counter of a synthetic check result, `None` for other events.
    pub fn synthetic_counter(&self) -> Option<u64> {
        match &self.event.kind {
            Some(Kind::CheckResult(c)) if c.check_id == "synthetic" => Some(
                c.message
                    .parse()
                    .unwrap_or_else(|_| panic!("bad synthetic counter {:?}", c.message)),
            ),
            _ => None,
        }
    }

    /// The event's own time stamp (when the agent made it).
    pub fn time(&self) -> SystemTime {
        let t = self
            .event
            .time
            .as_ref()
            .unwrap_or_else(|| panic!("stored event without a time: {self:?}"));
        UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32)
    }

    pub fn check_result(&self) -> Option<&CheckResult> {
        match &self.event.kind {
            Some(Kind::CheckResult(c)) => Some(c),
            _ => None,
        }
    }

    pub fn alert(&self) -> Option<&Alert> {
        match &self.event.kind {
            Some(Kind::Alert(a)) => Some(a),
            _ => None,
        }
    }

    pub fn alert_name(&self) -> Option<&str> {
        match &self.event.kind {
            Some(Kind::Alert(a)) => Some(&a.name),
            _ => None,
        }
    }
}

/// (tenant/agent, kind, count, min seq, max seq).
pub type SummaryRow = (String, String, i64, Option<i64>, Option<i64>);

/// One row of `agents`.
#[derive(Debug, Clone)]
pub struct AgentRow {
    pub tenant: String,
    pub agent_id: String,
    pub connected: bool,
    pub silent: bool,
    pub acked_seq: u64,
}

impl Db {
    fn open(&self) -> Option<rusqlite::Connection> {
        if !self.path.exists() {
            return None;
        }
        let db = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ok()?;
        db.busy_timeout(Duration::from_secs(5)).ok()?;
        // The SOC may not have created the tables yet.
        db.query_row(
            "SELECT 1 FROM sqlite_master WHERE name = 'events'",
            [],
            |_| Ok(()),
        )
        .ok()?;
        Some(db)
    }

    pub fn agents(&self) -> Vec<AgentRow> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT tenant, agent_id, connected, silent, acked_seq FROM agents ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok(AgentRow {
                tenant: r.get(0)?,
                agent_id: r.get(1)?,
                connected: r.get::<_, i64>(2)? != 0,
                silent: r.get::<_, i64>(3)? != 0,
                acked_seq: r.get::<_, i64>(4)? as u64,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    pub fn agent(&self, tenant: &str, agent: &str) -> Option<AgentRow> {
        self.agents()
            .into_iter()
            .find(|a| a.tenant == tenant && a.agent_id == agent)
    }

    /// All stored events in arrival order.
    pub fn events(&self) -> Vec<Stored> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT e.id, a.tenant, a.agent_id, e.seq, e.kind, e.body
                 FROM events e JOIN agents a ON a.id = e.agent ORDER BY e.id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            let body: Vec<u8> = r.get(5)?;
            Ok(Stored {
                row: r.get(0)?,
                tenant: r.get(1)?,
                agent: r.get(2)?,
                seq: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
                kind: r.get(4)?,
                event: Event::decode(body.as_slice())
                    .expect("stored body is not an owlet.v1.Event"),
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Stored events of one agent, in arrival order.
    pub fn events_of(&self, tenant: &str, agent: &str) -> Vec<Stored> {
        self.events()
            .into_iter()
            .filter(|e| e.tenant == tenant && e.agent == agent)
            .collect()
    }

    /// Number of events in the database (any agent); 0 if none.
    pub fn count(&self) -> i64 {
        let Some(db) = self.open() else { return 0 };
        db.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap()
    }

    /// Takes the database's write lock (`BEGIN IMMEDIATE`) and holds it
    /// until the returned connection is dropped (rolled back, nothing
    /// written): the SOC's commits stall meanwhile, like on a stalled disk.
    pub fn hold_write_lock(&self) -> rusqlite::Connection {
        let db = rusqlite::Connection::open(&self.path).unwrap();
        db.busy_timeout(Duration::from_secs(30)).unwrap();
        db.execute_batch("BEGIN IMMEDIATE").unwrap();
        db
    }

    /// (tenant/agent, kind, count, min seq, max seq) for diagnostics.
    pub fn summary(&self) -> Vec<SummaryRow> {
        let Some(db) = self.open() else {
            return Vec::new();
        };
        let mut stmt = db
            .prepare(
                "SELECT a.tenant || '/' || a.agent_id, e.kind, COUNT(*), MIN(e.seq), MAX(e.seq)
                 FROM events e JOIN agents a ON a.id = e.agent GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Number of stored synthetic events (cheap enough to poll).
    pub fn synthetic_count(&self, tenant: &str, agent: &str) -> usize {
        self.events_of(tenant, agent)
            .iter()
            .filter(|e| e.synthetic_counter().is_some())
            .count()
    }
}

// ----------------------------------------------------------------- checks

/// Asserts the exactly-once, in-order properties of one agent's stored
/// events: seqs strictly increasing in arrival order (so no duplicates) and
/// every seq-bearing event has a seq. Returns the seqs.
pub fn assert_in_order_no_duplicates(events: &[Stored]) -> Vec<u64> {
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e.kind != "alert" || e.seq.is_some())
        .map(|e| {
            e.seq
                .unwrap_or_else(|| panic!("agent event without seq: {e:?}"))
        })
        .collect();
    for w in seqs.windows(2) {
        assert!(
            w[0] < w[1],
            "seqs not strictly increasing in arrival order: {} then {}",
            w[0],
            w[1]
        );
    }
    seqs
}

/// Asserts the seqs, taken as a set, have no gap from the first to the last.
/// (Duplicates are allowed here: a loss report that carries an earlier, lost
/// report's range may overlap the range of another report.)
pub fn assert_contiguous(seqs: &[u64]) {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for w in sorted.windows(2) {
        assert!(
            w[1] == w[0] + 1,
            "gap in stored seqs: {} is followed by {} ({} missing)",
            w[0],
            w[1],
            w[1] - w[0] - 1
        );
    }
}

/// Counters of stored synthetic events, in arrival order.
pub fn synthetic_counters(events: &[Stored]) -> Vec<u64> {
    events
        .iter()
        .filter_map(Stored::synthetic_counter)
        .collect()
}

/// Sum of `DataLoss` events: (events_lost, lost_by_kind).
pub fn data_loss_totals(events: &[Stored]) -> (u64, BTreeMap<String, u64>) {
    let mut lost = 0;
    let mut by_kind = BTreeMap::new();
    for e in events {
        if let Some(Kind::DataLoss(d)) = &e.event.kind {
            lost += d.events_lost;
            for (k, v) in &d.lost_by_kind {
                *by_kind.entry(k.clone()).or_insert(0) += v;
            }
        }
    }
    (lost, by_kind)
}

/// Asserts that `events` hold every synthetic counter in `expected` exactly
/// once, in order, under contiguous, strictly increasing seqs; returns the
/// seqs. (Exactly-once delivery, as every durability test states it.)
pub fn assert_delivered_exactly_once(
    events: &[Stored],
    expected: std::ops::Range<u64>,
) -> Vec<u64> {
    let seqs = assert_in_order_no_duplicates(events);
    assert_contiguous(&seqs);
    assert_counters(&synthetic_counters(events), expected);
    seqs
}

/// Asserts the stored synthetic counters are exactly `expected`, in arrival
/// order; on failure names the missing and duplicated counters.
pub fn assert_counters(counters: &[u64], expected: std::ops::Range<u64>) {
    if counters.iter().copied().eq(expected.clone()) {
        return;
    }
    let mut seen = BTreeMap::<u64, u32>::new();
    for c in counters {
        *seen.entry(*c).or_default() += 1;
    }
    let missing: Vec<u64> = expected.clone().filter(|c| !seen.contains_key(c)).collect();
    let duplicated: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(c, _)| *c)
        .collect();
    let unexpected: Vec<u64> = seen
        .keys()
        .copied()
        .filter(|c| !expected.contains(c))
        .collect();
    panic!(
        "stored synthetic counters are not {expected:?} in order: {} stored, {} missing {:?}, duplicated {:?}, unexpected {:?}",
        counters.len(),
        missing.len(),
        &missing[..missing.len().min(40)],
        &duplicated[..duplicated.len().min(40)],
        &unexpected[..unexpected.len().min(40)],
    );
}

// --------------------------------------------------------------------- users

/// A system user (and its group of the same name) created for one test
/// with `useradd` (needs root), removed on drop.
pub struct TestUser {
    pub name: String,
}

impl TestUser {
    pub fn create(name: &str) -> TestUser {
        let _ = output(Command::new("userdel").arg(name));
        let _ = output(Command::new("groupdel").arg(name));
        run_ok(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]));
        TestUser {
            name: name.to_string(),
        }
    }

    /// (uid, gid) of the user.
    pub fn ids(&self) -> (u32, u32) {
        let id = |flag: &str| -> u32 {
            let out = run_ok(Command::new("id").arg(flag).arg(&self.name));
            out.trim()
                .parse()
                .unwrap_or_else(|e| panic!("id {flag} {}: {out:?}: {e}", self.name))
        };
        (id("-u"), id("-g"))
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = output(Command::new("userdel").arg(&self.name));
        let _ = output(Command::new("groupdel").arg(&self.name));
    }
}

/// Fails the test unless it runs as root, saying what needs it (a test
/// that cannot run fails, it never skips).
pub fn require_root(what: &str) {
    assert!(
        run_ok(Command::new("id").arg("-u")).trim() == "0",
        "this test needs root: {what}"
    );
}

/// A command's stdout then stderr, for assertions and failure messages.
pub fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `owlet hw-profile show NAME --config FILE --json`: the setting `key`.
pub fn profile_setting<'a>(shown: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    shown["settings"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["key"] == key))
        .unwrap_or_else(|| panic!("no setting {key} in {shown}"))
}

/// `owlet hw-profile show NAME --json --config FILE`, parsed.
pub fn profile_shown(name: &str, config: &Path) -> serde_json::Value {
    let out = run_ok(
        owlet()
            .args(["hw-profile", "show", name, "--json", "--config"])
            .arg(config),
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

// --------------------------------------------------------------------- disks

/// A tmpfs mounted for the test's lifetime (needs root): a small disk to fill.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "owlet-test",
            ])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs at {dir:?} (needs root)");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
