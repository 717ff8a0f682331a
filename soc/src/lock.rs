//! One serving instance per database.
//!
//! `owlet-soc serve` takes an exclusive `flock(2)` on `DB.lock` (the SQLite
//! file's path with `.lock` appended) before it binds its port or changes any
//! stored state, and holds it for as long as the receiver lives. The file
//! holds the pid of the instance that holds the lock, so a second instance
//! can name the running one in its error.
//!
//! Guarantees:
//! * while one process holds the lock, [`InstanceLock::acquire`] fails in
//!   every other process (and for a second acquisition in the same process:
//!   flock locks belong to the open file description);
//! * the kernel releases the lock when its holder exits, however it exits
//!   (kill -9 included): a stale lock file never blocks a restart;
//! * acquiring never modifies the database; a failed acquisition does not
//!   modify the lock file either.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another owlet-soc ({holder}) is already serving this database: it holds the lock {path}. \
         Stop it first, or give this instance its own [sink] path"
    )]
    Held { path: PathBuf, holder: String },
    #[error(
        "cannot take the lock {path}: {source} (is the database's directory writable by this user?)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An exclusive lock on a database, released on drop.
#[derive(Debug)]
pub struct InstanceLock {
    _file: Flock<File>,
    path: PathBuf,
}

/// The lock file of a database: `soc.db` -> `soc.db.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl InstanceLock {
    /// Takes the lock of `db` without waiting, then records this process's
    /// pid in the lock file.
    pub fn acquire(db: &Path) -> Result<Self, LockError> {
        let path = lock_path(db);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "a process that has not written its pid yet".to_string(),
                };
                return Err(LockError::Held { path, holder });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_acquisition_names_the_holder_and_leaves_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("soc.db");
        let lock = InstanceLock::acquire(&db).unwrap();
        let err = InstanceLock::acquire(&db).unwrap_err();
        let text = err.to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(text.contains(&pid), "{text}");
        assert!(text.contains("soc.db.lock"), "{text}");
        let stored = std::fs::read_to_string(lock.path()).unwrap();
        assert_eq!(stored.trim(), std::process::id().to_string());
        drop(lock);
        InstanceLock::acquire(&db).unwrap();
    }
}
