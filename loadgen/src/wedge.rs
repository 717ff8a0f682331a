//! A spool filesystem whose `fdatasync` waits while a trigger file exists:
//! the spool writer then wedges inside a real spool call, as on a hung disk,
//! so tests can check that the systemd watchdog is no longer fed.
//!
//! Built on the spool's public `Filesystem` seam rather than the spool's
//! `fault-injection` feature: a feature enabled here would be unified into
//! the `owlet` sensor binary whenever the workspace is built together.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owlet_spool::fs::{Filesystem, OpenMode, RealFs, SpoolFile};

/// How often a held fdatasync looks at the trigger again.
const POLL: Duration = Duration::from_millis(50);

/// The real filesystem, with fdatasync held while `trigger` exists.
#[derive(Debug, Clone)]
pub struct WedgeFs {
    trigger: PathBuf,
}

impl WedgeFs {
    pub fn new(trigger: PathBuf) -> Self {
        Self { trigger }
    }
}

impl Filesystem for WedgeFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn SpoolFile>> {
        Ok(Box::new(WedgeFile {
            file: RealFs.open(path, mode)?,
            trigger: self.trigger.clone(),
        }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.read_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

#[derive(Debug)]
struct WedgeFile {
    file: Box<dyn SpoolFile>,
    trigger: PathBuf,
}

impl SpoolFile for WedgeFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.trigger.exists() {
            eprintln!(
                "owlet-loadgen: {} exists: holding the spool's fdatasync",
                self.trigger.display()
            );
            while self.trigger.exists() {
                std::thread::sleep(POLL);
            }
            eprintln!(
                "owlet-loadgen: {} is gone: releasing the spool's fdatasync",
                self.trigger.display()
            );
        }
        self.file.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn try_clone(&self) -> io::Result<Box<dyn SpoolFile>> {
        Ok(Box::new(WedgeFile {
            file: self.file.try_clone()?,
            trigger: self.trigger.clone(),
        }))
    }
}
