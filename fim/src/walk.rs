//! Walks the watched trees: every directory the rules want (so it can be
//! watched) and every non-directory entry in scope (so it can be observed).
//!
//! Guarantees: never follows symlinks to directories (a link loop cannot
//! trap it); iterative (no recursion depth limit); a directory that cannot
//! be read is reported to `on_error` and skipped, never fatal.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::rules::Rules;

/// Visits `root` and below. `on_dir` sees each wanted directory before its
/// entries; `on_file` each non-directory path some rule covers.
pub fn walk(
    rules: &Rules,
    root: &Path,
    on_dir: &mut dyn FnMut(&Path),
    on_file: &mut dyn FnMut(PathBuf),
    on_error: &mut dyn FnMut(&Path, io::Error),
) {
    match fs::symlink_metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            if rules.rule_for(root).is_some() {
                on_file(root.to_path_buf());
            }
            return;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => return on_error(root, e),
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if !rules.wants_dir(&dir) {
            continue;
        }
        on_dir(&dir);
        let entries = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                on_error(&dir, e);
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // file_type() does not follow symlinks.
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir {
                stack.push(path);
            } else if rules.rule_for(&path).is_some() {
                on_file(path);
            }
        }
    }
}

/// Paths in one buffer: a walk of 100,000 files is two allocations, not
/// 100,000 (each of which would stay behind as heap fragments).
#[derive(Debug, Default)]
pub struct PathList {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl PathList {
    pub fn push(&mut self, p: &Path) {
        self.bytes.extend_from_slice(p.as_os_str().as_bytes());
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| Path::new(OsStr::from_bytes(&self.bytes[a..b])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_wanted_dirs_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), b"x").unwrap();
        fs::write(root.join("a/skip.swp"), b"x").unwrap();
        std::os::unix::fs::symlink(root, root.join("a/loop")).unwrap();
        let cfg: crate::FimConfig = toml::from_str(&format!(
            "[[watch]]\npath = \"{}\"\nexclude = [\"*.swp\"]\n",
            root.display()
        ))
        .unwrap();
        let rules = Rules::new(&cfg).unwrap();
        let (mut dirs, mut files) = (Vec::new(), Vec::new());
        walk(
            &rules,
            root,
            &mut |d| dirs.push(d.to_path_buf()),
            &mut |f| files.push(f),
            &mut |p, e| panic!("{}: {e}", p.display()),
        );
        files.sort();
        assert_eq!(files, vec![root.join("a/b/f"), root.join("a/loop")]);
        assert_eq!(dirs.len(), 3);
    }
}
