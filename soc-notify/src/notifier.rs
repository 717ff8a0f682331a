//! The notifier: one worker per tenant that has rules, reading that
//! tenant's log with the `notify` consumer's cursor, grouping what the
//! tenant's rules match, holding it through quiet hours, and sending each
//! group through the rule's channels with retries and exponential backoff.
//!
//! Where the events, the record and the cursor live is the worker's
//! [`Ledger`] ([`crate::ledger`]): SQLite files in the embedded SOC,
//! PostgreSQL when scaled out. This module is the one loop for both.
//!
//! Invariants:
//! * a worker holds one tenant's ledger and only that tenant's rules and
//!   channels, so a rule never sees another tenant's events (and
//!   [`Rule::matches`] checks the tenant again);
//! * the worker's position moves in the record's transaction that stores
//!   the groups the events joined ([`Ledger::ingest`]), so after a restart
//!   nothing is grouped twice and nothing delivered is sent again;
//! * retry state lives in the record, not in memory: a restart (or the
//!   standby taking over) resumes the backoff where it was;
//! * a mail channel sends to its `to` and the worker's tenant's contacts
//!   ([`crate::contacts`], re-read when changed) that want the
//!   notification's severity, as recorded with each delivery; the worker
//!   reads its own tenant's contacts only;
//! * deliveries in flight are bounded per tenant ([`MAX_IN_FLIGHT`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use owlet_soc_store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, Sent};
use crate::config::{NotifyConfig, RetryConfig};
use crate::error::Result;
use crate::ledger::sqlite::SqliteLedgers;
use crate::ledger::{Ledger, Ledgers};
use crate::message::{Incident, compose, local_time};
use crate::record::{Attempt, Job, Join};
use crate::rules::{Candidate, Rule};

/// The consumer name of the notifier's cursors.
pub const CONSUMER: &str = "notify";
/// Deliveries one tenant may have in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Events read from the log per step.
const READ_BATCH: usize = 1000;
/// How often a worker applies retention to its record
/// ([`Ledger::forget_expired`]).
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// How long a worker that failed waits before it starts again.
const RESTART_AFTER: Duration = Duration::from_secs(5);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Runs the embedded SOC's notifier until `shutdown`: the store under
/// `store_root`, each tenant's record in its directory ([`supervise`]).
pub async fn run(
    store_root: PathBuf,
    config: NotifyConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    config.validate()?;
    let store = Store::open(&store_root)?;
    supervise(
        Arc::new(SqliteLedgers::new(store)),
        config,
        &state_dir(&store_root),
        shutdown,
    )
    .await
}

/// How a worker ended.
enum Ended {
    /// Shut down.
    Stopped,
    /// Another process holds the tenant: try again later.
    StandingBy,
}

/// Runs the notifier on `ledgers` until `shutdown`: a worker per tenant
/// that has rules (started when the tenant's events appear; where another
/// process holds a tenant, tried again every `standby_poll`). Returns an
/// error only for a bad configuration (a missing secret file, a channel
/// that cannot be built); a worker's failure is logged and the worker
/// restarted. `state_dir` keeps the SNMP engine's boot counter.
pub async fn supervise<L: Ledgers>(
    ledgers: Arc<L>,
    config: NotifyConfig,
    state_dir: &Path,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut channels = HashMap::new();
    for c in &config.channels {
        channels.insert(c.name().to_string(), Channel::build(c, state_dir)?);
    }
    let channels = Arc::new(channels);
    let mut by_tenant: HashMap<String, Vec<Rule>> = HashMap::new();
    for r in &config.rules {
        by_tenant
            .entry(r.tenant.clone())
            .or_default()
            .push(Rule::new(r.clone(), config.zone_of(&r.tenant)));
    }
    let mut workers: JoinSet<(String, Result<Ended>)> = JoinSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut standing_by: HashSet<String> = HashSet::new();
    let mut retry_after: HashMap<String, tokio::time::Instant> = HashMap::new();
    loop {
        match ledgers.tenants().await {
            Ok(existing) => {
                for tenant in existing {
                    let Some(rules) = by_tenant.get(&tenant) else {
                        continue;
                    };
                    if running.contains(&tenant)
                        || retry_after
                            .get(&tenant)
                            .is_some_and(|t| *t > tokio::time::Instant::now())
                    {
                        continue;
                    }
                    let worker = TenantWorker {
                        tenant: tenant.clone(),
                        zone: config.zone_of(&tenant),
                        rules: rules.clone(),
                        channels: channels.clone(),
                        retry: config.retry.clone(),
                        poll: config.poll_interval,
                    };
                    running.insert(tenant.clone());
                    let token = shutdown.clone();
                    let ledgers = ledgers.clone();
                    workers.spawn(async move {
                        let ended = match ledgers.open(&tenant).await {
                            Ok(Some(ledger)) => {
                                worker.run(ledger, token).await.map(|()| Ended::Stopped)
                            }
                            Ok(None) => Ok(Ended::StandingBy),
                            Err(e) => Err(e),
                        };
                        (tenant, ended)
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "notify: cannot list the tenants"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = workers.join_next(), if !workers.is_empty() => {
                match done {
                    Ok((tenant, ended)) => {
                        let wait = match ended {
                            Ok(Ended::StandingBy) => {
                                if standing_by.insert(tenant.clone()) {
                                    tracing::info!(tenant = %tenant, "notify: another process notifies this tenant; standing by to take over");
                                }
                                owlet_soc_bus::writer::STANDBY_POLL
                            }
                            Ok(Ended::Stopped) => RESTART_AFTER,
                            Err(e) => {
                                tracing::error!(tenant = %tenant, error = %e, "notify worker failed; restarting it in 5 s");
                                RESTART_AFTER
                            }
                        };
                        retry_after.insert(tenant.clone(), tokio::time::Instant::now() + wait);
                        running.remove(&tenant);
                    }
                    Err(e) => tracing::error!(error = %e, "notify worker panicked"),
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

struct TenantWorker {
    tenant: String,
    zone: Tz,
    rules: Vec<Rule>,
    channels: Arc<HashMap<String, Arc<Channel>>>,
    retry: RetryConfig,
    poll: Duration,
}

/// What a step leaves for the delivery half.
struct Step {
    jobs: Vec<Job>,
    more: bool,
    next_due_us: Option<i64>,
}

type Done = (Job, i64, i64, Attempt);

impl TenantWorker {
    async fn run(self, mut ledger: impl Ledger, shutdown: CancellationToken) -> Result<()> {
        let this = Arc::new(self);
        let mut in_flight: JoinSet<Done> = JoinSet::new();
        let mut busy: HashSet<(i64, String)> = HashSet::new();
        // Which delivery each task carries, to free its slot even if the
        // task fails (a panic in a channel must not pin a delivery).
        let mut tasks: HashMap<tokio::task::Id, (i64, String)> = HashMap::new();
        let mut finished: Vec<Done> = Vec::new();
        let mut retained_at: Option<tokio::time::Instant> = None;
        loop {
            if retained_at.is_none_or(|at| at.elapsed() >= RETENTION_EVERY) {
                let forgotten = ledger.forget_expired().await?;
                if forgotten > 0 {
                    tracing::info!(tenant = %this.tenant, forgotten,
                        "notify: forgot finished notifications whose events retention deleted");
                }
                retained_at = Some(tokio::time::Instant::now());
            }
            let now = now_us();
            let done = std::mem::take(&mut finished);
            let step = this.step(&mut ledger, now, done, &busy).await?;
            for job in step.jobs {
                let key = (job.notification_id, job.channel.clone());
                busy.insert(key.clone());
                let channel = this.channels.get(&job.channel).cloned();
                let retry = this.retry.clone();
                let handle = in_flight.spawn(attempt(job, channel, retry));
                tasks.insert(handle.id(), key);
            }
            if step.more {
                tokio::task::yield_now().await;
                continue;
            }
            let until_due = step
                .next_due_us
                .map(|t| Duration::from_micros((t - now_us()).max(0) as u64))
                .unwrap_or(this.poll);
            let wait = until_due.min(this.poll);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(first) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let mut next = Some(first);
                    while let Some(result) = next {
                        let id = match &result {
                            Ok((id, _)) => *id,
                            Err(e) => e.id(),
                        };
                        if let Some(key) = tasks.remove(&id) {
                            busy.remove(&key);
                        }
                        match result {
                            Ok((_, done)) => finished.push(done),
                            // Left `pending`/`retrying` in the record: tried
                            // again at its next attempt time.
                            Err(e) => tracing::error!(tenant = %this.tenant, error = %e, "notification attempt failed"),
                        }
                        next = in_flight.try_join_next_with_id();
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Give deliveries under way a moment to finish and be recorded; the
        // rest stay pending in the record and go out after the restart.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(Ok(done))) =
            tokio::time::timeout_at(deadline, in_flight.join_next()).await
        {
            finished.push(done);
        }
        in_flight.abort_all();
        for (job, started, ended, outcome) in finished {
            this.settle(&mut ledger, &job, started, ended, outcome)
                .await?;
        }
        Ok(())
    }

    async fn settle(
        &self,
        ledger: &mut impl Ledger,
        job: &Job,
        started: i64,
        ended: i64,
        outcome: Attempt,
    ) -> Result<()> {
        if matches!(outcome, Attempt::Delivered | Attempt::Sent) {
            tracing::info!(tenant = %self.tenant, notification = job.notification_id,
                channel = %job.channel, attempts = job.attempts + 1,
                latency_ms = (ended - job.message.first_detected_us) / 1000, "notification out");
        }
        let failed = match &outcome {
            Attempt::Failed { error, retry_at_us } => {
                let what = if retry_at_us.is_some() {
                    "will retry"
                } else {
                    "gave up"
                };
                tracing::warn!(tenant = %self.tenant, notification = job.notification_id,
                    channel = %job.channel, attempts = job.attempts + 1, error = %error, "notification not delivered; {what}");
                Some(format!("{}: {error}", job.channel))
            }
            _ => None,
        };
        ledger.attempted(job, started, ended, outcome).await?;
        if let Some(error) = failed {
            ledger.failed(error).await?;
        }
        Ok(())
    }

    /// Records finished attempts, reads new events into groups, closes
    /// groups whose window ended, and picks the deliveries due now.
    async fn step(
        &self,
        ledger: &mut impl Ledger,
        now: i64,
        done: Vec<Done>,
        busy: &HashSet<(i64, String)>,
    ) -> Result<Step> {
        for (job, started, ended, outcome) in done {
            self.settle(ledger, &job, started, ended, outcome).await?;
        }
        let events = ledger.events(READ_BATCH).await?;
        let more = events.len() == READ_BATCH;
        if let Some(last) = events.last() {
            let now_utc = DateTime::<Utc>::from_timestamp_micros(now).unwrap_or_default();
            let mut joins = Vec::new();
            for e in &events {
                let Some(c) = Candidate::of(e) else { continue };
                for rule in &self.rules {
                    if !rule.matches(&c) {
                        continue;
                    }
                    let mut group_key = rule.group_key(&c);
                    // During quiet hours an event that may bypass them must
                    // not wait in a held group: it gets a group of its own.
                    if rule
                        .quiet_until(crate::config::Severity::Info, now_utc)
                        .is_some()
                        && rule.quiet_until(c.severity, now_utc).is_none()
                    {
                        group_key.push_str("\u{1}urgent");
                    }
                    joins.push(Join {
                        rule: rule.name().to_string(),
                        group_key,
                        severity: c.severity,
                        log_id: e.id,
                        incident: Incident::of(&c),
                        due_us: now + rule.config.group_window.as_micros() as i64,
                    });
                }
            }
            ledger.ingest(last.id, joins, self.zone.name(), now).await?;
        }
        let now_utc = DateTime::<Utc>::from_timestamp_micros(now).unwrap_or_default();
        for g in ledger.due_groups(now).await? {
            let Some(rule) = self.rules.iter().find(|r| r.name() == g.rule) else {
                // The rule was removed from the config: nothing to send through.
                ledger
                    .compose(
                        g.id,
                        "(rule removed)".into(),
                        String::new(),
                        Vec::new(),
                        now,
                    )
                    .await?;
                continue;
            };
            if g.status == "grouping"
                && let Some(until) = rule.quiet_until(g.severity, now_utc)
            {
                ledger.hold(g.id, until.timestamp_micros()).await?;
                continue;
            }
            let note = g.held_until_us.map(|until| {
                format!(
                    "held during the quiet hours until {}",
                    local_time(until, self.zone)
                )
            });
            let (subject, body) = compose(
                &self.tenant,
                rule.name(),
                g.severity,
                &g.incidents,
                self.zone,
                note.as_deref(),
            );
            // The contacts as they are now: a change in the portal applies
            // to the next notification composed, without a restart.
            let contacts = crate::contacts::recipients(&ledger.contacts().await?, g.severity);
            let targets: Vec<(String, &'static str, String)> = rule
                .config
                .channels
                .iter()
                .filter_map(|name| {
                    let c = self.channels.get(name)?;
                    Some((name.clone(), c.type_name(), c.recipients(&contacts)))
                })
                .collect();
            ledger.compose(g.id, subject, body, targets, now).await?;
        }
        let free = MAX_IN_FLIGHT.saturating_sub(busy.len());
        let jobs = if free > 0 {
            ledger.due_jobs(now, busy.clone(), free).await?
        } else {
            Vec::new()
        };
        Ok(Step {
            jobs,
            more,
            next_due_us: ledger.next_due(now).await?,
        })
    }
}

/// One delivery attempt, with the retry decision.
async fn attempt(job: Job, channel: Option<Arc<Channel>>, retry: RetryConfig) -> Done {
    let started = now_us();
    let result = match &channel {
        Some(c) => c.send(&job.message, &job.recipients).await,
        None => Err(crate::channel::SendError::permanent(format!(
            "channel \"{}\" is no longer configured",
            job.channel
        ))),
    };
    let ended = now_us();
    let outcome = match result {
        Ok(Sent::Delivered) => Attempt::Delivered,
        Ok(Sent::Unacknowledged) => Attempt::Sent,
        Err(e) => {
            let first = job.first_attempt_us.unwrap_or(started);
            let backoff = backoff(&retry, job.attempts);
            let retry_at = ended + backoff.as_micros() as i64;
            let give_up = e.permanent || retry_at - first > retry.give_up_after.as_micros() as i64;
            Attempt::Failed {
                error: e.message,
                retry_at_us: (!give_up).then_some(retry_at),
            }
        }
    };
    (job, started, ended, outcome)
}

/// `initial · 2^attempts`, at most `max`, with up to 20 % jitter so many
/// deliveries failing together do not retry in lockstep.
pub fn backoff(retry: &RetryConfig, attempts: u32) -> Duration {
    let base = retry
        .initial
        .saturating_mul(1u32 << attempts.min(20))
        .min(retry.max);
    let jitter = base.mul_f64(rand::random::<f64>() * 0.2);
    (base + jitter).min(retry.max)
}

/// The store root's notify state directory (the SNMP boot counter).
pub fn state_dir(store_root: &Path) -> PathBuf {
    store_root.join("notify")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let r = RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            give_up_after: Duration::from_secs(60),
        };
        let b0 = backoff(&r, 0);
        assert!(b0 >= Duration::from_millis(100) && b0 <= Duration::from_millis(120));
        let b2 = backoff(&r, 2);
        assert!(b2 >= Duration::from_millis(400) && b2 <= Duration::from_millis(480));
        assert_eq!(backoff(&r, 10), Duration::from_secs(1));
    }
}
