//! A real `owlet-soc`: CA, config, start/stop, the agents it knows.

use std::fs;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::*;

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

    /// Sets `key` of `section` in `soc.toml`.
    pub fn set(&self, section: &str, key: &str, value: impl Into<toml::Value>) {
        let mut table: toml::Table = fs::read_to_string(&self.config).unwrap().parse().unwrap();
        table
            .entry(section)
            .or_insert_with(|| toml::Table::new().into())
            .as_table_mut()
            .unwrap()
            .insert(key.into(), value.into());
        fs::write(&self.config, toml::to_string(&table).unwrap()).unwrap();
    }

    /// Keeps the SOC's storage (control database and tenants' logs) in
    /// `dir` instead of beside its configuration.
    pub fn store_in(&mut self, dir: &std::path::Path) {
        self.db = dir.join("soc.db");
        self.set("sink", "path", self.db.to_str().unwrap());
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
