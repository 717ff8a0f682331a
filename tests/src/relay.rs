//! A TCP relay between agent and SOC that can hold, cut and release a live connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::*;

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
