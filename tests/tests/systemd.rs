//! The systemd units and the notify protocol, with the real binaries.
//!
//! * `systemd-analyze verify` accepts every unit in `systemd/` ([`UNITS`]). It checks that ExecStart's
//!   binary exists, so each test copies the unit into a temporary directory
//!   with `/usr/bin/owlet*` rewritten to the freshly built binaries (nothing
//!   is installed on the machine), and passes `--man=no` (no man pages are
//!   installed here either). Warnings count as failures.
//! * `systemd-analyze security --offline=yes` rates each at most 2.5.
//! * The notify protocol against a datagram socket the test binds (a path
//!   for the SOC, an abstract `@name` for the agent): READY=1, STATUS=,
//!   WATCHDOG=1, STOPPING=1; and no WATCHDOG=1 while the spool writer or the
//!   uplink is stuck in a held fsync (`owlet-loadgen --wedge-spool-when`,
//!   the real spool on a filesystem wrapper that holds the next fdatasync).
//! * The agent as an unprivileged user holding only the unit's capability
//!   (`setpriv`), in a network namespace the test creates: ICMP checks work
//!   with CAP_NET_RAW and are reported as not runnable without it.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;

use owlet_tests::{Agent, DEADLINE, Proc, Soc, TestUser, bin, output, run_ok, wait_until};

/// Every unit the packages ship, with the binary it starts.
const UNITS: [(&str, &str); 9] = [
    ("owlet.service", "owlet"),
    ("owlet-soc.service", "owlet-soc"),
    // The scaled-out SOC's roles (packaging/examples/scale/).
    ("owlet-soc-receiver.service", "owlet-soc"),
    ("owlet-soc-writer.service", "owlet-soc"),
    ("owlet-soc-outputs.service", "owlet-soc"),
    ("owlet-soc-reports.service", "owlet-soc"),
    ("owlet-soc-notify.service", "owlet-soc"),
    ("owlet-soc-portal.service", "owlet-soc"),
    ("owlet-soc-scale-portal.service", "owlet-soc"),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The unit as shipped, with `/usr/bin/BINARY ` pointing at the built binary.
fn unit_with_built_binary(unit: &str, binary: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
    let text = text.replace(
        &format!("/usr/bin/{binary} "),
        &format!("{} ", bin(binary).display()),
    );
    let path = dir.join(unit);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_unit_in_systemd_is_checked() {
    let mut shipped: Vec<String> = std::fs::read_dir(repo().join("systemd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".service"))
        .collect();
    shipped.sort();
    let mut checked: Vec<String> = UNITS.iter().map(|(u, _)| u.to_string()).collect();
    checked.sort();
    assert_eq!(shipped, checked, "systemd/ and UNITS differ");
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (unit, binary) in UNITS {
        let path = unit_with_built_binary(unit, binary, dir.path());
        let out = output(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&path),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn every_unit_exposes_at_most_2_5() {
    for (unit, _) in UNITS {
        let path = repo().join("systemd").join(unit);
        let out = run_ok(
            Command::new("systemd-analyze")
                .args(["security", "--offline=yes", "--no-pager"])
                .arg(&path),
        );
        let score: f64 = out
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")
            })
            .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score for {unit} in:\n{out}"));
        eprintln!("{unit}: exposure {score}");
        assert!(score <= 2.5, "{unit}: exposure {score} > 2.5:\n{out}");
    }
}

/// A notification socket like systemd's, recording every datagram.
struct NotifySocket {
    /// The value for `NOTIFY_SOCKET`.
    address: String,
    /// Every datagram received, as sent.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl NotifySocket {
    fn at_path(path: &Path) -> Self {
        Self::start(
            UnixDatagram::bind(path).unwrap(),
            path.display().to_string(),
        )
    }

    fn abstract_name(name: &str) -> Self {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        Self::start(UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    }

    fn start(socket: UnixDatagram, address: String) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = socket.recv(&mut buf) {
                record.lock().unwrap().push(buf[..n].to_vec());
            }
        });
        Self { address, seen }
    }

    /// Every assignment received so far (one per line of each datagram).
    fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .flat_map(|d| {
                String::from_utf8_lossy(d)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        wait_until(&format!("{what} on NOTIFY_SOCKET"), DEADLINE, || {
            self.lines().iter().any(|l| pred(l))
        });
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

/// Starts `cmd` as a `Type=notify` service with `WatchdogSec=period`.
fn spawn_notified(
    name: &str,
    mut cmd: Command,
    socket: &NotifySocket,
    period: Duration,
    dir: &Path,
) -> Proc {
    cmd.env("NOTIFY_SOCKET", &socket.address)
        .env("WATCHDOG_USEC", period.as_micros().to_string())
        .env("NO_COLOR", "1");
    Proc::spawn(name, cmd, dir)
}

fn agent_command(agent: &Agent, loadgen: Option<(&str, &Path)>) -> Command {
    agent.write_config();
    let mut cmd = match loadgen {
        None => Command::new(bin("owlet")),
        Some((rate, trigger)) => {
            let mut cmd = Command::new(bin("owlet-loadgen"));
            cmd.args(["run", "--rate", rate, "--wedge-spool-when"])
                .arg(trigger);
            cmd
        }
    };
    if loadgen.is_none() {
        cmd.arg("run");
    }
    cmd.arg("--config").arg(&agent.config_path);
    cmd
}

const PERIOD: Duration = Duration::from_secs(1);

#[test]
fn agent_and_soc_speak_the_notify_protocol() {
    let soc = Soc::init();
    let soc_socket = NotifySocket::at_path(&soc.tmp.path().join("soc-notify.sock"));
    let mut soc_cmd = Command::new(bin("owlet-soc"));
    soc_cmd.args(["serve", "--config"]).arg(&soc.config);
    let mut soc_proc = spawn_notified("soc", soc_cmd, &soc_socket, PERIOD, soc.tmp.path());
    soc_socket.wait_for("the SOC's READY=1", |l| l == "READY=1");
    soc_socket.wait_for("the SOC's WATCHDOG=1", |l| l == "WATCHDOG=1");

    let agent = soc.issue("acme", "fw-1");
    let agent_socket =
        NotifySocket::abstract_name(&format!("owlet-e2e-notify-{}", std::process::id()));
    let mut agent_proc = spawn_notified(
        "owlet",
        agent_command(&agent, None),
        &agent_socket,
        PERIOD,
        &agent.dir,
    );
    agent_socket.wait_for("the agent's READY=1", |l| l == "READY=1");
    agent_socket.wait_for("the agent's WATCHDOG=1", |l| l == "WATCHDOG=1");
    agent_socket.wait_for("the agent's status: connected, spool depth", |l| {
        l.starts_with("STATUS=connected to the SOC; spool ")
    });
    soc_socket.wait_for("the SOC's status: one agent, events stored", |l| {
        l.starts_with("STATUS=serving; 1 agent connected; ") && !l.contains("; 0 events")
    });
    // READY=1 once, before any watchdog keep-alive.
    for socket in [&agent_socket, &soc_socket] {
        let lines = socket.lines();
        assert_eq!(socket.count("READY=1"), 1, "{lines:?}");
        let ready = lines.iter().position(|l| l == "READY=1").unwrap();
        let first_feed = lines.iter().position(|l| l == "WATCHDOG=1").unwrap();
        assert!(ready < first_feed, "{lines:?}");
    }

    assert!(agent_proc.terminate(DEADLINE).success());
    agent_socket.wait_for("the agent's STOPPING=1", |l| l == "STOPPING=1");
    assert!(soc_proc.terminate(DEADLINE).success());
    soc_socket.wait_for("the SOC's STOPPING=1", |l| l == "STOPPING=1");
}

#[test]
fn without_notify_socket_nothing_changes() {
    let soc = Soc::init();
    let agent = soc.issue("acme", "fw-2");
    let mut cmd = agent_command(&agent, None);
    cmd.env_remove("NOTIFY_SOCKET").env("WATCHDOG_USEC", "1000");
    let mut proc = Proc::spawn("owlet", cmd, &agent.dir);
    wait_until("the agent to run", DEADLINE, || {
        proc.log().contains("running")
    });
    assert!(proc.try_wait().is_none(), "{}", proc.log());
    assert!(!proc.log().contains("watchdog"), "{}", proc.log());
    assert!(proc.terminate(DEADLINE).success());
}

/// Runs `owlet-loadgen` under a watchdog, holds the spool's next fsync and
/// checks that the keep-alives stop, naming `task`, and resume once the
/// fsync returns. With `acks_during_wedge` the SOC is frozen (SIGSTOP)
/// before the fsync is held and thawed once the spool writer is stuck, so
/// acknowledgements for batches in flight reach the uplink while the
/// spool is wedged.
fn wedge(durability: &str, task: &str, acks_during_wedge: bool) {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "fw-wedge");
    agent.set("spool", "durability", durability);
    agent.set("spool", "fsync_interval", "50ms");
    let trigger = agent.dir.join("wedge");
    let socket = NotifySocket::at_path(&agent.dir.join("notify.sock"));
    let mut proc = spawn_notified(
        "owlet",
        agent_command(&agent, Some(("200", &trigger))),
        &socket,
        PERIOD,
        &agent.dir,
    );
    socket.wait_for("READY=1", |l| l == "READY=1");
    socket.wait_for("the agent connected", |l| l.starts_with("STATUS=connected"));
    socket.wait_for("WATCHDOG=1", |l| l == "WATCHDOG=1");

    if acks_during_wedge {
        soc.signal(Signal::SIGSTOP);
        wait_until("batches in flight to the frozen SOC", DEADLINE, || {
            agent.spool_events().is_some_and(|n| n > 400)
        });
    }
    std::fs::write(&trigger, b"").unwrap();
    if acks_during_wedge {
        wait_until(
            "the agent to log that the spool writer is stuck",
            DEADLINE,
            || proc.log().contains("the spool writer task has been inside"),
        );
        soc.signal(Signal::SIGCONT);
    }
    let stuck = format!("the {task} task has been inside one piece of work");
    wait_until(
        &format!("the agent to log that the {task} is stuck"),
        DEADLINE,
        || proc.log().contains(&stuck),
    );
    socket.clear();
    // Several watchdog periods with the task still stuck: not one keep-alive.
    owlet_tests::sleep(PERIOD * 4);
    assert_eq!(
        socket.count("WATCHDOG=1"),
        0,
        "fed while wedged:\n{}",
        proc.log()
    );
    assert!(proc.try_wait().is_none(), "{}", proc.log());

    std::fs::remove_file(&trigger).unwrap();
    socket.wait_for("WATCHDOG=1 once the fsync returned", |l| l == "WATCHDOG=1");
    assert!(proc.log().contains("pipeline tasks turn again"));
    assert!(proc.terminate(DEADLINE).success());
}

#[test]
fn no_watchdog_while_the_spool_writer_is_wedged() {
    wedge("every_batch", "spool writer", false);
}

#[test]
fn no_watchdog_while_the_uplink_is_wedged() {
    // Interval durability syncs under the spool's lock: the uplink's next
    // ack (the SOC answers late) waits for it, inside its spool call.
    wedge("interval", "uplink", true);
}

/// A network namespace with only `lo` (up), deleted on drop. Its
/// `net.ipv4.ping_group_range` is the kernel default ("1 0": no
/// unprivileged ICMP sockets), whatever the host allows.
struct Netns {
    name: String,
}

impl Netns {
    fn create(name: &str) -> Self {
        let _ = output(Command::new("ip").args(["netns", "del", name]));
        run_ok(Command::new("ip").args(["netns", "add", name]));
        let ns = Self {
            name: name.to_string(),
        };
        run_ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = output(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// The state of check `id` in `owlet health --json` once the agent has run
/// it: up, down, or unknown with the reason it cannot run.
fn check_state(agent: &Agent, id: &str) -> Option<String> {
    let health = agent.health()?;
    let checks = health["collectors"]["checks"]["detail"].as_array()?.clone();
    let check = checks.iter().find(|c| c["id"] == id)?;
    let state = check["state"].as_str()?;
    let message = check["message"].as_str().unwrap_or_default();
    match state {
        "STATE_UP" | "STATE_DOWN" => Some(state.to_string()),
        "STATE_UNKNOWN" if !message.is_empty() => Some(format!("{state}: {message}")),
        _ => None,
    }
}

/// Runs the agent as `user` inside `ns` with `caps` (setpriv's syntax, e.g.
/// "+net_raw"; "" for none) as its inheritable, ambient and bounding sets —
/// what `AmbientCapabilities=` / `CapabilityBoundingSet=` give it under
/// systemd — and returns the state of the ICMP check once it has one.
/// Runs the agent inside `ns` as `user` holding only `caps` (inheritable,
/// ambient and bounding sets alike) until `done` says what it waited for.
fn run_as<T>(
    user: &TestUser,
    ns: &Netns,
    caps: &str,
    agent: &Agent,
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let set = if caps.is_empty() {
        "-all".to_string()
    } else {
        format!("-all,{caps}")
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "setpriv"])
        .arg(format!("--reuid={}", user.name))
        .arg(format!("--regid={}", user.name))
        .arg("--clear-groups")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--no-new-privs")
        .arg("--")
        .arg(bin("owlet"))
        .args(["run", "--config"])
        .arg(&agent.config_path);
    let mut proc = Proc::spawn("owlet", cmd, &agent.dir);
    let started = std::time::Instant::now();
    let outcome = loop {
        assert!(
            proc.try_wait().is_none(),
            "the agent exited:\n{}",
            proc.log()
        );
        if let Some(outcome) = done() {
            break outcome;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the agent (capabilities {caps:?}) did not get there; health: {:?}",
            agent.health()
        );
        owlet_tests::sleep(Duration::from_millis(100));
    };
    assert!(proc.terminate(DEADLINE).success(), "{}", proc.log());
    outcome
}

#[test]
fn the_agent_runs_unprivileged_with_only_the_units_capabilities() {
    let soc = Soc::init();
    let mut agent = soc.issue("acme", "fw-setpriv");
    let mut check = toml::Table::new();
    check.insert("id".into(), "lo-ping".into());
    check.insert("type".into(), "icmp".into());
    check.insert("target".into(), "127.0.0.1".into());
    check.insert("interval".into(), "1s".into());
    check.insert("timeout".into(), "1s".into());
    check.insert("down_after".into(), 1.into());
    check.insert("up_after".into(), 1.into());
    agent.set("probe", "check", toml::Value::Array(vec![check.into()]));
    let mut capture = toml::Table::new();
    capture.insert("interfaces".into(), toml::Value::Array(vec!["lo".into()]));
    capture.insert("workers".into(), 1.into());
    agent.config.insert("capture".into(), capture.into());
    let watched = agent.dir.join("watched");
    std::fs::create_dir_all(&watched).unwrap();
    let rules = watched.join("firewall.rules");
    std::fs::write(&rules, "allow tcp 22\n").unwrap();
    let mut watch = toml::Table::new();
    watch.insert("path".into(), watched.display().to_string().into());
    let mut fim = toml::Table::new();
    // Naming writers needs CAP_SYS_ADMIN, which the unit does not grant.
    fim.insert("attribution".into(), false.into());
    fim.insert("watch".into(), toml::Value::Array(vec![watch.into()]));
    agent.config.insert("fim".into(), fim.into());
    agent.write_config();

    let name = format!("owlet-e2e-{}", std::process::id());
    let user = TestUser::create(&name);
    let ns = Netns::create(&name);
    // The test's directories are root's 0700 temp dirs: let the user reach
    // its own agent directory (and nothing else in them).
    run_ok(Command::new("chmod").arg("0711").arg(soc.tmp.path()));
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{name}:{name}"))
            .arg(&agent.dir),
    );

    // With the unit's capability: ICMP works, the capture on the
    // namespace's loopback sees the pings, and file watching reports a
    // change to a file the service user may read.
    let mut changed = false;
    let state = run_as(&user, &ns, "+net_raw", &agent, || {
        let state = check_state(&agent, "lo-ping")?;
        let health = agent.health()?;
        let capture = &health["collectors"]["capture"];
        let captured = capture["state"] == "running"
            && capture["detail"]["interfaces"][0]["packets"].as_u64() > Some(0);
        let fim = &health["collectors"]["fim"]["detail"];
        if !captured || fim["baseline_ready"] != true {
            return None;
        }
        if !changed {
            std::fs::write(&rules, "allow tcp 22\nallow tcp 443\n").unwrap();
            changed = true;
        }
        (fim["changes"].as_u64() > Some(0)).then_some(state)
    });
    assert_eq!(state, "STATE_UP", "with CAP_NET_RAW");
    // The same agent without the capability cannot ping: the capability is
    // what made it work, not a permissive host.
    let state = run_as(&user, &ns, "", &agent, || check_state(&agent, "lo-ping"));
    assert!(
        state.starts_with(
            "STATE_UNKNOWN: cannot open an ICMP socket (raw socket: Operation not permitted"
        ),
        "without CAP_NET_RAW: {state}"
    );
}

/// `log.format = "journald"`: the native journal protocol with the events'
/// fields as journal fields. The agent runs in a private mount namespace
/// where /run/systemd is the test's directory, so the "journal" socket it
/// writes to is one the test bound (no journald needed, the host's /run
/// untouched).
#[test]
fn logs_reach_the_journal_with_their_fields() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "fw-journal");
    agent.set("log", "format", "journald");
    let mut check = toml::Table::new();
    check.insert("id".into(), "portal".into());
    check.insert("type".into(), "http".into());
    check.insert("target".into(), "https://127.0.0.1:1/".into());
    check.insert("insecure_skip_verify".into(), true.into());
    agent.set("probe", "check", toml::Value::Array(vec![check.into()]));
    agent.write_config();

    let run_systemd = agent.dir.join("run-systemd");
    std::fs::create_dir_all(run_systemd.join("journal")).unwrap();
    let journal = NotifySocket::at_path(&run_systemd.join("journal/socket"));
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$0" /run/systemd && exec "$@""#)
        .arg(&run_systemd)
        .arg(bin("owlet"))
        .args(["run", "--config"])
        .arg(&agent.config_path);
    let mut proc = Proc::spawn("owlet", cmd, &agent.dir);
    let datagram = |what: &str, all: &[&str]| {
        let started = std::time::Instant::now();
        let entries = || -> Vec<Vec<String>> {
            journal
                .seen
                .lock()
                .unwrap()
                .iter()
                .map(|d| journal_fields(d))
                .collect()
        };
        while !entries()
            .iter()
            .any(|e| all.iter().all(|field| e.iter().any(|f| f == field)))
        {
            assert!(
                started.elapsed() < DEADLINE,
                "no journal entry with {all:?} ({what}); received: {:#?}",
                entries()
            );
            owlet_tests::sleep(Duration::from_millis(100));
        }
    };
    datagram(
        "the uplink's log line with its tenant as a journal field",
        &[
            "MESSAGE=connected to the SOC",
            "OWLET_TENANT=acme",
            "OWLET_AGENT=fw-journal",
            "PRIORITY=5",
            "SYSLOG_IDENTIFIER=owlet",
        ],
    );
    datagram(
        "a check's warning with its check id as a journal field",
        &["OWLET_CHECK=portal", "PRIORITY=4"],
    );
    assert!(
        proc.log().is_empty(),
        "with the journal reachable nothing goes to stderr:\n{}",
        proc.log()
    );
    assert!(proc.terminate(DEADLINE).success());
}

/// The `KEY=value` fields of one datagram of the journal's native protocol
/// (`KEY=value\n`, or `KEY\n` + 64-bit little-endian length + value + `\n`
/// for values that may hold newlines).
fn journal_fields(mut d: &[u8]) -> Vec<String> {
    let mut fields = Vec::new();
    while let Some(end) = d.iter().position(|&b| b == b'\n' || b == b'=') {
        let key = String::from_utf8_lossy(&d[..end]).into_owned();
        let value;
        if d[end] == b'=' {
            let rest = &d[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            value = &rest[..stop];
            d = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let len = u64::from_le_bytes(d[end + 1..end + 9].try_into().unwrap()) as usize;
            value = &d[end + 9..end + 9 + len];
            d = d.get(end + 10 + len..).unwrap_or_default();
        }
        fields.push(format!("{key}={}", String::from_utf8_lossy(value)));
    }
    fields
}
