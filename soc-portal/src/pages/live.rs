//! The live stream of a tenant's overview (`/t/TENANT/live`, server-sent
//! events): it tells the page *that* the tenant's log grew and which kinds
//! arrived (`{"last_id": N, "kinds": [...]}`); the page then fetches the
//! server-rendered, escaped fragments. No sensor data travels through
//! JavaScript, so none can become markup there.
//!
//! Guarantees:
//! * **One poller per tenant**, however many streams are open: the
//!   [`Hub`] starts a tenant's poller with its first viewer and the poller
//!   stops (and leaves the hub) when its last viewer is gone. It holds the
//!   tenant's one [`TenantData`] (in the scaled-out SOC one PostgreSQL
//!   connection, checked out of the tenant's pool while the poller runs
//!   and counted under `[postgres] max_connections`), so 100 viewers of a
//!   tenant cost one connection, not 100.
//! * **Each viewer is told of every growth after it connected**, at most
//!   [`POLL`] after the commit that made it visible (growth between two
//!   looks of a slow viewer comes as one event: the page refreshes the
//!   same fragments either way).
//! * **The stream ends with the session** (logout, idle, disabled; checked
//!   every [`SESSION_CHECK`]) without keeping it alive itself, and when its
//!   tenant's poller fails (logged); the browser's `EventSource` then
//!   connects again and a new poller starts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::watch;

use crate::backend::TenantData;
use crate::web::{AppState, Ctx, Inner, PageError};

/// How often a tenant's poller looks at its log.
pub const POLL: Duration = Duration::from_millis(250);
/// How often a stream checks that its session is still alive.
pub const SESSION_CHECK: Duration = Duration::from_secs(10);
/// Events a poller reads at most per look (it needs only their kinds).
const READ_AT_MOST: usize = 1000;

/// What a tenant's poller last saw: the log's last id and the kinds of
/// the events that arrived with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grown {
    pub last_id: i64,
    pub kinds: Vec<String>,
}

type Sender = Arc<watch::Sender<Grown>>;

/// The running pollers, by tenant.
#[derive(Default)]
pub struct Hub(Mutex<HashMap<String, Sender>>);

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Sender>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A viewer of `tenant` joins the running poller, if there is one.
    fn join(&self, tenant: &str) -> Option<watch::Receiver<Grown>> {
        self.lock().get(tenant).map(|tx| tx.subscribe())
    }

    /// Pollers running now (for tests and the log).
    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

/// `GET /t/TENANT/live`.
pub async fn live(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let tenant = ctx.tenant()?.to_string();
    let session = ctx
        .session
        .as_ref()
        .map(|s| s.id_hash.clone())
        .ok_or(PageError::Forbidden)?;
    let rx = subscribe(&state, &tenant).await?;
    let seen = rx.borrow().last_id;
    let viewer = Viewer {
        state,
        session,
        seen,
        rx,
        checked: Instant::now(),
    };
    let stream = futures::stream::unfold(viewer, |mut v| async move {
        v.next().await.map(|event| (Ok(event), v))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Joins `tenant`'s poller, starting it when none runs.
async fn subscribe(state: &AppState, tenant: &str) -> Result<watch::Receiver<Grown>, PageError> {
    if let Some(rx) = state.0.live.join(tenant) {
        return Ok(rx);
    }
    let t = tenant.to_string();
    let (data, last_id) = state
        .blocking(move |s| {
            let data = s.data(&t)?;
            let last = data.last_id()?;
            Ok((data, last))
        })
        .await?;
    let mut pollers = state.0.live.lock();
    // Another viewer may have started one meanwhile: join it.
    if let Some(tx) = pollers.get(tenant) {
        return Ok(tx.subscribe());
    }
    let (tx, rx) = watch::channel(Grown {
        last_id,
        kinds: Vec::new(),
    });
    let tx = Arc::new(tx);
    pollers.insert(tenant.to_string(), tx.clone());
    tokio::spawn(run_poller(
        state.clone(),
        Poller {
            tenant: tenant.to_string(),
            data,
            last_id,
        },
        tx,
    ));
    Ok(rx)
}

/// One tenant's poller state, moved to the blocking pool for each look.
struct Poller {
    tenant: String,
    data: Box<dyn TenantData>,
    last_id: i64,
}

/// Looks at the tenant's log every [`POLL`] while anyone watches.
async fn run_poller(state: AppState, mut poller: Poller, tx: Sender) {
    let tenant = poller.tenant.clone();
    loop {
        tokio::time::sleep(POLL).await;
        {
            // Under the hub's lock, so no viewer joins between the count
            // and the removal.
            let mut pollers = state.0.live.lock();
            if tx.receiver_count() == 0 {
                pollers.remove(&tenant);
                return;
            }
        }
        let (back, found) = match state.blocking(move |s| look(s, poller)).await {
            Ok(looked) => looked,
            Err(e) => return stop_failed(&state, &tenant, &tx, e),
        };
        poller = back;
        if let Some(grown) = found {
            poller.last_id = grown.last_id;
            tx.send_replace(grown);
        }
    }
}

/// Ends a failed poller: logged, out of the hub; its viewers' streams end
/// and their browsers connect again (to a new poller).
fn stop_failed(state: &AppState, tenant: &str, tx: &Sender, e: PageError) {
    tracing::error!(%tenant, "portal: the live stream's look at the tenant's log failed: {e:?}; its viewers connect again");
    let mut pollers = state.0.live.lock();
    if pollers.get(tenant).is_some_and(|t| Arc::ptr_eq(t, tx)) {
        pollers.remove(tenant);
    }
}

/// One look at the log: what grew since the poller's last id.
fn look(s: &Inner, mut p: Poller) -> Result<(Poller, Option<Grown>), PageError> {
    if !p.data.has_events()? {
        // Opened before the tenant's first event: open it again, the old
        // one given back first (a poller holds one connection at most).
        let Poller {
            tenant,
            data,
            last_id,
        } = p;
        drop(data);
        p = Poller {
            data: s.data(&tenant)?,
            tenant,
            last_id,
        };
        if !p.data.has_events()? {
            return Ok((p, None));
        }
    }
    if p.data.last_id()? <= p.last_id {
        return Ok((p, None));
    }
    let events = p.data.read_after(p.last_id, READ_AT_MOST)?;
    let Some(last_id) = events.last().map(|e| e.id) else {
        return Ok((p, None));
    };
    let mut kinds: Vec<String> = events.into_iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    Ok((p, Some(Grown { last_id, kinds })))
}

/// One open stream.
struct Viewer {
    state: AppState,
    session: String,
    rx: watch::Receiver<Grown>,
    /// The last id this stream told (or found at connect).
    seen: i64,
    checked: Instant,
}

impl Viewer {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let changed = tokio::time::timeout(SESSION_CHECK, self.rx.changed()).await;
            if let Ok(Err(_)) = changed {
                return None; // the poller stopped
            }
            if self.checked.elapsed() >= SESSION_CHECK {
                self.checked = Instant::now();
                if !self.session_alive().await {
                    return None;
                }
            }
            let grown = self.rx.borrow_and_update().clone();
            if grown.last_id > self.seen {
                self.seen = grown.last_id;
                let data = serde_json::json!({ "last_id": grown.last_id, "kinds": grown.kinds });
                return Some(Event::default().event("stored").data(data.to_string()));
            }
        }
    }

    async fn session_alive(&self) -> bool {
        let (session, idle) = (self.session.clone(), self.state.0.settings.session_idle);
        self.state
            .blocking(move |s| Ok(crate::session::alive(&s.db.lock(), &session, idle)?))
            .await
            .unwrap_or(false)
    }
}
