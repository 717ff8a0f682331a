//! The filesystem seam: every file operation the spool does after taking its
//! directory lock goes through [`Filesystem`] and [`SpoolFile`], so tests can
//! make writes, fsyncs and renames fail on command (see `FaultyFs`, behind
//! the `fault-injection` feature) the way a failing disk does.
//!
//! Production uses [`RealFs`], a thin wrapper over `std::fs`. The seam is a
//! trait object (`Arc<dyn Filesystem>`, `Box<dyn SpoolFile>`): one indirect
//! call per write or fsync costs nanoseconds next to the microseconds of the
//! system call behind it (and the milliseconds of an fdatasync), and it keeps
//! `Spool`, `SyncHandle` and their users free of a type parameter.
//!
//! The directory lock (`flock`) stays outside the seam: it is process
//! exclusion, not data, and a test filesystem works on a real directory.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How [`Filesystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created if missing, truncated if present.
    Create,
}

/// The file operations the spool needs from a directory.
pub trait Filesystem: Send + Sync + fmt::Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn SpoolFile>>;
    /// The whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Paths of the entries of `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes entry changes in `dir` (create, rename, unlink) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file of the spool.
pub trait SpoolFile: Send + Sync + fmt::Debug {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// A second handle on the same open file (shares its error state).
    fn try_clone(&self) -> io::Result<Box<dyn SpoolFile>>;
}

/// The real filesystem (`std::fs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl Filesystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn SpoolFile>> {
        let mut o = OpenOptions::new();
        o.read(true);
        match mode {
            OpenMode::Read => {}
            OpenMode::ReadWrite => {
                o.write(true);
            }
            OpenMode::Create => {
                o.write(true).create(true).truncate(true);
            }
        }
        Ok(Box::new(o.open(path)?))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl SpoolFile for File {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn try_clone(&self) -> io::Result<Box<dyn SpoolFile>> {
        Ok(Box::new(File::try_clone(self)?))
    }
}

#[cfg(feature = "fault-injection")]
pub use fault::{Fault, FaultOp, FaultyFs, SyncGate};

#[cfg(feature = "fault-injection")]
mod fault {
    //! A [`Filesystem`] over a real directory that fails operations on
    //! command, for tests.
    //!
    //! What a failure does, modelled on Linux:
    //! - a failed `fdatasync` loses what was written since the file's last
    //!   successful sync: those bytes read back as zeros from then on (the
    //!   kernel dropped the dirty pages), and a later sync succeeds;
    //! - [`Fault::NoSpace`] on a write stores the first half of the buffer,
    //!   then fails with `ENOSPC` (a short write on a full disk);
    //! - [`Fault::Io`] fails with `EIO` and changes nothing.
    //!
    //! [`FaultyFs::power_cut`] models a power loss: every file known to the
    //! filesystem is cut back to its length at its last successful sync.
    use std::collections::HashMap;
    use std::fs::File;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};

    use super::{Filesystem, OpenMode, RealFs, SpoolFile};

    /// The operations a fault can target.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FaultOp {
        Write,
        Sync,
        Rename,
        Create,
        Remove,
        SetLen,
        SyncDir,
    }

    /// How an operation fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// `EIO`, nothing changed (for `Sync`: unsynced data dropped).
        Io,
        /// `ENOSPC`; a write stores half its buffer first.
        NoSpace,
    }

    impl Fault {
        fn error(self) -> io::Error {
            match self {
                Fault::Io => io::Error::from_raw_os_error(5),
                Fault::NoSpace => io::Error::from_raw_os_error(28),
            }
        }
    }

    #[derive(Debug, Default)]
    struct State {
        /// Faults armed per operation: (fault, how many more times; None = until healed).
        armed: HashMap<FaultOp, (Fault, Option<u32>)>,
        /// Length of each file at its last successful sync.
        durable: HashMap<PathBuf, u64>,
        /// Every operation fails with EIO (the machine is going down).
        frozen: bool,
        gate: Option<Arc<GateInner>>,
        /// Counts of operations performed, by kind (successful or not).
        counts: HashMap<FaultOp, u64>,
    }

    #[derive(Debug, Default)]
    struct GateInner {
        state: Mutex<(bool, bool)>, // (entered, released)
        cv: Condvar,
    }

    /// Holds the next fdatasync until [`SyncGate::release`].
    #[derive(Debug, Clone)]
    pub struct SyncGate(Arc<GateInner>);

    impl SyncGate {
        /// Blocks until a sync is waiting at the gate.
        pub fn wait_entered(&self) {
            let mut s = lock(&self.0.state);
            while !s.0 {
                s = self.0.cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }

        /// Lets the held sync proceed.
        pub fn release(&self) {
            lock(&self.0.state).1 = true;
            self.0.cv.notify_all();
        }
    }

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See the module doc. Clones share their state.
    #[derive(Debug, Clone, Default)]
    pub struct FaultyFs {
        state: Arc<Mutex<State>>,
    }

    impl FaultyFs {
        pub fn new() -> Self {
            Self::default()
        }

        /// The next `times` operations of kind `op` fail with `fault`.
        pub fn fail(&self, op: FaultOp, fault: Fault, times: u32) {
            lock(&self.state).armed.insert(op, (fault, Some(times)));
        }

        /// Every operation of kind `op` fails with `fault` until [`FaultyFs::heal`].
        pub fn fail_always(&self, op: FaultOp, fault: Fault) {
            lock(&self.state).armed.insert(op, (fault, None));
        }

        /// Disarms every fault and unfreezes.
        pub fn heal(&self) {
            let mut s = lock(&self.state);
            s.armed.clear();
            s.frozen = false;
        }

        /// From now on every operation fails (`EIO`) and changes nothing,
        /// so dropping a spool cannot sync or write: a crash.
        pub fn freeze(&self) {
            lock(&self.state).frozen = true;
        }

        /// A power loss: every file this filesystem synced is cut back to
        /// its length at the last successful sync (files never synced are
        /// left alone), then the filesystem works again.
        pub fn power_cut(&self) {
            let mut s = lock(&self.state);
            for (path, len) in &s.durable {
                if let Ok(f) = File::options().write(true).open(path) {
                    let _ = f.set_len(*len);
                }
            }
            s.frozen = false;
            s.armed.clear();
        }

        /// The next fdatasync waits at the returned gate.
        pub fn block_next_sync(&self) -> SyncGate {
            let inner = Arc::new(GateInner::default());
            lock(&self.state).gate = Some(Arc::clone(&inner));
            SyncGate(inner)
        }

        /// Operations of kind `op` attempted so far.
        pub fn count(&self, op: FaultOp) -> u64 {
            lock(&self.state).counts.get(&op).copied().unwrap_or(0)
        }

        /// Counts `op` and returns the fault to inject, if any.
        fn check(&self, op: FaultOp) -> Option<Fault> {
            let mut s = lock(&self.state);
            *s.counts.entry(op).or_default() += 1;
            if s.frozen {
                return Some(Fault::Io);
            }
            let (fault, left) = *s.armed.get(&op)?;
            match left {
                None => {}
                Some(n) if n <= 1 => {
                    s.armed.remove(&op);
                }
                Some(n) => {
                    s.armed.insert(op, (fault, Some(n - 1)));
                }
            }
            Some(fault)
        }

        fn fails(&self, op: FaultOp) -> io::Result<()> {
            match self.check(op) {
                Some(f) => Err(f.error()),
                None => Ok(()),
            }
        }
    }

    impl Filesystem for FaultyFs {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            RealFs.create_dir_all(dir)
        }

        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn SpoolFile>> {
            if mode == OpenMode::Create {
                self.fails(FaultOp::Create)?;
            }
            let file = File::options()
                .read(true)
                .write(mode != OpenMode::Read)
                .create(mode == OpenMode::Create)
                .truncate(mode == OpenMode::Create)
                .open(path)?;
            if mode == OpenMode::Create {
                lock(&self.state).durable.insert(path.to_path_buf(), 0);
            }
            Ok(Box::new(FaultyFile {
                file,
                path: path.to_path_buf(),
                fs: self.clone(),
            }))
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            RealFs.read(path)
        }

        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.fails(FaultOp::Rename)?;
            RealFs.rename(from, to)?;
            let mut s = lock(&self.state);
            if let Some(len) = s.durable.remove(from) {
                s.durable.insert(to.to_path_buf(), len);
            }
            Ok(())
        }

        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.fails(FaultOp::Remove)?;
            RealFs.remove_file(path)?;
            lock(&self.state).durable.remove(path);
            Ok(())
        }

        fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
            RealFs.read_dir(dir)
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.fails(FaultOp::SyncDir)?;
            RealFs.sync_dir(dir)
        }
    }

    #[derive(Debug)]
    struct FaultyFile {
        file: File,
        path: PathBuf,
        fs: FaultyFs,
    }

    impl SpoolFile for FaultyFile {
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            match self.fs.check(FaultOp::Write) {
                None => SpoolFile::write_all_at(&self.file, buf, offset),
                Some(Fault::NoSpace) => {
                    SpoolFile::write_all_at(&self.file, &buf[..buf.len() / 2], offset)?;
                    Err(Fault::NoSpace.error())
                }
                Some(f) => Err(f.error()),
            }
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            SpoolFile::read_exact_at(&self.file, buf, offset)
        }

        fn sync_data(&self) -> io::Result<()> {
            let gate = lock(&self.fs.state).gate.take();
            if let Some(g) = gate {
                lock(&g.state).0 = true;
                g.cv.notify_all();
                let mut s = lock(&g.state);
                while !s.1 {
                    s = g.cv.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            }
            let len = self.file.metadata()?.len();
            match self.fs.check(FaultOp::Sync) {
                None => {
                    self.file.sync_data()?;
                    lock(&self.fs.state).durable.insert(self.path.clone(), len);
                    Ok(())
                }
                Some(f) => {
                    if !lock(&self.fs.state).frozen {
                        // The kernel dropped the dirty pages: what was
                        // written since the last good sync reads as zeros.
                        let durable = lock(&self.fs.state)
                            .durable
                            .get(&self.path)
                            .copied()
                            .unwrap_or(0);
                        if len > durable {
                            let zeros = vec![0u8; (len - durable) as usize];
                            SpoolFile::write_all_at(&self.file, &zeros, durable)?;
                        }
                    }
                    Err(f.error())
                }
            }
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.fs.fails(FaultOp::SetLen)?;
            self.file.set_len(len)?;
            let mut s = lock(&self.fs.state);
            if let Some(d) = s.durable.get_mut(&self.path) {
                *d = (*d).min(len);
            }
            Ok(())
        }

        fn try_clone(&self) -> io::Result<Box<dyn SpoolFile>> {
            Ok(Box::new(FaultyFile {
                file: self.file.try_clone()?,
                path: self.path.clone(),
                fs: self.fs.clone(),
            }))
        }
    }
}
