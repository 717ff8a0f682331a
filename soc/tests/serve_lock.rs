//! `owlet-soc serve` start-up with the real binary: a second instance on the
//! same config must fail without touching the running one's state, and a port
//! taken by another program is named in the error.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SOC: &str = env!("CARGO_BIN_EXE_owlet-soc");

/// Kills the process on drop, so a failing test leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `owlet-soc ca init` in DIR listening on `listen`; returns soc.toml.
fn init(dir: &Path, listen: SocketAddr) -> PathBuf {
    let out = Command::new(SOC)
        .args(["ca", "init", "--dir"])
        .arg(dir)
        .args(["--listen", &listen.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "ca init: {out:?}");
    dir.join("soc.toml")
}

fn serve(config: &Path) -> Command {
    let mut cmd = Command::new(SOC);
    cmd.args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null());
    cmd
}

fn wait_listening(addr: SocketAddr, first: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the first instance exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the first instance never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn connected(db: &Path) -> i64 {
    let db = rusqlite::Connection::open(db).unwrap();
    db.query_row(
        "SELECT connected FROM agents WHERE tenant = 'acme' AND agent_id = 's1'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_second_instance_names_the_running_one_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = init(dir.path(), addr);
    let db = dir.path().join("soc.db");
    let mut first = Guard(
        serve(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(addr, &mut first.0);
    // The port is bound before the sink opens (on purpose): wait for its
    // schema too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM agents", [], |r| r.get::<_, i64>(0)))
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the first instance never opened its database"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // An agent the running instance considers connected.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "INSERT INTO agents (tenant, agent_id, first_seen_us, last_seen_us, connected)
             VALUES ('acme', 's1', 1, 1, 1)",
            [],
        )
        .unwrap();

    let second = serve(&config).output().unwrap();
    let text = stderr(&second);
    assert!(
        !second.status.success(),
        "the second instance succeeded: {text}"
    );
    assert!(
        text.contains(&format!("pid {}", first.0.id())),
        "the message does not name the running instance's pid: {text}"
    );
    assert!(
        text.contains(&format!("{}.lock", db.display())),
        "the message does not name the lock file: {text}"
    );
    assert_eq!(
        connected(&db),
        1,
        "the second instance reset the running one's agent state"
    );
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first instance stopped"
    );
}

#[test]
fn a_port_taken_by_another_program_is_named_and_the_database_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = init(dir.path(), addr);
    let out = serve(&config).output().unwrap();
    let text = stderr(&out);
    assert!(
        !out.status.success(),
        "serve succeeded on a taken port: {text}"
    );
    assert!(
        text.contains(&addr.to_string()) && text.contains("already uses this address"),
        "the message does not name the taken address: {text}"
    );
    assert!(
        !dir.path().join("soc.db").exists(),
        "the database was created before the port was bound"
    );
}

#[test]
fn a_killed_instance_leaves_no_lock_behind() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let config = init(dir.path(), addr);
    let quiet = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = Guard(quiet(&mut serve(&config)));
    wait_listening(addr, &mut first.0);
    first.0.kill().unwrap(); // SIGKILL: no clean-up ran
    first.0.wait().unwrap();
    assert!(dir.path().join("soc.db.lock").exists());
    let mut second = Guard(quiet(&mut serve(&config)));
    wait_listening(addr, &mut second.0);
}
