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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{INotifyWatcher, RecursiveMode, Watcher};

use crate::baseline::{Baseline, LoadError};
use crate::change::{Action, Change, FimAlert, Output, classify};
use crate::config::{FimConfig, LargeFiles, Severity};
use crate::redact::Redactor;
use crate::rules::Rules;
use crate::state::{IoBudget, Limits, Observed, observe};
use crate::stats::Stats;
use crate::store::ContentStore;
use crate::walk::walk;
use crate::who::{Attribution, UNKNOWN};

/// Notifications buffered between notify's thread and the monitor.
const CHANNEL: usize = 16 * 1024;
/// Events a path may send at once before the per-minute rate applies.
pub const RATE_BURST: u32 = 5;
/// Bound of one diff's text.
const MAX_DIFF_TEXT: usize = 64 * 1024;
/// Large files waiting for the background hasher.
const HASH_QUEUE: usize = 64;

enum Msg {
    Fs(notify::Result<notify::Event>),
    /// A large file hashed in the background.
    Hashed(PathBuf, Observed),
}

/// A path with notifications not yet settled.
#[derive(Debug)]
struct Pending {
    first: Instant,
    last: Instant,
    count: u32,
    renamed_from: Option<PathBuf>,
}

/// Token bucket of one path.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Where the monitor's outputs go.
pub type Sink = Box<dyn FnMut(Output) + Send>;

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
    pub fn start(config: FimConfig, state_dir: PathBuf, out: Sink) -> Result<Monitor, String> {
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
        .map_err(|e| format!("cannot start inotify: {e}"))?;
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
            .map_err(|e| format!("cannot start the file monitor thread: {e}"))?;
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

/// Options of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    /// At start: differences from the saved baseline happened while the
    /// agent was stopped.
    Start,
    /// After an overflow or for the fallback: ordinary changes.
    Rescan,
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
    redactor: Redactor,
    who: Option<Attribution>,
    watcher: Option<INotifyWatcher>,
    watched: HashSet<PathBuf>,
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
    ) -> Result<Engine, String> {
        let rules = Rules::new(&cfg)?;
        let redactor = Redactor::new(&cfg.redact).map_err(|e| format!("fim.redact: {e}"))?;
        crate::baseline::create_private_dir(&dir).map_err(|e| {
            format!(
                "cannot create {}: {e} (check agent.state_dir and its permissions)",
                dir.display()
            )
        })?;
        let store = ContentStore::open(dir.join("content"), cfg.content_store_max.as_u64()).ok();
        Ok(Engine {
            rules,
            dir,
            baseline: Baseline::default(),
            known_rules: HashSet::new(),
            baseline_dirty: false,
            last_save: Instant::now(),
            store,
            redactor,
            who: None,
            watcher,
            watched: HashSet::new(),
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

    /// Loads the saved baseline; a damaged one is reported and rebuilt.
    pub(crate) fn load_baseline(&mut self) -> bool {
        match Baseline::load(&self.dir) {
            Ok(b) => {
                self.known_rules = b.rules.iter().cloned().collect();
                self.baseline = b;
                true
            }
            Err(LoadError::Missing) => false,
            Err(e) => {
                let dir = self.dir.clone();
                self.alert_once(
                    "fim_baseline_corrupt",
                    &dir,
                    Severity::Warning,
                    format!(
                        "{e}; changes made while the agent was stopped cannot be reported this time"
                    ),
                );
                false
            }
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

    // ------------------------------------------------------------ watching

    /// Watches one directory; on the watch limit, marks it for scanning.
    fn watch_dir(&mut self, dir: &Path) {
        if let Err(e) = try_watch(
            self.watcher.as_mut(),
            &mut self.watched,
            &mut self.unwatched,
            dir,
        ) {
            self.watch_failed(dir, e);
        }
    }

    /// Walks `root`: each directory is watched *before* its entries are
    /// read, so a file created meanwhile is either listed or notified.
    /// Returns the files in scope.
    fn walk_and_watch(&mut self, root: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        let (watcher, watched, unwatched) =
            (&mut self.watcher, &mut self.watched, &mut self.unwatched);
        walk(
            &self.rules,
            root,
            &mut |d| {
                if let Err(e) = try_watch(watcher.as_mut(), watched, unwatched, d) {
                    failed.push((d.to_path_buf(), e));
                }
            },
            &mut |f| files.push(f),
            &mut |p, e| errors.push((p.to_path_buf(), e)),
        );
        for (d, e) in failed {
            self.watch_failed(&d, e);
        }
        for (p, e) in errors {
            self.dir_error(&p, &e);
        }
        files
    }

    fn watch_failed(&mut self, dir: &Path, e: notify::Error) {
        match e.kind {
            notify::ErrorKind::MaxFilesWatch => {
                self.unwatched.insert(dir.to_path_buf());
                // Once per episode (fallback scans retry and fail again).
                if !std::mem::replace(&mut self.limit_alerted, true) {
                    let limit = watch_limit();
                    let alert = FimAlert::new(
                        "fim_watch_limit",
                        dir.to_string_lossy(),
                        Severity::Warning,
                        format!(
                            "inotify watch limit reached at {} ({} directories watched, fs.inotify.max_user_watches = {limit}): the remaining directories are scanned every {} instead (raise the sysctl to watch them all)",
                            dir.display(),
                            self.watched.len(),
                            humantime::format_duration(self.cfg.scan_interval)
                        ),
                    )
                    .label("max_user_watches", limit)
                    .label("watched", self.watched.len());
                    self.emit(Output::Alert(alert));
                }
            }
            notify::ErrorKind::PathNotFound => {}
            notify::ErrorKind::Io(ref io) if io.kind() == io::ErrorKind::NotFound => {}
            notify::ErrorKind::Io(ref io) if io.kind() == io::ErrorKind::PermissionDenied => {
                self.alert_once(
                    "fim_permission_denied",
                    dir,
                    Severity::Warning,
                    format!("cannot watch {}: permission denied (run the agent as root or grant it read access)", dir.display()),
                );
            }
            _ => self.alert_once(
                "fim_error",
                dir,
                Severity::Warning,
                format!("cannot watch {}: {e}", dir.display()),
            ),
        }
        self.sync_stats();
    }

    fn sync_stats(&self) {
        if let Ok(mut s) = self.stats.lock() {
            s.watched_dirs = self.watched.len();
            s.unwatched_dirs = self.unwatched.len();
            s.fallback_scanning = !self.unwatched.is_empty();
            s.files = self.baseline.entries.len();
        }
    }

    // ------------------------------------------------------------ scanning

    /// Walks every tree, watches its directories, and settles every file
    /// with the metadata quick check; baseline entries not found are gone.
    pub(crate) fn full_scan(
        &mut self,
        kind: ScanKind,
        first_baseline: bool,
    ) -> (u64, u64, Duration) {
        let started = Instant::now();
        let mut budget = IoBudget::new(self.cfg.baseline_io_budget.as_u64());
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut last_progress = Instant::now();
        for root in self.rules.walk_roots() {
            // The root's parent too: a watched tree deleted (or moved away)
            // and created again is seen, not left without watches.
            if let Some(parent) = root.parent() {
                self.watch_dir(parent);
            }
            let found = self.walk_and_watch(&root);
            for path in found {
                if self.stop.load(Ordering::Relaxed) {
                    // Stopping: what was not reached is compared next time.
                    return (files, bytes, started.elapsed());
                }
                bytes += self.settle_scanned(&path, kind, &mut budget);
                files += 1;
                seen.insert(path);
                if self.progress && last_progress.elapsed() > Duration::from_millis(200) {
                    last_progress = Instant::now();
                    progress_line(files, bytes, started.elapsed(), first_baseline);
                }
                if files % 1024 == 0 {
                    self.sync_stats();
                }
            }
        }
        if self.progress {
            progress_line(files, bytes, started.elapsed(), first_baseline);
            eprintln!();
        }
        let gone: Vec<PathBuf> = self
            .baseline
            .entries
            .keys()
            .filter(|p| !seen.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.settle_scanned(&path, kind, &mut budget);
        }
        self.sync_stats();
        (files, bytes, started.elapsed())
    }

    fn dir_error(&mut self, dir: &Path, e: &io::Error) {
        if e.kind() == io::ErrorKind::PermissionDenied {
            self.alert_once(
                "fim_permission_denied",
                dir,
                Severity::Warning,
                format!("cannot read directory {}: permission denied; its files are not watched (run the agent as root or grant it read access)", dir.display()),
            );
        } else {
            self.alert_once(
                "fim_error",
                dir,
                Severity::Warning,
                format!("cannot read directory {}: {e}", dir.display()),
            );
        }
    }

    /// Settles one path found (or missed) by a scan. Returns bytes hashed.
    fn settle_scanned(&mut self, path: &Path, kind: ScanKind, budget: &mut IoBudget) -> u64 {
        let Some(rule) = self.rules.rule_for(path) else {
            // No rule covers it any more: forget it quietly.
            if self.baseline.entries.remove(path).is_some() {
                self.baseline_dirty = true;
            }
            return 0;
        };
        let diff = rule.diff;
        let known = self.known_rules.contains(&rule.spec);
        let prev = self.baseline.entries.get(path);
        let observed = observe(path, prev, true, self.limits(diff), budget);
        let hashed = match &observed {
            Observed::Entry { entry, .. } if prev.is_none_or(|p| p.sha256 != entry.sha256) => {
                entry.size
            }
            _ => 0,
        };
        let report = match kind {
            ScanKind::Start => known,
            ScanKind::Rescan => true,
        };
        let ctx = Settle {
            while_stopped: kind == ScanKind::Start,
            report,
            coalesced: 0,
            renamed_from: None,
        };
        self.apply(path, observed, ctx);
        hashed
    }

    /// Scans the directories inotify could not watch, retrying their watches.
    fn fallback_scan(&mut self) {
        let dirs: Vec<PathBuf> = std::mem::take(&mut self.unwatched).into_iter().collect();
        let mut budget = IoBudget::new(self.cfg.baseline_io_budget.as_u64());
        for dir in dirs {
            // Retry the watch first (the limit may have been raised).
            self.watch_dir(&dir);
            let entries = match std::fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.dir_error(&dir, &e);
                    continue;
                }
            };
            let mut present = HashSet::new();
            for entry in entries.flatten() {
                let path = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    if self.rules.wants_dir(&path)
                        && !self.watched.contains(&path)
                        && !self.unwatched.contains(&path)
                    {
                        self.add_tree(&path);
                    }
                } else if self.rules.rule_for(&path).is_some() {
                    self.settle_scanned(&path, ScanKind::Rescan, &mut budget);
                    present.insert(path);
                }
            }
            let gone: Vec<PathBuf> = self
                .baseline
                .entries
                .keys()
                .filter(|p| p.parent() == Some(dir.as_path()) && !present.contains(*p))
                .cloned()
                .collect();
            for p in gone {
                self.settle_scanned(&p, ScanKind::Rescan, &mut budget);
            }
        }
        if let Ok(mut s) = self.stats.lock() {
            s.fallback_scans += 1;
        }
        if self.unwatched.is_empty() {
            // Everything is watched again (the limit was raised).
            self.limit_alerted = false;
        }
        self.sync_stats();
    }

    /// A directory appeared inside a watched tree: watch it (and its
    /// subdirectories), then mark every file in it pending — files written
    /// before the watch landed are not missed.
    fn add_tree(&mut self, dir: &Path) {
        let files = self.walk_and_watch(dir);
        let now = Instant::now();
        for f in files {
            self.touch(f, now);
        }
        self.sync_stats();
    }

    // ------------------------------------------------------------ events

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Hashed(path, observed) => {
                let ctx = Settle {
                    while_stopped: false,
                    report: true,
                    coalesced: 1,
                    renamed_from: None,
                };
                self.apply(&path, observed, ctx);
            }
            Msg::Fs(Err(e)) => {
                let dir = e.paths.first().cloned().unwrap_or_default();
                self.watch_failed(&dir, e);
            }
            Msg::Fs(Ok(ev)) => self.on_event(ev),
        }
    }

    fn on_event(&mut self, ev: notify::Event) {
        if ev.need_rescan() {
            self.overflow.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        match ev.kind {
            kind if is_read(&kind) => return,
            EventKind::Other | EventKind::Any => return,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                if let [from, to] = ev.paths.as_slice() {
                    let to = to.clone();
                    self.touch(to.clone(), now);
                    if let Some(p) = self.pending.get_mut(&to) {
                        p.renamed_from = Some(from.clone());
                    }
                }
                return;
            }
            _ => {}
        }
        for path in ev.paths {
            self.on_path(path, now);
        }
    }

    /// A notification about `path`: the file itself, or a directory that
    /// appeared or disappeared.
    fn on_path(&mut self, path: PathBuf, now: Instant) {
        if self.rules.wants_dir(&path) {
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    let known = self.watched.contains(&path) || self.unwatched.contains(&path);
                    if !known {
                        self.add_tree(&path);
                    }
                }
                // Only a directory we watched has watches to drop (this
                // runs for every file notification: keep it O(1)).
                _ if self.watched.contains(&path) || self.unwatched.contains(&path) => {
                    self.forget_dir(&path);
                }
                _ => {}
            }
        }
        // Baseline entries under a directory that was deleted or moved.
        let under: Vec<PathBuf> = self
            .baseline
            .entries
            .range(path.clone()..)
            .take_while(|(p, _)| p.starts_with(&path))
            .filter(|(p, _)| **p != path)
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            self.touch(p, now);
        }
        if self.rules.rule_for(&path).is_some() || self.baseline.entries.contains_key(&path) {
            self.touch(path, now);
        }
    }

    /// A watched directory is gone (deleted, or moved away): drop its
    /// watches (the kernel dropped them for a deletion; a moved directory's
    /// watch would report under its old name).
    fn forget_dir(&mut self, dir: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|d| d.starts_with(dir))
            .cloned()
            .collect();
        for d in gone {
            if let Some(w) = self.watcher.as_mut() {
                let _ = w.unwatch(&d);
            }
            self.watched.remove(&d);
        }
        self.unwatched.retain(|d| !d.starts_with(dir));
        self.sync_stats();
    }

    fn touch(&mut self, path: PathBuf, now: Instant) {
        let p = self.pending.entry(path).or_insert(Pending {
            first: now,
            last: now,
            count: 0,
            renamed_from: None,
        });
        p.last = now;
        p.count = p.count.saturating_add(1);
    }

    /// Whether `path` may send an event now (takes a token if so).
    fn allow(&mut self, path: &Path, now: Instant) -> bool {
        let per_sec = f64::from(self.cfg.rate_limit_per_minute) / 60.0;
        let cap = f64::from(RATE_BURST.min(self.cfg.rate_limit_per_minute));
        let b = self.buckets.entry(path.to_path_buf()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(cap);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Settles every pending path that is due. Returns when the next one is.
    fn flush(&mut self, now: Instant, all: bool) -> Option<Instant> {
        let quiet = self.cfg.coalesce;
        let mut due: Vec<PathBuf> = Vec::new();
        let mut next: Option<Instant> = None;
        // A rename's source waits for its target (notify may deliver the
        // two halves in different batches): the target's settle consumes it.
        let sources: HashSet<&PathBuf> = self
            .pending
            .values()
            .filter_map(|p| p.renamed_from.as_ref())
            .collect();
        for (path, p) in &self.pending {
            let at = (p.last + quiet).min(p.first + quiet * 2);
            if !all && sources.contains(path) {
                continue;
            }
            if all || at <= now {
                due.push(path.clone());
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        // Renames first: the target's settle consumes the source.
        due.sort_by_key(|p| self.pending.get(p).is_none_or(|x| x.renamed_from.is_none()));
        for path in due {
            if !all && !self.allow(&path, now) {
                // Over the rate: keep folding; retry in a second.
                if let Some(p) = self.pending.get_mut(&path) {
                    p.first = now + Duration::from_secs(1) - quiet * 2;
                    p.last = p.first;
                }
                next = Some(next.map_or(now + Duration::from_secs(1), |n| {
                    n.min(now + Duration::from_secs(1))
                }));
                continue;
            }
            let Some(p) = self.pending.remove(&path) else {
                continue; // consumed by a rename
            };
            self.settle_event(&path, p);
        }
        if self.buckets.len() > 4096 {
            // Full buckets carry no information.
            let cap = f64::from(RATE_BURST.min(self.cfg.rate_limit_per_minute));
            let per_sec = f64::from(self.cfg.rate_limit_per_minute) / 60.0;
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec < cap);
        }
        next
    }

    fn settle_event(&mut self, path: &Path, p: Pending) {
        let Some(rule) = self.rules.rule_for(path) else {
            if self.baseline.entries.remove(path).is_some() {
                self.baseline_dirty = true;
            }
            return;
        };
        let limits = self.limits(rule.diff);
        let prev = self.baseline.entries.get(path);
        let observed = observe(path, prev, false, limits, &mut IoBudget::unlimited());
        if let Observed::Entry { entry, .. } = &observed
            && entry.hash_skipped == "too_large"
            && self.cfg.large_files == LargeFiles::Background
            && self.queue_background_hash(path)
        {
            return;
        }
        let ctx = Settle {
            while_stopped: false,
            report: true,
            coalesced: p.count.max(1),
            renamed_from: p.renamed_from,
        };
        self.apply(path, observed, ctx);
    }

    fn queue_background_hash(&mut self, path: &Path) -> bool {
        if self.hasher.is_none()
            && let Some(tx) = self.tx.clone()
        {
            let (jobs_tx, jobs_rx) = mpsc::sync_channel::<PathBuf>(HASH_QUEUE);
            let budget = self.cfg.baseline_io_budget.as_u64();
            let started = std::thread::Builder::new()
                .name("fim-hash".into())
                .spawn(move || {
                    let mut budget = IoBudget::new(budget);
                    let limits = Limits {
                        max_hash_bytes: u64::MAX,
                        max_content: 0,
                    };
                    while let Ok(path) = jobs_rx.recv() {
                        let observed = observe(&path, None, false, limits, &mut budget);
                        if tx.send(Msg::Hashed(path, observed)).is_err() {
                            break;
                        }
                    }
                });
            if started.is_ok() {
                self.hasher = Some(jobs_tx);
            }
        }
        self.hasher
            .as_ref()
            .is_some_and(|h| h.try_send(path.to_path_buf()).is_ok())
    }

    // ------------------------------------------------------------ settling

    /// Compares what is at `path` now with the baseline, reports the
    /// difference, and updates the baseline and content store.
    fn apply(&mut self, path: &Path, observed: Observed, ctx: Settle) {
        let (new, content) = match observed {
            Observed::Entry { entry, content } => (Some(entry), content),
            Observed::Gone | Observed::Dir => (None, None),
            Observed::Special(kind) => {
                self.alert_once(
                    "fim_special_file",
                    path,
                    Severity::Info,
                    format!(
                        "{} is a {kind}: skipped (only files and symlinks are watched)",
                        path.display()
                    ),
                );
                (None, None)
            }
            Observed::Error(e) => {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    self.alert_once(
                        "fim_permission_denied",
                        path,
                        Severity::Warning,
                        format!("cannot stat {}: permission denied", path.display()),
                    );
                }
                return;
            }
        };
        if let Some(e) = &new
            && e.hash_skipped == "permission_denied"
        {
            self.alert_once(
                "fim_permission_denied",
                path,
                Severity::Warning,
                format!("cannot read {}: permission denied; only its metadata is compared (run the agent as root or grant it read access)", path.display()),
            );
        }
        let Some(rule) = self.rules.rule_for(path) else {
            return;
        };
        let (tag, severity, diff_on) = (rule.tag.clone(), rule.severity, rule.diff);
        // A rename inside the tree: the source's entry moves here.
        let mut old_path = None;
        let mut old = self.baseline.entries.get(path).cloned();
        if let Some(from) = ctx.renamed_from
            && from != path
            && new.is_some()
            && self.baseline.entries.contains_key(&from)
            && std::fs::symlink_metadata(&from).is_err()
        {
            old = self.baseline.entries.remove(&from);
            self.pending.remove(&from);
            self.baseline_dirty = true;
            old_path = Some(from);
        }
        let action = if old_path.is_some() {
            Some(Action::Renamed)
        } else {
            classify(old.as_ref(), new.as_ref())
        };
        // Keep the new content for the next diff.
        let new_text = content.filter(|c| diff_on && crate::diff::is_text(c));
        if let (Some(e), Some(c), Some(store), false) =
            (&new, &new_text, self.store.as_mut(), self.read_only)
        {
            store.put(&e.sha256, c);
        }
        match &new {
            Some(e) => {
                if self.baseline.entries.get(path) != Some(e) {
                    self.baseline.entries.insert(path.to_path_buf(), e.clone());
                    self.baseline_dirty = true;
                }
            }
            None => {
                if self.baseline.entries.remove(path).is_some() {
                    self.baseline_dirty = true;
                }
            }
        }
        let Some(action) = action else {
            return;
        };
        if !ctx.report {
            return;
        }
        let mut change = Change {
            path: path.to_path_buf(),
            action,
            old_path,
            old,
            new,
            diff: String::new(),
            diff_truncated: false,
            redacted_lines: 0,
            changed_by: UNKNOWN.to_string(),
            tag,
            severity,
            while_agent_stopped: ctx.while_stopped,
            coalesced: ctx.coalesced,
        };
        if diff_on {
            self.add_diff(&mut change, new_text.as_deref());
        }
        // fanotify sees writes only: ask for content changes (the last
        // writer of a deleted, moved or chmod-ed file did not make that
        // change) and for saves by rename (content written seconds ago, then
        // renamed into place: vim, sed -i), for the content as it is now.
        let written_lately = |e: &crate::state::Entry| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|now| i64::try_from(now.as_secs()).unwrap_or(i64::MAX) - e.mtime < 10)
        };
        if let Some(who) = &self.who
            && let Some(e) = change.new.as_ref()
            && match change.action {
                Action::Modified | Action::Created => true,
                Action::Renamed => written_lately(e),
                Action::Deleted | Action::Attributes => false,
            }
            && let Some(by) = who.who_at(e.dev, e.inode, e.mtime, e.mtime_nsec)
        {
            change.changed_by = by;
        }
        self.emit(Output::Change(Box::new(change)));
    }

    fn add_diff(&self, change: &mut Change, new_text: Option<&[u8]>) {
        let empty: &[u8] = b"";
        let old_text = match change.old.as_ref() {
            None => Some(empty.to_vec()),
            Some(o) if o.file_type == crate::state::FileType::File => {
                self.store.as_ref().and_then(|s| s.get(&o.sha256))
            }
            Some(_) => None,
        };
        let new_text = match change.new.as_ref() {
            None => Some(empty),
            Some(n) if n.file_type == crate::state::FileType::File => new_text,
            Some(_) => None,
        };
        let (Some(old_text), Some(new_text)) = (old_text, new_text) else {
            return;
        };
        if old_text == new_text {
            return;
        }
        let old_label = change
            .old_path
            .as_deref()
            .unwrap_or(&change.path)
            .display()
            .to_string();
        let new_label = change.path.display().to_string();
        if let Some(d) = crate::diff::unified(
            &old_text,
            new_text,
            &old_label,
            &new_label,
            MAX_DIFF_TEXT,
            &self.redactor,
        ) {
            change.diff = d.text;
            change.diff_truncated = d.truncated;
            change.redacted_lines = d.redacted_lines;
        }
    }

    pub(crate) fn baseline_dir(&self) -> &Path {
        &self.dir
    }

    /// Saves now (the CLI); the error is ready to print.
    pub(crate) fn save_baseline_now(&mut self) -> Result<(), String> {
        self.save_baseline();
        if self.baseline_dirty {
            Err(format!(
                "cannot save the baseline in {}",
                self.dir.display()
            ))
        } else {
            Ok(())
        }
    }

    fn save_baseline(&mut self) {
        self.save_baseline_with(self.rules.specs());
    }

    fn save_baseline_with(&mut self, rules: Vec<String>) {
        self.baseline.rules = rules;
        match self.baseline.save(&self.dir) {
            Ok(()) => {
                self.baseline_dirty = false;
                self.known_rules = self.baseline.rules.iter().cloned().collect();
                if let Some(store) = self.store.as_mut() {
                    let keep: HashSet<&str> = self
                        .baseline
                        .entries
                        .values()
                        .map(|e| e.sha256.as_str())
                        .collect();
                    store.gc(&keep);
                }
            }
            Err(e) => {
                let dir = self.dir.clone();
                self.alert_once(
                    "fim_error",
                    &dir,
                    Severity::Warning,
                    format!(
                        "cannot save the baseline in {}: {e} (check disk space and permissions)",
                        dir.display()
                    ),
                );
            }
        }
        self.last_save = Instant::now();
    }

    /// Whether the baseline should be written now: every few seconds while
    /// it changes (a large baseline less often).
    fn save_due(&self) -> bool {
        let every =
            Duration::from_secs(2) + Duration::from_millis(self.baseline.entries.len() as u64 / 20);
        self.baseline_dirty && self.last_save.elapsed() >= every
    }

    // ------------------------------------------------------------ main loop

    pub(crate) fn start_attribution(&mut self) {
        if !self.cfg.attribution {
            return;
        }
        let roots = self.rules.walk_roots();
        match Attribution::start(&roots) {
            Ok(a) => self.who = Some(a),
            Err(reason) => {
                if let Ok(mut s) = self.stats.lock() {
                    s.attribution = Some(reason.clone());
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

    /// Notifications were lost: say so and rescan everything.
    fn after_overflow(&mut self, overflows: u64) {
        if let Ok(mut s) = self.stats.lock() {
            s.overflows = overflows;
        }
        let alert = FimAlert::new(
            "fim_queue_overflow",
            self.dir.to_string_lossy(),
            Severity::Warning,
            "too many file notifications at once (the event queue overflowed): rescanning the watched trees so no change is missed".to_string(),
        )
        .label("overflows", overflows);
        self.emit(Output::Alert(alert));
        // Everything pending is re-read by the rescan anyway.
        self.flush(Instant::now(), true);
        self.full_scan(ScanKind::Rescan, false);
    }

    fn run(&mut self, rx: &Receiver<Msg>, stop: &AtomicBool) {
        self.start_attribution();
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
        }
        self.flush(Instant::now(), true);
        self.save_baseline();
    }
}

/// How to report one settled path.
struct Settle {
    while_stopped: bool,
    /// False while learning files of a rule the saved baseline did not have.
    report: bool,
    coalesced: u32,
    renamed_from: Option<PathBuf>,
}

/// A notification of a read (open, close without writing): no change.
fn is_read(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if *a != AccessKind::Close(AccessMode::Write))
}

/// Watches one directory (non-recursive). Once the watch limit was hit,
/// further directories go straight to `unwatched` until the next fallback
/// scan retries them. The error is for reporting (the limit's error has
/// already put `dir` into `unwatched`).
fn try_watch(
    watcher: Option<&mut INotifyWatcher>,
    watched: &mut HashSet<PathBuf>,
    unwatched: &mut BTreeSet<PathBuf>,
    dir: &Path,
) -> Result<(), notify::Error> {
    let Some(watcher) = watcher else {
        return Ok(());
    };
    if watched.contains(dir) {
        return Ok(());
    }
    if !unwatched.is_empty() {
        unwatched.insert(dir.to_path_buf());
        return Ok(());
    }
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => {
            watched.insert(dir.to_path_buf());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The inotify watch limit in force: the smaller of the host's sysctl and
/// this user namespace's own (`/proc/sys/user/max_inotify_watches`).
fn watch_limit() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    match (
        read("/proc/sys/fs/inotify/max_user_watches"),
        read("/proc/sys/user/max_inotify_watches"),
    ) {
        (Some(a), Some(b)) => a.min(b).to_string(),
        (Some(a), None) | (None, Some(a)) => a.to_string(),
        (None, None) => "?".into(),
    }
}

fn progress_line(files: u64, bytes: u64, took: Duration, first: bool) {
    let secs = took.as_secs_f64().max(1e-3);
    eprint!(
        "\r{} {files} files, {:.1} MB ({:.0} files/s, {:.1} MB/s)   ",
        if first {
            "building baseline:"
        } else {
            "checking baseline:"
        },
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
