//! `owlet-soc tail`: stored events, filtered, as they arrive.
//!
//! Names given on the command line are checked against what exists: an
//! unknown tenant or agent is an error that lists the known ones (a tail
//! that waits forever for a typo helps no one). History (`--since`,
//! `--from-start`) is read with the store's filtered scan; following reads
//! each tenant's log by cursor.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::{Context, bail};
use owlet_soc_store::{Filter, Store, StoredEvent, TenantReader};

use crate::query::{self, AgentRow};

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    pub tenant: Option<String>,
    /// `TENANT/AGENT` or `AGENT`.
    pub agent: Option<String>,
    pub kinds: Vec<String>,
    pub severities: Vec<String>,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
    pub from_start: bool,
    pub follow: bool,
    pub json: bool,
}

/// The kinds of event a filter may name.
pub const KINDS: &[&str] = owlet_proto::KIND_NAMES;

/// The tenants to read and the agent filter, checked against the known
/// agents and tenants.
pub fn resolve(
    store: &Store,
    agents: &[AgentRow],
    options: &TailOptions,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    for kind in &options.kinds {
        if !KINDS.contains(&kind.as_str()) {
            bail!("unknown kind {kind:?}; kinds: {}", KINDS.join(", "));
        }
    }
    for severity in &options.severities {
        if !["info", "warning", "critical"].contains(&severity.as_str()) {
            bail!("unknown severity {severity:?}; severities: info, warning, critical");
        }
    }
    let mut tenants = store.tenants()?;
    for a in agents {
        if !tenants.contains(&a.tenant) {
            tenants.push(a.tenant.clone());
        }
    }
    tenants.sort();
    let known_agents = |tenant: Option<&str>| -> String {
        let names: Vec<String> = agents
            .iter()
            .filter(|a| tenant.is_none_or(|t| a.tenant == t))
            .map(|a| format!("{}/{}", a.tenant, a.agent_id))
            .collect();
        if names.is_empty() {
            "none yet".into()
        } else {
            names.join(", ")
        }
    };
    if let Some(t) = &options.tenant
        && !tenants.contains(t)
    {
        bail!("no tenant {t:?}; tenants: {}", list(&tenants));
    }
    let mut selected: Vec<String> = match &options.tenant {
        Some(t) => vec![t.clone()],
        None => tenants.clone(),
    };
    let mut agent_ids = Vec::new();
    if let Some(agent) = &options.agent {
        let (tenant, id) = match agent.split_once('/') {
            Some((t, a)) => (Some(t), a),
            None => (None, agent.as_str()),
        };
        if let (Some(t), Some(given)) = (tenant, &options.tenant)
            && t != given
        {
            bail!("--agent {agent} is not in --tenant {given}");
        }
        let tenant = tenant.or(options.tenant.as_deref());
        if let Some(t) = tenant
            && !tenants.iter().any(|x| x == t)
        {
            bail!("no tenant {t:?}; tenants: {}", list(&tenants));
        }
        let matching: Vec<&AgentRow> = agents
            .iter()
            .filter(|a| a.agent_id == id && tenant.is_none_or(|t| a.tenant == t))
            .collect();
        if matching.is_empty() {
            let hint = if tenant.is_none() && tenants.iter().any(|t| t == id) {
                format!(" ({id:?} is a tenant: use --tenant {id})")
            } else {
                String::new()
            };
            bail!("no agent {agent:?}{hint}; agents: {}", known_agents(tenant));
        }
        selected = matching.iter().map(|a| a.tenant.clone()).collect();
        selected.dedup();
        agent_ids.push(id.to_string());
    }
    Ok((selected, agent_ids))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none yet".into()
    } else {
        names.join(", ")
    }
}

/// Runs the tail until the reader of `out` goes away or, without
/// `follow`, until the history is printed. Each event is printed once: the
/// history stops at each tenant's cursor, taken before it is read, and
/// following starts there.
pub fn run(
    store: &Store,
    agents: &[AgentRow],
    options: &TailOptions,
    out: &mut impl Write,
) -> anyhow::Result<i32> {
    let (tenants, agent_ids) = resolve(store, agents, options)?;
    let filter = Filter {
        from_us: options.since_us,
        to_us: options.until_us,
        kinds: options.kinds.clone(),
        agents: agent_ids,
        severities: options.severities.clone(),
        after_id: None,
    };
    // (tenant, reader, last id printed or skipped)
    let mut cursors: Vec<(String, Option<TenantReader>, i64)> = Vec::new();
    for tenant in &tenants {
        let reader = store.reader(tenant).ok();
        let last = match &reader {
            Some(r) => r.last_id()?,
            None => 0,
        };
        if let Some(r) = &reader
            && (options.from_start || options.since_us.is_some())
        {
            let mut done = false;
            let mut failed = None;
            r.scan(&filter, |e| {
                if e.id > last {
                    // Stored while the history is read: following prints it.
                    return ControlFlow::Continue(());
                }
                match print(out, r, &e, options.json) {
                    Ok(true) => ControlFlow::Continue(()),
                    Ok(false) => {
                        done = true;
                        ControlFlow::Break(())
                    }
                    Err(err) => {
                        failed = Some(err);
                        ControlFlow::Break(())
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if done {
                return Ok(0);
            }
        }
        cursors.push((tenant.clone(), reader, last));
    }
    if !options.follow {
        return Ok(0);
    }
    loop {
        let mut any = false;
        for (tenant, reader, last) in &mut cursors {
            if reader.is_none() {
                // A tenant whose first event has not arrived yet.
                *reader = store.reader(tenant).ok();
            }
            let Some(r) = reader else { continue };
            let events = r.read_after(*last, 1000).context("reading the store")?;
            any |= !events.is_empty();
            for e in events {
                *last = e.id;
                if filter.matches(&e) && !print(out, r, &e, options.json)? {
                    return Ok(0);
                }
            }
        }
        if !write_or_done(out.flush())? {
            return Ok(0);
        }
        if !any {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Prints one event; `Ok(false)` when stdout's reader went away.
fn print(
    out: &mut impl Write,
    reader: &TenantReader,
    e: &StoredEvent,
    json: bool,
) -> anyhow::Result<bool> {
    let line = if json {
        query::json_line(e)
    } else {
        let mut line = query::text_line(e);
        if let Some(raised) = reader.raised_at(e)? {
            let lasted =
                Duration::from_micros((e.time_us - raised).max(0) as u64 / 1_000_000 * 1_000_000);
            line.push_str(&format!(
                " (cleared after {}, raised {})",
                humantime::format_duration(lasted),
                query::rfc3339(raised)
            ));
        }
        line
    };
    write_or_done(writeln!(out, "{line}"))
}

/// `Ok(false)` when stdout's reader went away (`owlet-soc tail | head`).
pub fn write_or_done(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use owlet_proto::v1::{Alert, Event, event::Kind};
    use owlet_soc_store::Batch;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn alert(seq: u64, time: SystemTime, subject: &str) -> Event {
        Event {
            seq,
            time: Some(owlet_proto::timestamp(time)),
            kind: Some(Kind::Alert(Alert {
                name: "check_down".into(),
                subject: subject.into(),
                ..Default::default()
            })),
        }
    }

    fn store_alert(store: &Store, seq: u64, time: SystemTime, subject: &str, received: SystemTime) {
        let events = [alert(seq, time, subject)];
        let batch = Batch {
            agent: "s1",
            zone: "UTC",
            events: &events,
            sequenced: true,
        };
        store
            .writer("acme")
            .unwrap()
            .append(&[batch], received)
            .unwrap();
    }

    /// Stdout of the tail: the first line printed stores one more event
    /// (it lands while the history is read); flushing fails as a closed
    /// pipe once the test has seen enough.
    struct Terminal {
        store: Store,
        printed: Arc<Mutex<String>>,
        stored_during_history: bool,
        closed: Arc<AtomicBool>,
    }

    impl Write for Terminal {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.stored_during_history {
                self.stored_during_history = true;
                let now = SystemTime::now();
                store_alert(&self.store, 3, now - HOUR / 2, "late-alert", now);
            }
            self.printed
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(buf));
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            if self.closed.load(Ordering::SeqCst) {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            Ok(())
        }
    }

    #[test]
    fn an_event_stored_while_the_history_is_read_is_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = SystemTime::now();
        // Two days of arrival: the history reads the older partition first,
        // and "late" arrives in today's before that one is read.
        store_alert(&store, 1, now - 48 * HOUR, "first-alert", now - 48 * HOUR);
        store_alert(&store, 2, now - HOUR, "second-alert", now);
        let printed = Arc::new(Mutex::new(String::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let mut terminal = Terminal {
            store: Store::existing(dir.path()),
            printed: printed.clone(),
            stored_during_history: false,
            closed: closed.clone(),
        };
        let options = TailOptions {
            tenant: Some("acme".into()),
            since_us: Some(0),
            follow: true,
            ..Default::default()
        };
        let tail = std::thread::spawn(move || run(&store, &[], &options, &mut terminal).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !printed.lock().unwrap().contains("late-alert") {
            assert!(
                std::time::Instant::now() < deadline,
                "the late alert was never printed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Several turns of following (250 ms each) for a second copy.
        std::thread::sleep(Duration::from_millis(800));
        closed.store(true, Ordering::SeqCst);
        assert_eq!(tail.join().unwrap(), 0);
        let printed = printed.lock().unwrap();
        for subject in ["first-alert", "second-alert", "late-alert"] {
            let times = printed.lines().filter(|l| l.contains(subject)).count();
            assert_eq!(times, 1, "{subject:?} printed {times} times:\n{printed}");
        }
    }
}
