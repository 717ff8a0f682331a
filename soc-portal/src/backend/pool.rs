//! The scaled-out portal's PostgreSQL connections, kept open between
//! pages: a pool of already-connected [`SchemaSource`]s per tenant under
//! one cap for the whole portal, so a page costs a query, not a
//! connection (a PostgreSQL backend forked per page), and a burst of pages
//! cannot take all of PostgreSQL's `max_connections`.
//!
//! Guarantees:
//! * **Tenant separation exactly as without a pool.** A connection is
//!   opened for one tenant ([`SchemaSource::connect`]: `search_path` that
//!   tenant's schema alone, read-only transactions), kept among *that
//!   tenant's* idle connections and handed out only to a checkout of that
//!   same tenant; it is never re-pointed to another schema. To make room
//!   for another tenant it is closed, never reused.
//! * **At most `max` connections open** (`[postgres] max_connections` of
//!   portal.toml), idle and in use, of every tenant, plus the short
//!   connections of the tenant list ([`Pool::place`]); a connection being
//!   opened counts from before it is opened.
//! * **A checkout waits at most [`CHECKOUT_WAIT`].** It takes an idle
//!   connection of its tenant, else opens one while under the cap, else
//!   closes the longest-idle connection of another tenant and opens one in
//!   its place; when every connection is in use it waits for one to come
//!   back, then fails with [`PoolError::Exhausted`], which names the cap
//!   and the key to raise.
//! * **Idle connections are closed after [`IDLE_TIMEOUT`]** (looked at
//!   every [`REAP_EVERY`] and at each checkout).
//! * **A connection that ended** (`is_closed`: the server restarted, or
//!   terminated its backend) is never handed out again: it is dropped
//!   when it comes back and when a checkout finds it idle. Callers drop a
//!   reused connection whose first query failed ([`Conn::discard`]), so a
//!   server restart costs no page.
//! * Blocking: [`Pool::checkout`] and [`Pool::place`] wait on a condition
//!   variable and connect through the runtime; call them from blocking
//!   threads. A [`Conn`] or [`Place`] may be dropped anywhere.
//!
//! It must never hand a connection to a checkout of another tenant, and
//! never open one past the cap.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use owlet_soc_report::ReportError;
use owlet_soc_report::source::postgres::Postgres as SchemaSource;
use tokio::runtime::Handle;

/// An idle connection is closed after this long unused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often idle connections are looked at for [`IDLE_TIMEOUT`].
pub const REAP_EVERY: Duration = Duration::from_secs(30);
/// How long a checkout waits for a connection when all are in use.
pub const CHECKOUT_WAIT: Duration = Duration::from_secs(5);
/// The name the portal's connections show in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "owlet-portal";

/// Why no connection was handed out.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "all {max} PostgreSQL connections of the portal were in use for {waited:?}: raise [postgres] max_connections in portal.toml (PostgreSQL's own max_connections must allow it) or serve fewer pages at once"
    )]
    Exhausted { max: usize, waited: Duration },
    #[error(transparent)]
    Connect(#[from] ReportError),
}

/// The portal's connections (see the module doc).
pub struct Pool {
    conninfo: String,
    max: usize,
    state: Mutex<State>,
    /// Signalled whenever a connection comes back or is closed.
    freed: Condvar,
}

#[derive(Default)]
struct State {
    /// Connections open or being opened: idle, in use, and places.
    open: usize,
    /// Each tenant's idle connections, the most recently used last.
    idle: HashMap<String, Vec<Idle>>,
}

struct Idle {
    source: SchemaSource,
    since: Instant,
}

impl State {
    /// Drops idle connections that ended (their backend is gone) or were
    /// idle for [`IDLE_TIMEOUT`] by `now`.
    fn close_idle(&mut self, now: Instant) {
        let mut closed = 0;
        self.idle.retain(|_, list| {
            let before = list.len();
            list.retain(|c| {
                now.saturating_duration_since(c.since) < IDLE_TIMEOUT && !c.source.is_closed()
            });
            closed += before - list.len();
            !list.is_empty()
        });
        self.open -= closed;
    }

    /// `tenant`'s most recently used idle connection (call after
    /// [`State::close_idle`], which drops the ones that ended).
    fn take_idle(&mut self, tenant: &str) -> Option<SchemaSource> {
        let list = self.idle.get_mut(tenant)?;
        let found = list.pop().map(|c| c.source);
        if list.is_empty() {
            self.idle.remove(tenant);
        }
        found
    }

    /// Closes the idle connection unused the longest, of any tenant.
    fn close_longest_idle(&mut self) -> bool {
        let oldest = self
            .idle
            .iter()
            .filter_map(|(tenant, list)| Some((list.first()?.since, tenant.clone())))
            .min();
        let Some((_, tenant)) = oldest else {
            return false;
        };
        if let Some(list) = self.idle.get_mut(&tenant) {
            list.remove(0);
            if list.is_empty() {
                self.idle.remove(&tenant);
            }
        }
        self.open -= 1;
        true
    }
}

impl Pool {
    /// A pool of at most `max` (≥ 1) connections to `conninfo` (libpq
    /// key=value). Starts the idle reaper: call within the runtime.
    pub fn new(conninfo: &str, max: usize) -> Arc<Self> {
        let pool = Arc::new(Self {
            // First, so an application_name in the operator's string wins.
            conninfo: format!("application_name={APPLICATION_NAME} {conninfo}"),
            max: max.max(1),
            state: Mutex::default(),
            freed: Condvar::new(),
        });
        tokio::spawn(reap(Arc::downgrade(&pool)));
        pool
    }

    /// The connection string the pool's connections are opened with.
    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection of `tenant`: an idle one, or a new one (see the module
    /// doc). Blocking.
    pub fn checkout(self: &Arc<Self>, tenant: &str) -> Result<Conn, PoolError> {
        let reused = self.reserve(Some(tenant))?;
        let mut conn = Conn {
            pool: self.clone(),
            tenant: tenant.to_string(),
            reused: reused.is_some(),
            source: reused,
        };
        if conn.source.is_none() {
            // On failure `conn` drops without a source: its place is freed.
            let source =
                Handle::current().block_on(SchemaSource::connect(&self.conninfo, tenant))?;
            conn.source = Some(source);
        }
        Ok(conn)
    }

    /// A place under the cap for a connection that is not a tenant's (the
    /// tenant list's), held until dropped. Blocking.
    pub fn place(self: &Arc<Self>) -> Result<Place, PoolError> {
        self.reserve(None)?;
        Ok(Place(self.clone()))
    }

    /// An idle connection of `tenant`, or `None` with a place counted for
    /// a new one; waits up to [`CHECKOUT_WAIT`] when all are in use.
    fn reserve(&self, tenant: Option<&str>) -> Result<Option<SchemaSource>, PoolError> {
        let started = Instant::now();
        let mut state = self.lock();
        loop {
            state.close_idle(Instant::now());
            if let Some(source) = tenant.and_then(|t| state.take_idle(t)) {
                return Ok(Some(source));
            }
            if state.open < self.max || state.close_longest_idle() {
                state.open += 1;
                return Ok(None);
            }
            let Some(left) = CHECKOUT_WAIT
                .checked_sub(started.elapsed())
                .filter(|l| !l.is_zero())
            else {
                return Err(PoolError::Exhausted {
                    max: self.max,
                    waited: CHECKOUT_WAIT,
                });
            };
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A connection back from a checkout: idle again when still open,
    /// else (or `None`) its place is freed.
    fn give_back(&self, tenant: String, source: Option<SchemaSource>) {
        let mut state = self.lock();
        match source {
            Some(source) if !source.is_closed() => {
                state.idle.entry(tenant).or_default().push(Idle {
                    source,
                    since: Instant::now(),
                })
            }
            _ => state.open -= 1,
        }
        drop(state);
        self.freed.notify_all();
    }

    /// Connections open now (idle, in use, places).
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

/// Closes idle connections past [`IDLE_TIMEOUT`] while the pool lives.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(REAP_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.lock().close_idle(Instant::now());
        pool.freed.notify_all();
    }
}

/// A checked-out connection of one tenant; back to that tenant's idle
/// connections when dropped.
pub struct Conn {
    pool: Arc<Pool>,
    tenant: String,
    /// Whether it served an earlier checkout.
    reused: bool,
    /// `None` only while being opened or discarded.
    source: Option<SchemaSource>,
}

impl Conn {
    /// Whether it served an earlier checkout (it may have ended since).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Closes it instead of giving it back (a query on it failed).
    pub fn discard(mut self) {
        self.source = None;
    }

    pub fn source(&self) -> &SchemaSource {
        // Set by `checkout` before it returns; `discard` consumes the `Conn`.
        self.source
            .as_ref()
            .unwrap_or_else(|| unreachable!("a checked-out Conn has its connection"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.pool
            .give_back(std::mem::take(&mut self.tenant), self.source.take());
    }
}

/// A place under the cap held for a connection outside the pool.
pub struct Place(Arc<Pool>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.give_back(String::new(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_soc_bus::testkit::Postgres;
    use owlet_soc_report::Source;

    async fn backends(admin: &tokio_postgres::Client) -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&APPLICATION_NAME],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// A PostgreSQL, its superuser's connection and a pool of `max` to it.
    async fn started(max: usize) -> (Postgres, tokio_postgres::Client, Arc<Pool>) {
        let pg = Postgres::start();
        let admin = pg.client("owlet").await;
        let pool = Pool::new(&pg.conninfo("owlet"), max);
        (pg, admin, pool)
    }

    /// Runs `f` on a blocking thread, as the pages do.
    async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        tokio::task::spawn_blocking(f).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cap_holds_other_tenants_make_room_and_a_full_pool_says_what_to_raise() {
        let (_pg, admin, pool) = started(2).await;

        // Two of acme in use: the cap. A third waits, then names the key.
        let p = pool.clone();
        let (a1, a2, acme_pid, third) = blocking(move || {
            let a1 = p.checkout("acme").unwrap();
            let a2 = p.checkout("acme").unwrap();
            let third = p.checkout("beta").err().unwrap().to_string();
            let acme_pid = pid(&a1);
            (a1, a2, acme_pid, third)
        })
        .await;
        assert!(
            third.contains("[postgres] max_connections") && third.contains("all 2"),
            "{third}"
        );
        assert_eq!(backends(&admin).await, 2);
        assert_eq!(a1.source().tenant(), "acme");

        // Given back, they are acme's idle ones: acme reuses one, beta
        // closes the other to open its own, never reusing acme's.
        drop((a1, a2));
        let p = pool.clone();
        let (again, beta, beta_pid) = blocking(move || {
            let again = p.checkout("acme").unwrap();
            let beta = p.checkout("beta").unwrap();
            let beta_pid = pid(&beta);
            (again, beta, beta_pid)
        })
        .await;
        assert!(again.reused() && !beta.reused());
        assert_eq!(beta.source().tenant(), "beta");
        assert_ne!(beta_pid, acme_pid);
        assert_eq!(pool.open(), 2);
        assert_eq!(backends(&admin).await, 2, "the cap held");

        // A place for the tenant list counts too.
        drop(again);
        let p = pool.clone();
        let place = blocking(move || p.place().unwrap()).await;
        assert_eq!(pool.open(), 2);
        drop((beta, place));

        // Idle past the timeout: closed.
        pool.lock().close_idle(Instant::now() + IDLE_TIMEOUT);
        assert_eq!(pool.open(), 0, "idle past the timeout, still counted");
        for _ in 0..50 {
            if backends(&admin).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(backends(&admin).await, 0, "idle connections closed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_whose_backend_ended_is_not_handed_out_again() {
        let (_pg, admin, pool) = started(2).await;
        let p = pool.clone();
        let first = blocking(move || {
            let c = p.checkout("acme").unwrap();
            pid(&c)
        })
        .await;
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&APPLICATION_NAME],
            )
            .await
            .unwrap();
        // The client notices the end of its backend on its own.
        for _ in 0..50 {
            if pool.lock().idle["acme"]
                .iter()
                .all(|c| c.source.is_closed())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = pool.clone();
        let (next, reused) = blocking(move || {
            let c = p.checkout("acme").unwrap();
            (pid(&c), c.reused())
        })
        .await;
        assert!(!reused, "the ended connection was handed out again");
        assert_ne!(first, next);
        assert_eq!(pool.open(), 1);
    }

    fn pid(c: &Conn) -> i64 {
        c.source()
            .row("SELECT pg_backend_pid()::int8", &[])
            .unwrap()
            .int(0)
    }
}
