//! Targets for the agent's checks that a test controls: a loopback TCP
//! port it can close (the check goes DOWN) and the check's config table.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, sleep};
use std::time::Duration;

/// A loopback TCP port that accepts (and closes) connections until
/// [`Port::close`]; after that, connecting is refused.
pub struct Port {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Port {
    pub fn open() -> Port {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => drop(conn),
                        Err(_) => sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Port {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops listening: the port refuses connections from now on.
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}

/// A `[[probe.check]]` table: a TCP check of `target` every second.
pub fn tcp_check(id: &str, target: &str) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("id".into(), id.into());
    t.insert("type".into(), "tcp".into());
    t.insert("target".into(), target.into());
    t.insert("interval".into(), "1s".into());
    t.insert("timeout".into(), "1s".into());
    toml::Value::Table(t)
}
