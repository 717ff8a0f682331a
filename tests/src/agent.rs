//! A real agent (`owlet run`, or `owlet-loadgen run` with a synthetic load): config, start/stop, health, reload.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use crate::*;

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
    pub(crate) fn from_issued(dir: PathBuf) -> Agent {
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

    /// Runs `owlet selftest --json --config` on this agent's config
    /// (behind `wrapper`, e.g. setpriv, with `args` added); returns the
    /// exit status and the report.
    pub fn selftest(&self, wrapper: &[&str], args: &[&str]) -> (i32, serde_json::Value) {
        self.write_config();
        let owlet = bin("owlet");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(args).arg(&owlet);
                cmd
            }
            None => std::process::Command::new(&owlet),
        };
        cmd.args(["selftest", "--json", "--config"])
            .arg(&self.config_path)
            .args(args);
        let out = output(&mut cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "owlet selftest printed no JSON report ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
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

    /// Sends `sig` to the running agent (SIGSTOP / SIGCONT to freeze it).
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        self.proc.as_ref().expect("agent not running").signal(sig);
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

/// The first step of a self-test report called `name`.
pub fn selftest_step<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}
