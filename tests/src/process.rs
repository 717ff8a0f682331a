//! Starting the real binaries and waiting on them: paths, commands, bounded waits, and the [`Proc`] guard.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
