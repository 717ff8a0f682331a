//! The monitor: inotify notifications (through notify) in, [`Output`]s out.
//!
//! One blocking thread ("fim") owns everything: the watcher's per-directory
//! watches, the baseline, the pending (not yet reported) paths and the
//! content store. Notifications only mark paths as pending; a pending path
//! is settled — `lstat` + SHA-256 now, compared with its baseline entry —
//! once it has been quiet for `coalesce` (or `2 × coalesce` after its first
//! notification), so a burst of writes is one change with a `coalesced`
//! count, and the state reported is the state on disk, not a guess from
//! event names. That is what makes editor saves (temp file renamed over),
//! `sed -i`, truncate-and-rewrite and symlink swaps come out right.
//!
//! Guarantees:
//! * directories are watched one by one (non-recursive watches), so a new
//!   directory is watched and then scanned — files written before its watch
//!   landed are found by the scan;
//! * the parent of every watched single file is watched, so a rename over
//!   the file (or its deletion and re-creation) is seen;
//! * notifications travel on a bounded channel; when it (or the kernel's
//!   queue) overflows, the trees are rescanned and a `fim_queue_overflow`
//!   alert says so;
//! * when the inotify watch limit is reached, the directories left unwatched
//!   are scanned every `scan_interval` instead (`fim_watch_limit` alert, and
//!   retried each time in case the limit was raised);
//! * a path changes at most `rate_limit_per_minute` times a minute on the
//!   wire (burst of [`RATE_BURST`]); further changes fold into the next
//!   allowed event;
//! * the baseline is saved crash-safe at most every few seconds while it
//!   changes and at stop; at start, differences from the saved baseline are
//!   reported with `while_agent_stopped`;
//! * nothing here runs on an async worker; `out` may block (backpressure
//!   then shows up as a kernel queue overflow and a rescan, not as loss).
//!
//! Layout (one job a file, all of them `impl Engine` blocks over the state
//! defined here):
//! * this file: [`Monitor`] (start, stats, failure, stop), the [`Engine`]
//!   state and its run loop;
//! * `watch`: directory watches, walk-and-watch, the watch limit;
//! * `scan`: the full scan (start, overflow) and the fallback scan;
//! * `events`: notifications in, pending paths out;
//! * `settle`: pending paths, coalescing, the rate limit, background hashing;
//! * `apply`: one settled path compared with the baseline and reported;
//! * `persist`: loading and saving the baseline.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{INotifyWatcher, Watcher};

use crate::baseline::Baseline;
use crate::change::{FimAlert, Output};
use crate::config::{FimConfig, Severity};
use crate::redact::{RedactError, Redactor};
use crate::redacted::TextRedactor;
use crate::rules::{InvalidWatch, Rules};
use crate::state::{Limits, Observed};
use crate::stats::Stats;
use crate::store::ContentStore;
use crate::who::Attribution;

mod apply;
mod events;
mod persist;
mod scan;
mod settle;
mod watch;

pub use scan::ScanKind;
use settle::{Bucket, Pending};

/// Notifications buffered between notify's thread and the monitor.
const CHANNEL: usize = 16 * 1024;
/// Events a path may send at once before the per-minute rate applies.
pub const RATE_BURST: u32 = 5;

enum Msg {
    Fs(notify::Result<notify::Event>),
    /// A large file hashed in the background.
    Hashed(PathBuf, Observed),
}

/// Where the monitor's outputs go.
pub type Sink = Box<dyn FnMut(Output) + Send>;

/// Why the monitor (or the engine of `owlet fim`) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start inotify: {0}")]
    Inotify(notify::Error),
    #[error(transparent)]
    Rules(#[from] InvalidWatch),
    #[error("fim.redact: {0}")]
    Redact(RedactError),
    #[error("cannot create {}: {source} (check agent.state_dir and its permissions)", dir.display())]
    StateDir { dir: PathBuf, source: io::Error },
    #[error(
        "cannot read or create {}: {source} (check agent.state_dir and its permissions)",
        path.display()
    )]
    RedactKey { path: PathBuf, source: io::Error },
    #[error("cannot start the file monitor thread: {0}")]
    Thread(io::Error),
}

/// The running monitor.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<Stats>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Monitor {
    /// Starts watching. Errors (inotify unavailable, bad rules, unusable
    /// state directory) name the problem.
    pub fn start(config: FimConfig, state_dir: PathBuf, out: Sink) -> Result<Monitor, StartError> {
        let (tx, rx) = mpsc::sync_channel(CHANNEL);
        let overflow = Arc::new(AtomicBool::new(false));
        let handler_tx = tx.clone();
        let handler_overflow = overflow.clone();
        let watcher = INotifyWatcher::new(
            move |ev: notify::Result<notify::Event>| {
                // Reads (our own hashing among them: one open and one close
                // per file of a baseline) are not changes: they must not
                // fill the channel.
                if let Ok(e) = &ev
                    && is_read(&e.kind)
                {
                    return;
                }
                // Never block notify's thread: the monitor may be waiting for
                // it (adding a watch) while it waits for us.
                if let Err(TrySendError::Full(_)) = handler_tx.try_send(Msg::Fs(ev)) {
                    handler_overflow.store(true, Ordering::Relaxed);
                }
            },
            notify::Config::default(),
        )
        .map_err(StartError::Inotify)?;
        let mut engine = Engine::new(config, state_dir, out, Some(watcher))?;
        engine.overflow = overflow;
        engine.tx = Some(tx);
        let stop = engine.stop.clone();
        let stats = engine.stats.clone();
        let failure = Arc::new(Mutex::new(None));
        let (stop2, failure2) = (stop.clone(), failure.clone());
        let thread = std::thread::Builder::new()
            .name("fim".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.run(&rx, &stop2);
                }));
                if let Err(panic) = result {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    if let Ok(mut f) = failure2.lock() {
                        *f = Some(format!("file monitor stopped: {why}"));
                    }
                }
            })
            .map_err(StartError::Thread)?;
        Ok(Monitor {
            stop,
            thread: Some(thread),
            stats,
            failure,
        })
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Why the monitor stopped on its own, if it did.
    pub fn failure(&self) -> Option<String> {
        if let Ok(f) = self.failure.lock()
            && let Some(f) = f.clone()
        {
            return Some(f);
        }
        self.thread
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
            .then(|| "file monitor thread ended".to_string())
    }

    /// Settles what is pending, saves the baseline and stops. Blocking.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct Engine {
    cfg: FimConfig,
    rules: Rules,
    dir: PathBuf,
    pub(crate) baseline: Baseline,
    /// Rules the loaded baseline knew (files of other rules are learned).
    known_rules: HashSet<String>,
    baseline_dirty: bool,
    last_save: Instant,
    store: Option<ContentStore>,
    /// Why the content store could not be opened (alerted once, at start).
    store_error: Option<String>,
    redactor: TextRedactor,
    who: Option<Attribution>,
    watcher: Option<INotifyWatcher>,
    /// Watched directories, with the identity of the directory watched.
    watched: HashMap<PathBuf, watch::DirId>,
    /// Directories inotify could not watch (limit): scanned instead.
    unwatched: BTreeSet<PathBuf>,
    last_fallback_scan: Instant,
    /// `fim_watch_limit` was sent and the limit still holds.
    limit_alerted: bool,
    pending: HashMap<PathBuf, Pending>,
    buckets: HashMap<PathBuf, Bucket>,
    out: Sink,
    pub(crate) stats: Arc<Mutex<Stats>>,
    overflow: Arc<AtomicBool>,
    tx: Option<SyncSender<Msg>>,
    hasher: Option<SyncSender<PathBuf>>,
    /// (alert name, subject) already reported: once each.
    reported: HashSet<(&'static str, PathBuf)>,
    /// Print progress of the first baseline on stderr (the CLI).
    pub(crate) progress: bool,
    /// `owlet fim scan`: nothing written (baseline, content store).
    pub(crate) read_only: bool,
    /// Set when the monitor is asked to stop: long scans give up.
    stop: Arc<AtomicBool>,
}

impl Engine {
    pub(crate) fn new(
        cfg: FimConfig,
        dir: PathBuf,
        out: Sink,
        watcher: Option<INotifyWatcher>,
    ) -> Result<Engine, StartError> {
        let rules = Rules::new(&cfg)?;
        let redactor = Redactor::new(&cfg.redact).map_err(StartError::Redact)?;
        crate::baseline::create_private_dir(&dir).map_err(|source| StartError::StateDir {
            dir: dir.clone(),
            source,
        })?;
        let key = TextRedactor::load_key(&dir).map_err(|source| StartError::RedactKey {
            path: dir.join("redact.key"),
            source,
        })?;
        let redactor = TextRedactor::new(redactor, key);
        let content = dir.join("content");
        let (store, store_error) =
            match ContentStore::open(content.clone(), cfg.content_store_max.as_u64()) {
                Ok(s) => (Some(s), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "cannot open the content store {}: {e}; changed files get no diff until \
                         it can be opened (check that the directory belongs to the agent's user \
                         and the disk is not full, then restart the agent)",
                        content.display()
                    )),
                ),
            };
        Ok(Engine {
            rules,
            dir,
            baseline: Baseline::default(),
            known_rules: HashSet::new(),
            baseline_dirty: false,
            last_save: Instant::now(),
            store,
            store_error,
            redactor,
            who: None,
            watcher,
            watched: HashMap::new(),
            unwatched: BTreeSet::new(),
            last_fallback_scan: Instant::now(),
            limit_alerted: false,
            pending: HashMap::new(),
            buckets: HashMap::new(),
            out,
            stats: Arc::default(),
            overflow: Arc::default(),
            tx: None,
            hasher: None,
            reported: HashSet::new(),
            progress: false,
            read_only: false,
            stop: Arc::default(),
            cfg,
        })
    }

    fn emit(&mut self, output: Output) {
        if let Ok(mut s) = self.stats.lock() {
            s.note(&output);
        }
        (self.out)(output);
    }

    fn alert_once(
        &mut self,
        name: &'static str,
        subject: &Path,
        severity: Severity,
        message: String,
    ) {
        if self.reported.insert((name, subject.to_path_buf())) {
            let alert = FimAlert::new(name, subject.to_string_lossy(), severity, message);
            self.emit(Output::Alert(alert));
        }
    }

    fn limits(&self, diff: bool) -> Limits {
        Limits {
            max_hash_bytes: self.cfg.max_hash_bytes.as_u64(),
            max_content: if diff {
                self.cfg.max_diff_file_bytes.as_u64()
            } else {
                0
            },
        }
    }

    /// A content store that could not be opened costs every diff: say so.
    /// An earlier version's unredacted copies wiped at open: say that too.
    pub(crate) fn alert_store_state(&mut self) {
        if let Some(why) = self.store_error.take() {
            let subject = self.dir.join("content");
            self.alert_once(
                "fim_content_store_unavailable",
                &subject,
                Severity::Warning,
                why,
            );
        }
        let wiped = self.store.as_ref().map_or(0, |s| s.wiped_legacy_bytes());
        if wiped > 0 {
            let subject = self.dir.join("content");
            self.alert_once(
                "fim_content_store_wiped",
                &subject,
                Severity::Info,
                format!(
                    "removed {wiped} bytes of unredacted file copies kept by an earlier version; \
                     the next change of each file is diffed against nothing"
                ),
            );
        }
    }

    pub(crate) fn start_attribution(&mut self) {
        if !self.cfg.attribution {
            return;
        }
        let roots = self.rules.walk_roots();
        match Attribution::start(&roots) {
            Ok(a) => self.who = Some(a),
            Err(reason) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.attribution = Some(reason.to_string());
                }
                let alert = FimAlert::new(
                    "fim_attribution_unavailable",
                    "fanotify",
                    Severity::Info,
                    format!(
                        "who changed a file cannot be told ({reason}); changes say changed_by = \"unknown\""
                    ),
                );
                self.emit(Output::Alert(alert));
            }
        }
    }

    fn run(&mut self, rx: &Receiver<Msg>, stop: &AtomicBool) {
        self.start_attribution();
        self.alert_store_state();
        let had_baseline = self.load_baseline();
        let (files, bytes, took) = self.full_scan(ScanKind::Start, !had_baseline);
        if stop.load(Ordering::Relaxed) {
            // Interrupted: keep what was compared, but only under the rules
            // the saved baseline already covered — files not reached yet
            // must not count as created at the next start.
            let rules = self.known_rules.iter().cloned().collect();
            self.save_baseline_with(rules);
            return;
        }
        self.save_baseline();
        let stopped_changes = self.stats.lock().map(|s| s.changes).unwrap_or(0);
        let alert = FimAlert::new(
            "fim_baseline_ready",
            self.dir.to_string_lossy(),
            Severity::Info,
            format!(
                "file watching ready: {files} files ({:.1} MB) in {:.1}s, {} directories watched{}; {}",
                bytes as f64 / 1e6,
                took.as_secs_f64(),
                self.watched.len(),
                if self.unwatched.is_empty() {
                    String::new()
                } else {
                    format!(", {} scanned every {}", self.unwatched.len(), humantime::format_duration(self.cfg.scan_interval))
                },
                if had_baseline {
                    format!("{stopped_changes} changes while the agent was stopped")
                } else {
                    "first baseline".to_string()
                }
            ),
        )
        .label("files", files)
        .label("bytes", bytes)
        .label("seconds", format!("{:.3}", took.as_secs_f64()))
        .label("first", !had_baseline);
        self.emit(Output::Alert(alert));
        if let Ok(mut s) = self.stats.lock() {
            s.baseline_ready = true;
        }
        self.last_fallback_scan = Instant::now();
        let mut next_due: Option<Instant> = None;
        let mut overflows = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = next_due
                .map_or(Duration::from_millis(100), |d| {
                    d.saturating_duration_since(now)
                })
                .min(Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.on_msg(msg);
                    for msg in rx.try_iter().take(CHANNEL) {
                        self.on_msg(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.overflow.swap(false, Ordering::Relaxed) {
                overflows += 1;
                self.after_overflow(overflows);
            }
            next_due = self.flush(Instant::now(), false);
            if !self.unwatched.is_empty()
                && self.last_fallback_scan.elapsed() >= self.cfg.scan_interval
            {
                self.fallback_scan();
                self.last_fallback_scan = Instant::now();
            }
            if self.save_due() {
                self.save_baseline();
            }
            self.sync_stats();
        }
        self.flush(Instant::now(), true);
        self.save_baseline();
    }
}

/// A notification of a read (open, close without writing): no change.
fn is_read(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

#[cfg(test)]
mod tests;
