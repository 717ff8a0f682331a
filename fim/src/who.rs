//! Who wrote a file: fanotify, best effort.
//!
//! [`Attribution::start`] marks the filesystems (or, where the kernel does
//! not allow a filesystem mark, the mounts) that hold the watched paths for
//! `FAN_MODIFY` and `FAN_CLOSE_WRITE`, and a dedicated blocking thread reads
//! the events. For each event on a regular file it fstats the event's fd to
//! get (device, inode), reads `/proc/PID/status` (and `loginuid`) of the
//! writer, and remembers "uid=0(root) pid=42 comm=vim" for that file.
//!
//! Guarantees:
//! - every event fd is closed (nix's `FanotifyEvent` closes it on drop);
//! - memory is bounded: at most [`REMEMBERED`] files are remembered, and at
//!   least the last `REMEMBERED / 2` distinct files written are;
//! - attribution is by inode, so a vim-style save (write a temp file, rename
//!   it over the original) is attributed to the new inode's writer;
//! - the thread stops within [`POLL_INTERVAL`] of the `Attribution` being
//!   dropped, and never writes to the watched filesystems.
//!
//! - [`Attribution::who_at`] never names the writer of an older file that
//!   had the same inode number (unless the new file's mtime was set into the
//!   past).
//!
//! Limits (the reason this is "best effort", and why callers say
//! [`UNKNOWN`] plainly when they get None): needs CAP_SYS_ADMIN; only writes
//! are seen, so a deletion, rename, chmod or chown has no writer to name
//! (nor has `truncate(2)` by path: fanotify without FID reporting drops
//! events that come with no open file); a writer that exited and was reaped
//! before its event was read is named by pid only; a writer in another PID
//! namespace has pid 0; the inotify side may see a change a moment before
//! this thread has read the matching event (ask again shortly); the kernel
//! queue may overflow under a write storm (events lost, counted). A
//! filesystem mark sees every write on that filesystem: each costs one
//! fstat, and one /proc read per writer and [`WRITER_TTL`].

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::fanotify::{EventFFlags, Fanotify, FanotifyEvent, InitFlags, MarkFlags, MaskFlags};
use nix::sys::stat::SFlag;

/// What to say when the writer is not known.
pub const UNKNOWN: &str = "unknown";
/// Most files remembered (two generations of half this size).
pub const REMEMBERED: usize = 8192;
/// How often the reader thread checks whether it should stop.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// /etc/passwd is re-read on an unknown uid at most this often.
const PASSWD_REFRESH: Duration = Duration::from_secs(60);
/// Most users kept from /etc/passwd.
const MAX_USERS: usize = 65_536;

/// Recent writers per (device, inode), fed by a fanotify reader thread.
pub struct Attribution {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    marks: Vec<String>,
}

struct Shared {
    recent: Mutex<Recent>,
    stop: AtomicBool,
    overflows: AtomicU64,
    events: AtomicU64,
}

/// Why writers cannot be named: the kernel or the capabilities do not
/// allow it.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    #[error(
        "fanotify needs CAP_SYS_ADMIN: run the agent as root or grant it \
         CAP_SYS_ADMIN to name who changed a file"
    )]
    NeedsCapability,
    #[error("this kernel has no fanotify (CONFIG_FANOTIFY)")]
    NoFanotify,
    #[error("fanotify_init: {0}")]
    Init(Errno),
    #[error("no paths to watch")]
    NoPaths,
    /// Not one path could be marked; why, per path.
    #[error("{}", join(.0))]
    NothingMarked(Vec<MarkError>),
    #[error("cannot start the fanotify reader thread: {0}")]
    Thread(std::io::Error),
}

/// Why one watched path got no fanotify mark.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error("{}: no existing parent directory", path.display())]
    NoParent { path: PathBuf },
    #[error("fanotify_mark {}: {errno}", anchor.display())]
    Mark { anchor: PathBuf, errno: Errno },
}

fn join(errors: &[MarkError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Attribution {
    /// Starts watching writes on the mounts holding `paths`; Err(reason)
    /// when the kernel or the capabilities do not allow it. A path that does
    /// not exist yet counts by its nearest existing ancestor; one mark per
    /// filesystem.
    pub fn start(paths: &[PathBuf]) -> Result<Attribution, AttributionError> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_CLOEXEC | EventFFlags::O_LARGEFILE,
        )
        .map_err(|e| match e {
            Errno::EPERM => AttributionError::NeedsCapability,
            Errno::ENOSYS => AttributionError::NoFanotify,
            e => AttributionError::Init(e),
        })?;
        let mask = MaskFlags::FAN_MODIFY | MaskFlags::FAN_CLOSE_WRITE;
        let mut marks = Vec::new();
        let mut errors = Vec::new();
        let mut devices = HashSet::new();
        for path in paths {
            let Some((anchor, dev)) = existing_ancestor(path) else {
                errors.push(MarkError::NoParent { path: path.clone() });
                continue;
            };
            if !devices.insert(dev) {
                continue;
            }
            let on_fs = fan.mark(
                MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_FILESYSTEM,
                mask,
                AT_FDCWD,
                Some(anchor.as_path()),
            );
            let result = match on_fs {
                Ok(()) => Ok(format!("filesystem of {}", anchor.display())),
                // Filesystems without a usable fsid (some overlay / FUSE
                // setups) refuse a filesystem mark; a mount mark still works.
                Err(Errno::EXDEV | Errno::ENODEV | Errno::EINVAL | Errno::EOPNOTSUPP) => fan
                    .mark(
                        MarkFlags::FAN_MARK_ADD | MarkFlags::FAN_MARK_MOUNT,
                        mask,
                        AT_FDCWD,
                        Some(anchor.as_path()),
                    )
                    .map(|()| format!("mount of {}", anchor.display())),
                Err(e) => Err(e),
            };
            match result {
                Ok(m) => marks.push(m),
                Err(errno) => errors.push(MarkError::Mark { anchor, errno }),
            }
        }
        if marks.is_empty() {
            return Err(if errors.is_empty() {
                AttributionError::NoPaths
            } else {
                AttributionError::NothingMarked(errors)
            });
        }
        let shared = Arc::new(Shared {
            recent: Mutex::new(Recent::default()),
            stop: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            events: AtomicU64::new(0),
        });
        let reader = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("owlet-fim-who".into())
            .spawn(move || read_loop(&fan, &reader))
            .map_err(AttributionError::Thread)?;
        Ok(Attribution {
            shared,
            thread: Some(thread),
            marks,
        })
    }

    /// Who last wrote the file with this (device, inode), e.g.
    /// "uid=0(root) pid=42 comm=vim", if seen recently.
    ///
    /// Inode numbers are reused: this may name the writer of an earlier,
    /// deleted file that had the same number. Prefer [`Attribution::who_at`].
    pub fn who(&self, dev: u64, inode: u64) -> Option<String> {
        self.shared
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dev, inode)
            .map(|w| w.text.clone())
    }

    /// Who wrote the file with this (device, inode) whose modification
    /// time is now (`mtime`, `mtime_nsec`, as `stat` gives them): None when
    /// the last write seen came before that modification time — the inode
    /// number now belongs to another, newer file (or the file got content
    /// this thread did not see being written).
    ///
    /// A rename, chmod or chown moves the change time, not the modification
    /// time, so a vim-style save (write, then rename over) is still
    /// attributed; and so is a chmod after a write: ask for content changes
    /// only. A new file on a reused inode number whose mtime was set into the
    /// past (`cp -p`, `tar`) can still get the old writer.
    pub fn who_at(&self, dev: u64, inode: u64, mtime: i64, mtime_nsec: i64) -> Option<String> {
        self.shared
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(dev, inode)
            .filter(|w| w.ctime >= (mtime, mtime_nsec))
            .map(|w| w.text.clone())
    }

    /// What is marked, e.g. "filesystem of /etc".
    pub fn marks(&self) -> &[String] {
        &self.marks
    }

    /// Kernel queue overflows seen (writers lost).
    pub fn overflows(&self) -> u64 {
        self.shared.overflows.load(Ordering::Relaxed)
    }

    /// Write events read so far.
    pub fn events(&self) -> u64 {
        self.shared.events.load(Ordering::Relaxed)
    }
}

impl Drop for Attribution {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The path itself or its nearest existing ancestor, with its device.
fn existing_ancestor(path: &Path) -> Option<(PathBuf, u64)> {
    path.ancestors().find_map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (p.to_path_buf(), m.dev()))
    })
}

fn read_loop(fan: &Fanotify, shared: &Shared) {
    let own_pid = i32::try_from(std::process::id()).unwrap_or(-1);
    let mut users = Users::load();
    let mut writers = Writers::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(fan.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            nix::poll::PollTimeout::from(POLL_INTERVAL.as_millis() as u16),
        ) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        }
        let events = match fan.read_events() {
            Ok(ev) => ev,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(_) => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        for event in events {
            // `event` owns its fd; it is closed when `event` drops, on every
            // path through this body.
            handle(&event, own_pid, shared, &mut users, &mut writers);
        }
    }
}

fn handle(
    event: &FanotifyEvent,
    own_pid: i32,
    shared: &Shared,
    users: &mut Users,
    cache: &mut Writers,
) {
    if !event.check_version() {
        return;
    }
    if event.mask().contains(MaskFlags::FAN_Q_OVERFLOW) {
        shared.overflows.fetch_add(1, Ordering::Relaxed);
        return;
    }
    shared.events.fetch_add(1, Ordering::Relaxed);
    let Some(fd) = event.fd() else { return };
    let pid = event.pid();
    if pid == own_pid {
        return;
    }
    let Ok(st) = nix::sys::stat::fstat(fd) else {
        return;
    };
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return;
    }
    let writer = Writer {
        text: cache.describe(pid, users),
        ctime: (st.st_ctime, st.st_ctime_nsec),
    };
    shared
        .recent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(st.st_dev, st.st_ino, writer);
}

/// Descriptions of writers by pid, reused for [`WRITER_TTL`] so a process
/// writing in a loop costs one /proc read per TTL, not one per write.
#[derive(Default)]
struct Writers {
    by_pid: HashMap<i32, (String, Instant)>,
}

/// How long a writer's description is reused (short: a process may exec
/// another program under the same pid).
pub const WRITER_TTL: Duration = Duration::from_millis(100);
/// Most writers cached at once (the cache is cleared when full).
const MAX_WRITERS: usize = 1024;

impl Writers {
    fn describe(&mut self, pid: i32, users: &mut Users) -> String {
        if let Some((s, at)) = self.by_pid.get(&pid)
            && at.elapsed() < WRITER_TTL
        {
            return s.clone();
        }
        let s = describe(pid, users);
        if self.by_pid.len() >= MAX_WRITERS {
            self.by_pid.clear();
        }
        self.by_pid.insert(pid, (s.clone(), Instant::now()));
        s
    }
}

/// "uid=0(root) pid=42 comm=vim" (plus " auid=1000(alice)" when the login
/// user differs), from /proc; what is known when the process is gone.
fn describe(pid: i32, users: &mut Users) -> String {
    if pid <= 0 {
        return "pid not visible (writer in another PID namespace)".to_string();
    }
    let Some(status) = read_small(&format!("/proc/{pid}/status")) else {
        return format!("pid={pid} (exited before it could be named)");
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let comm = field("Name:").unwrap_or("?").to_string();
    // Uid: real effective saved fs — the effective uid is what the write
    // was checked against.
    let uid = field("Uid:")
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u32>().ok());
    let mut s = match uid {
        Some(uid) => format!("uid={uid}({}) pid={pid} comm={comm}", users.name(uid)),
        None => format!("uid=? pid={pid} comm={comm}"),
    };
    let auid = read_small(&format!("/proc/{pid}/loginuid"))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&a| a != u32::MAX);
    if let Some(auid) = auid
        && Some(auid) != uid
    {
        s.push_str(&format!(" auid={auid}({})", users.name(auid)));
    }
    s
}

/// A small /proc file, read to at most 8 KiB.
fn read_small(path: &str) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(8192)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// uid → user name from /etc/passwd (best effort; "?" when unknown).
struct Users {
    names: HashMap<u32, String>,
    loaded: Instant,
}

impl Users {
    fn load() -> Users {
        let mut names = HashMap::new();
        if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
            for line in text.lines() {
                let mut f = line.split(':');
                if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next())
                    && let Ok(uid) = uid.parse::<u32>()
                    && names.len() < MAX_USERS
                {
                    names.entry(uid).or_insert_with(|| name.to_string());
                }
            }
        }
        Users {
            names,
            loaded: Instant::now(),
        }
    }

    fn name(&mut self, uid: u32) -> String {
        if !self.names.contains_key(&uid) && self.loaded.elapsed() >= PASSWD_REFRESH {
            *self = Users::load();
        }
        self.names
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| "?".to_string())
    }
}

/// One remembered writer.
struct Writer {
    /// "uid=0(root) pid=42 comm=vim".
    text: String,
    /// The file's change time just after the write (fstat of the event's
    /// fd; a write sets mtime and ctime alike): a later mtime means content
    /// this writer did not write (or another file on a reused inode number).
    ctime: (i64, i64),
}

/// Two generations of writers: inserts go to `current`; when it is full it
/// becomes `previous` (the old `previous` is dropped). Lookups see both.
#[derive(Default)]
struct Recent {
    current: HashMap<(u64, u64), Writer>,
    previous: HashMap<(u64, u64), Writer>,
}

impl Recent {
    fn insert(&mut self, dev: u64, inode: u64, writer: Writer) {
        if self.current.len() >= REMEMBERED / 2 && !self.current.contains_key(&(dev, inode)) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert((dev, inode), writer);
    }

    fn get(&self, dev: u64, inode: u64) -> Option<&Writer> {
        self.current
            .get(&(dev, inode))
            .or_else(|| self.previous.get(&(dev, inode)))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn recent_is_bounded_and_keeps_the_latest() {
        let mut r = Recent::default();
        let w = |text: String| Writer {
            text,
            ctime: (0, 0),
        };
        for i in 0..(REMEMBERED as u64 * 3) {
            r.insert(1, i, w(format!("w{i}")));
            assert!(r.len() <= REMEMBERED);
        }
        let last = REMEMBERED as u64 * 3 - 1;
        for i in (last - REMEMBERED as u64 / 2 + 1)..=last {
            assert_eq!(
                r.get(1, i).map(|w| w.text.as_str()),
                Some(format!("w{i}").as_str())
            );
        }
        assert!(r.get(1, 0).is_none());
        r.insert(1, last, w("again".into()));
        assert_eq!(r.get(1, last).map(|w| w.text.as_str()), Some("again"));
    }

    #[test]
    fn describes_a_live_process() {
        let mut users = Users::load();
        let me = describe(std::process::id() as i32, &mut users);
        assert!(me.contains(&format!("pid={}", std::process::id())), "{me}");
        assert!(me.starts_with("uid="), "{me}");
        assert!(describe(0, &mut users).contains("not visible"));
    }

    fn is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    /// Polls `who` until it names something (the reader thread runs apart).
    fn wait_who(a: &Attribution, path: &Path) -> Option<String> {
        for _ in 0..200 {
            // Stat each time: the path may get a new inode meanwhile.
            if let Ok(m) = std::fs::metadata(path)
                && let Some(w) = a.who(m.dev(), m.ino())
            {
                return Some(w);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Runs `sh -c script`, waits until `path` is attributed, then reaps
    /// the child: until then it stays a zombie, so /proc still names it.
    /// Returns the child's pid and what `who` said.
    fn sh_attributed(a: &Attribution, path: &Path, script: &str) -> (u32, Option<String>) {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let who = wait_who(a, path);
        let pid = child.id();
        child.wait().unwrap();
        (pid, who)
    }

    /// fanotify needs root: a test that cannot run fails and says so.
    fn require_root() {
        assert!(
            is_root(),
            "this test needs root (fanotify); run the suite as root (./dev/test re-runs itself through sudo)"
        );
    }

    /// A temporary directory holding `name` with `content` (as root).
    fn root_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(name);
        std::fs::write(&f, content).unwrap();
        (dir, f)
    }

    #[test]
    fn child_append_is_attributed_with_comm_and_pid() {
        let (dir, f) = root_file("f", "a\n");
        let a = Attribution::start(&[dir.path().to_path_buf()]).unwrap();
        let (pid, who) = sh_attributed(&a, &f, &format!("echo x >> '{}'", f.display()));
        let who = who.expect("the append was attributed");
        assert!(who.contains(&format!("pid={pid} ")), "{who}");
        assert!(who.contains("comm=sh"), "{who}");
        assert!(who.starts_with("uid=0(root) "), "{who}");
        assert!(a.events() > 0);
        // who_at: valid for the modification time the write left ...
        let m = std::fs::metadata(&f).unwrap();
        let at = |m: &std::fs::Metadata| a.who_at(m.dev(), m.ino(), m.mtime(), m.mtime_nsec());
        assert_eq!(at(&m), Some(who.clone()));
        // ... not for content newer than the write seen: what a new file on
        // a reused inode number looks like (set here without a write event).
        let later = std::time::SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(at(&m), None);
        assert_eq!(a.who(m.dev(), m.ino()), Some(who));
    }

    #[test]
    fn rename_over_attributes_the_new_inode() {
        let (dir, f) = root_file("conf", "old\n");
        let old_ino = std::fs::metadata(&f).unwrap().ino();
        let a = Attribution::start(std::slice::from_ref(&f)).unwrap();
        let own = dir.path().join("own");
        std::fs::write(&own, "x").unwrap();
        // vim-style: write a temp file, then rename it over the original.
        let script = format!(
            "printf 'new\\n' > '{d}/.conf.swp' && mv '{d}/.conf.swp' '{d}/conf'",
            d = dir.path().display()
        );
        let (pid, who) = sh_attributed(&a, &f, &script);
        let m = std::fs::metadata(&f).unwrap();
        assert_ne!(m.ino(), old_ino, "a new inode");
        // The rename moved ctime past the write; who_at still names the writer.
        assert_eq!(a.who_at(m.dev(), m.ino(), m.mtime(), m.mtime_nsec()), who);
        let who = who.expect("the new inode was attributed");
        assert!(who.contains(&format!("pid={pid} ")), "{who}");
        assert!(who.contains("comm=sh"), "{who}");
        // Our own write came before the child's in the kernel queue, so it
        // has been read by now, and is not recorded (the agent's own files).
        let m = std::fs::metadata(&own).unwrap();
        assert_eq!(a.who(m.dev(), m.ino()), None);
    }

    #[test]
    fn start_without_existing_path_is_an_error() {
        require_root();
        // Relative path with no existing ancestor: "" has none either.
        let e = Attribution::start(&[]).err().unwrap().to_string();
        assert!(e.contains("no paths"), "{e}");
    }
}
