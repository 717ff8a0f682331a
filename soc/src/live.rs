//! The agent connections open now, by certificate serial, so that a
//! revocation ends them and not only the next handshake.
//!
//! Guarantees:
//! - a connection whose certificate serial is in the revoked set is ended,
//!   whether it registered before or after the set changed: [`LiveConns::register`]
//!   checks the current set, so a handshake finished against the previous
//!   CRL cannot slip through between the two;
//! - ending is two steps: the stream's `revoked` token fires (the service
//!   answers the agent with PERMISSION_DENIED "certificate revoked", which
//!   the agent reports), and [`END_GRACE`] later the `kill` token closes the
//!   connection itself, whatever the stream does;
//! - an entry lives exactly as long as its [`LiveGuard`] (held by the
//!   connection), so the registry never grows with closed connections.
//!
//! Must never end a connection whose serial is not revoked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use owlet_tls::Identity;
use tokio_util::sync::CancellationToken;

/// Time a revoked stream has to deliver its "certificate revoked" status
/// before its connection is closed.
pub const END_GRACE: Duration = Duration::from_secs(1);

/// The tokens of one registered connection.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Fires when the certificate is revoked: end the stream with a reason.
    pub revoked: CancellationToken,
    /// Fires [`END_GRACE`] later: close the connection.
    pub kill: CancellationToken,
}

struct Entry {
    identity: Identity,
    serial: String,
    tokens: Tokens,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    revoked: HashSet<String>,
}

/// Registry of open agent connections.
#[derive(Default)]
pub struct LiveConns {
    inner: Mutex<Inner>,
}

/// Removes its connection from the registry when dropped.
pub struct LiveGuard {
    conns: Arc<LiveConns>,
    id: u64,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.conns.lock().conns.remove(&self.id);
    }
}

impl LiveConns {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The registry stays consistent after any panic (single inserts and
        // removes): keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection; ends it at once if `serial` is revoked.
    pub fn register(self: &Arc<Self>, identity: Identity, serial: String) -> (Tokens, LiveGuard) {
        let tokens = Tokens {
            revoked: CancellationToken::new(),
            kill: CancellationToken::new(),
        };
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        if inner.revoked.contains(&serial) {
            end(&tokens);
        }
        inner.conns.insert(
            id,
            Entry {
                identity,
                serial,
                tokens: tokens.clone(),
            },
        );
        drop(inner);
        let guard = LiveGuard {
            conns: Arc::clone(self),
            id,
        };
        (tokens, guard)
    }

    /// Makes `revoked` the revoked set and ends every open connection whose
    /// serial it holds; returns (identity, serial) of those ended.
    pub fn set_revoked(&self, revoked: HashSet<String>) -> Vec<(Identity, String)> {
        let mut inner = self.lock();
        let mut ended = Vec::new();
        for entry in inner.conns.values() {
            if revoked.contains(&entry.serial) && !entry.tokens.revoked.is_cancelled() {
                end(&entry.tokens);
                ended.push((entry.identity.clone(), entry.serial.clone()));
            }
        }
        inner.revoked = revoked;
        ended.sort();
        ended
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fires `revoked` now and `kill` after [`END_GRACE`].
fn end(tokens: &Tokens) {
    tokens.revoked.cancel();
    let kill = tokens.kill.clone();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                tokio::time::sleep(END_GRACE).await;
                kill.cancel();
            });
        }
        // Outside a runtime (not the case in the server): close at once.
        Err(_) => kill.cancel(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(agent: &str) -> Identity {
        Identity::new("acme", agent).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn only_revoked_serials_are_ended_and_closed_after_the_grace() {
        let live = Arc::new(LiveConns::default());
        let (a, _ga) = live.register(id("a"), "0a".into());
        let (b, _gb) = live.register(id("b"), "0b".into());
        let ended = live.set_revoked(HashSet::from(["0a".to_string()]));
        assert_eq!(ended, vec![(id("a"), "0a".to_string())]);
        assert!(a.revoked.is_cancelled());
        assert!(
            !a.kill.is_cancelled(),
            "closed before the stream could say why"
        );
        assert!(!b.revoked.is_cancelled() && !b.kill.is_cancelled());
        tokio::time::sleep(END_GRACE + Duration::from_millis(10)).await;
        assert!(a.kill.is_cancelled());
        assert!(!b.kill.is_cancelled());
        // Setting the same set again ends nothing new.
        assert!(
            live.set_revoked(HashSet::from(["0a".to_string()]))
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_connection_registering_after_the_revocation_is_ended_too() {
        let live = Arc::new(LiveConns::default());
        live.set_revoked(HashSet::from(["0a".to_string()]));
        let (late, _guard) = live.register(id("a"), "0a".into());
        assert!(late.revoked.is_cancelled());
    }

    #[tokio::test]
    async fn entries_leave_with_their_guard() {
        let live = Arc::new(LiveConns::default());
        let (_, guard) = live.register(id("a"), "0a".into());
        assert_eq!(live.len(), 1);
        drop(guard);
        assert!(live.is_empty());
    }
}
