//! `owlet-soc demo` with the real binaries: the SOC here, the agent (`owlet`,
//! built by `cargo build -p owlet-agent`) as its child.
//!
//! A test that cannot get the agent binary fails, saying why (it never
//! passes without running).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SOC: &str = env!("CARGO_BIN_EXE_owlet-soc");

/// The `owlet` binary next to `owlet-soc`, built once per test run; Err
/// says why there is none.
fn owlet() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = PathBuf::from(SOC)
                .parent()
                .ok_or_else(|| format!("{SOC} has no parent directory"))?
                .to_path_buf();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "-p", "owlet-agent", "--bin", "owlet"]);
            // Variables cargo set for this test crate would make build
            // scripts (ring's) look changed and rebuild half the tree.
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                let per_crate = [
                    "CARGO_MANIFEST_",
                    "CARGO_PKG_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ];
                if per_crate.iter().any(|p| name.starts_with(p)) {
                    build.env_remove(name.as_ref());
                }
            }
            if dir.file_name().is_some_and(|n| n == "release") {
                build.arg("--release");
            }
            match build.status() {
                Ok(status) if status.success() => {}
                other => return Err(format!("cargo build -p owlet-agent failed: {other:?}")),
            }
            let owlet = dir.join("owlet");
            if owlet.is_file() {
                Ok(owlet)
            } else {
                Err(format!(
                    "no owlet binary next to {SOC} (cargo build -p owlet-agent did not produce one)"
                ))
            }
        })
        .clone()
}

/// The agent binary, or the test fails saying why there is none.
fn owlet_bin() -> PathBuf {
    owlet().unwrap_or_else(|why| panic!("this test needs the agent binary: {why}"))
}

/// Runs `cmd` to its end; it must succeed. Returns (stdout, stderr).
fn succeed(cmd: &mut Command) -> (String, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn the_demo_shows_check_results_and_an_alert_raised_and_cleared() {
    let owlet = owlet_bin();
    let (stdout, stderr) = succeed(
        Command::new(SOC)
            .args(["demo", "--duration", "30s", "--agent-bin"])
            .arg(&owlet),
    );
    let position = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in the demo output:\n{stdout}\n{stderr}"))
    };
    position("check    demo-web       http UP");
    position("status   agent up");
    let raised = position("ALERT    demo-flaky is DOWN");
    let cleared = position("CLEARED  demo-flaky is UP again");
    assert!(raised < cleared, "cleared before raised:\n{stdout}");
    // File watching: the editor-style save, then the secret, redacted.
    let saved = position("firewall.rules modified: sha256");
    let redacted = position("(1 redacted)");
    assert!(saved < redacted, "{stdout}");
    assert!(!stdout.contains("hunter2 "), "a secret is shown:\n{stdout}");
    position("host     cpu");
    position("--- summary ---");
    // Internals stay hidden: no sequence numbers, one timing per result.
    assert!(
        !stdout.contains(" #"),
        "a sequence number is shown:\n{stdout}"
    );
    assert!(
        !stdout.contains(" ms)"),
        "a second timing is shown:\n{stdout}"
    );
}

/// Kills the process on drop, so a failing test leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); it is gone once /proc says so.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn a_closed_pipe_ends_the_demo_quietly_and_stops_the_agent() {
    let owlet = owlet_bin();
    let mut demo = Guard(
        Command::new(SOC)
            .args(["demo", "--agent-bin"])
            .arg(&owlet)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let mut agent_pid = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // "agent demo/sensor-1 started (pid N), log ..." (host lines name
        // other processes' pids too).
        if line.starts_with("agent ")
            && let Some(rest) = line.split("started (pid ").nth(1)
        {
            agent_pid = rest.split(')').next().and_then(|p| p.parse::<i32>().ok());
        }
        if line.contains("  check  ") {
            break;
        }
    }
    let agent_pid = agent_pid.expect("the demo did not print the agent's pid");
    assert!(alive(agent_pid), "the agent is not running");
    drop(lines); // what `| head` does
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo kept running after its pipe closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut demo.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        status.success(),
        "exit {status} after the pipe closed: {stderr}"
    );
    assert!(stderr.is_empty(), "not quiet: {stderr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(agent_pid) {
        assert!(Instant::now() < deadline, "the agent outlived the demo");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_demo_runs_as_an_unprivileged_user_without_the_ping_check() {
    let owlet = owlet_bin();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(
        std::fs::metadata(home.path()).unwrap().uid(),
        0,
        "this test needs root to switch to user nobody; run the suite as root"
    );
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (stdout, stderr) = succeed(
        Command::new("setpriv")
            .args([
                "--reuid",
                "nobody",
                "--regid",
                "nogroup",
                "--clear-groups",
                "--",
            ])
            .arg(SOC)
            .args(["demo", "--duration", "12s", "--agent-bin"])
            .arg(&owlet)
            .env("HOME", home.path())
            .env("TMPDIR", home.path())
            .current_dir(home.path()),
    );
    let ping_range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let nogroup_may_ping = {
        let b: Vec<u32> = ping_range
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        b.len() == 2 && b[0] <= 65534 && 65534 <= b[1]
    };
    if !nogroup_may_ping {
        assert!(
            stdout.contains("note: ping check skipped"),
            "no note about the skipped ping check:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("check    demo-web"),
        "no check results:\n{stdout}\n{stderr}"
    );
}

#[test]
fn an_issued_user_layout_config_with_every_example_passes_the_agents_check() {
    let owlet = owlet_bin();
    let tmp = tempfile::tempdir().unwrap();
    let run = |cmd: &mut Command| succeed(cmd).0;
    let ca = tmp.path().join("ca");
    run(Command::new(SOC).args(["ca", "init", "--dir"]).arg(&ca));
    let out = tmp.path().join("a1");
    run(Command::new(SOC)
        .args([
            "ca", "issue", "--tenant", "t", "--agent", "a1", "--layout", "user", "--dir",
        ])
        .arg(&ca)
        .arg("--out")
        .arg(&out));
    let text = std::fs::read_to_string(out.join("owlet.toml")).unwrap();
    // Uncomment every example line: `#key = ...` and `#[table]`.
    let full: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("full.toml"), full).unwrap();
    let report = run(Command::new(&owlet)
        .arg("check-config")
        .arg(out.join("full.toml")));
    assert!(report.contains("4 checks"), "{report}");
    let spool = out.join("state").join("spool");
    assert!(report.contains(&spool.display().to_string()), "{report}");
}
