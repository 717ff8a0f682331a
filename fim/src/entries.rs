//! The baseline's entries in memory, compact: about 110 bytes plus the
//! path's own bytes per watched file, instead of a `PathBuf`, a hex
//! `String` and two more `String`s in a B-tree node (about 680 bytes a
//! file in the running agent).
//!
//! Layout: `main`, a `Vec` of fixed-size [`Slot`]s sorted by path (in
//! [`Path`]'s own, component-wise order), whose paths live in one byte
//! buffer (`arena`) and whose rare symlink targets live in a side `Vec`;
//! plus `delta`, a small `BTreeMap` of paths added since the last merge.
//! A removal marks its slot dead; `delta` and the dead slots are merged
//! into a new `main` (exact capacity) once they pass a fraction of it, so
//! an insert costs amortised O(1) moves and a lookup O(log n) compares.
//!
//! Invariants:
//! * a path is in `main` (alive) or in `delta`, never both; `main` is
//!   strictly sorted, dead slots included;
//! * [`Entry`] in and out is lossless for every entry [`crate::state::observe`]
//!   makes (hex SHA-256 or "", the three `hash_skipped` reasons,
//!   nanoseconds below 10⁹); [`Entries::pack`] rejects anything else, so a
//!   baseline read from disk cannot smuggle in what cannot be stored;
//! * the order, equality and prefix queries are those of
//!   `BTreeMap<PathBuf, Entry>`, which this replaces.
//!
//! Never: allocates per entry in `main` (one buffer for all paths), panics
//! on a lookup, or lets `delta` grow past a fraction of `main` (its
//! allocations are the ones that fragment the heap).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::state::{Entry, FileType};

/// The fixed part of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) sha256: [u8; 32],
    pub(crate) size: u64,
    pub(crate) dev: u64,
    pub(crate) inode: u64,
    pub(crate) mtime: i64,
    pub(crate) ctime: i64,
    pub(crate) mtime_nsec: u32,
    pub(crate) ctime_nsec: u32,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// [`SYMLINK`], [`HASHED`], the `hash_skipped` code ([`SKIP_MASK`]).
    pub(crate) flags: u8,
}

pub(crate) const SYMLINK: u8 = 1;
pub(crate) const HASHED: u8 = 2;
pub(crate) const SKIP_SHIFT: u8 = 2;
pub(crate) const SKIP_MASK: u8 = 3 << SKIP_SHIFT;
/// Flags a valid [`Meta`] may carry (what is stored on disk).
pub(crate) const STORED_FLAGS: u8 = SYMLINK | HASHED | SKIP_MASK;
/// In memory only: the slot was removed.
const DEAD: u8 = 0x40;
/// In memory only: seen by the running scan.
const MARK: u8 = 0x80;

/// Below this many added or removed entries, no merge (tests merge often).
const MIN_MERGE: usize = if cfg!(test) { 4 } else { 1024 };
/// Dead symlink targets (and KiB of dead path bytes) worth a compaction.
const MIN_COMPACT: usize = if cfg!(test) { 1 } else { 64 };

const SKIPPED: [&str; 4] = ["", "too_large", "permission_denied", "vanished"];

/// Why an [`Entry`] cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("sha256 is neither empty nor 64 lower-case hex digits")]
    Hash,
    #[error("hash_skipped {0:?} is not too_large, permission_denied or vanished")]
    Skipped(String),
    #[error("a nanosecond field is out of range")]
    Nanos,
}

impl Meta {
    fn to_entry(self, target: &str) -> Entry {
        Entry {
            file_type: if self.flags & SYMLINK != 0 {
                FileType::Symlink
            } else {
                FileType::File
            },
            size: self.size,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            dev: self.dev,
            inode: self.inode,
            mtime: self.mtime,
            mtime_nsec: i64::from(self.mtime_nsec),
            ctime: self.ctime,
            ctime_nsec: i64::from(self.ctime_nsec),
            sha256: if self.flags & HASHED != 0 {
                crate::state::hex(&self.sha256)
            } else {
                String::new()
            },
            hash_skipped: SKIPPED[usize::from((self.flags & SKIP_MASK) >> SKIP_SHIFT)].to_string(),
            symlink_target: target.to_string(),
        }
    }

    /// The stored form of `e` (its symlink target kept apart).
    pub(crate) fn pack(e: &Entry) -> Result<Meta, PackError> {
        let mut flags = 0;
        if e.file_type == FileType::Symlink {
            flags |= SYMLINK;
        }
        let mut sha256 = [0u8; 32];
        if !e.sha256.is_empty() {
            sha256 = parse_hex(&e.sha256).ok_or(PackError::Hash)?;
            flags |= HASHED;
        }
        let skip = SKIPPED
            .iter()
            .position(|s| *s == e.hash_skipped)
            .ok_or_else(|| PackError::Skipped(e.hash_skipped.clone()))?;
        flags |= (skip as u8) << SKIP_SHIFT;
        let nanos = |n: i64| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n < 1_000_000_000)
                .ok_or(PackError::Nanos)
        };
        Ok(Meta {
            sha256,
            size: e.size,
            dev: e.dev,
            inode: e.inode,
            mtime: e.mtime,
            ctime: e.ctime,
            mtime_nsec: nanos(e.mtime_nsec)?,
            ctime_nsec: nanos(e.ctime_nsec)?,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            flags,
        })
    }

    /// Equal as entries (the in-memory marks aside).
    fn same(&self, other: &Meta) -> bool {
        Meta {
            flags: self.flags & STORED_FLAGS,
            ..*self
        } == Meta {
            flags: other.flags & STORED_FLAGS,
            ..*other
        }
    }

    pub(crate) fn hash(&self) -> Option<&[u8; 32]> {
        (self.flags & HASHED != 0).then_some(&self.sha256)
    }
}

fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// An entry of `delta`: its fixed part and its symlink target.
type Added = (Meta, Option<Box<str>>);

/// One entry of `main`: 112 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    meta: Meta,
    path_at: u32,
    path_len: u32,
    /// 1 + index into `targets`; 0: no symlink target.
    target: u32,
}

/// A path's entry in memory; see the module doc.
#[derive(Debug, Clone, Default)]
pub struct Entries {
    main: Vec<Slot>,
    arena: Vec<u8>,
    targets: Vec<Box<str>>,
    delta: BTreeMap<PathBuf, Added>,
    dead: usize,
    /// Targets in `targets` no slot refers to any more.
    dead_targets: usize,
    /// Bytes of `arena` no slot refers to any more.
    dead_bytes: usize,
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

impl Entries {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries alive.
    pub fn len(&self) -> usize {
        self.main.len() - self.dead + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot_path(&self, s: &Slot) -> &Path {
        let at = s.path_at as usize;
        as_path(&self.arena[at..at + s.path_len as usize])
    }

    fn slot_target(&self, s: &Slot) -> &str {
        match s.target {
            0 => "",
            t => self.targets.get(t as usize - 1).map_or("", |t| t),
        }
    }

    /// Index of the alive slot of `path` in `main`.
    fn find(&self, path: &Path) -> Option<usize> {
        let i = self
            .main
            .binary_search_by(|s| self.slot_path(s).cmp(path))
            .ok()?;
        (self.main[i].meta.flags & DEAD == 0).then_some(i)
    }

    pub fn get(&self, path: &Path) -> Option<Entry> {
        if let Some(i) = self.find(path) {
            let s = &self.main[i];
            return Some(s.meta.to_entry(self.slot_target(s)));
        }
        self.delta
            .get(path)
            .map(|(m, t)| m.to_entry(t.as_deref().unwrap_or("")))
    }

    pub fn contains_key(&self, path: &Path) -> bool {
        self.find(path).is_some() || self.delta.contains_key(path)
    }

    /// Whether the stored entry of `path` equals `e`.
    pub fn holds(&self, path: &Path, e: &Entry) -> bool {
        let Ok(meta) = Meta::pack(e) else {
            return false;
        };
        if let Some(i) = self.find(path) {
            let s = &self.main[i];
            return s.meta.same(&meta) && self.slot_target(s) == e.symlink_target;
        }
        self.delta
            .get(path)
            .is_some_and(|(m, t)| m.same(&meta) && t.as_deref().unwrap_or("") == e.symlink_target)
    }

    /// Stores `e` for `path`. An entry that cannot be stored (see
    /// [`Meta::pack`]; `observe` never makes one) is refused.
    pub fn insert(&mut self, path: &Path, e: &Entry) -> Result<(), PackError> {
        let meta = Meta::pack(e)?;
        self.insert_meta(path, meta, &e.symlink_target);
        Ok(())
    }

    pub(crate) fn insert_meta(&mut self, path: &Path, meta: Meta, target: &str) {
        if let Some(i) = self.find(path) {
            let keep_mark = self.main[i].meta.flags & MARK;
            let old_target = self.slot_target(&self.main[i]);
            if old_target != target {
                if self.main[i].target != 0 {
                    self.dead_targets += 1;
                }
                self.main[i].target = self.push_target(target);
            }
            self.main[i].meta = Meta {
                flags: meta.flags | keep_mark,
                ..meta
            };
            self.maybe_merge();
            return;
        }
        let target = (!target.is_empty()).then(|| Box::from(target));
        match self.delta.get_mut(path) {
            Some(v) => {
                let keep_mark = v.0.flags & MARK;
                *v = (
                    Meta {
                        flags: meta.flags | keep_mark,
                        ..meta
                    },
                    target,
                );
            }
            None => {
                self.delta.insert(path.to_path_buf(), (meta, target));
            }
        }
        self.maybe_merge();
    }

    fn push_target(&mut self, target: &str) -> u32 {
        if target.is_empty() {
            return 0;
        }
        self.targets.push(Box::from(target));
        u32::try_from(self.targets.len()).unwrap_or(0)
    }

    pub fn remove(&mut self, path: &Path) -> Option<Entry> {
        if let Some(i) = self.find(path) {
            let s = self.main[i];
            let e = s.meta.to_entry(self.slot_target(&s));
            self.main[i].meta.flags |= DEAD;
            self.dead += 1;
            if s.target != 0 {
                self.dead_targets += 1;
            }
            self.maybe_merge();
            return Some(e);
        }
        let (m, t) = self.delta.remove(path)?;
        Some(m.to_entry(t.as_deref().unwrap_or("")))
    }

    /// Marks `path` as seen by the running scan (see [`Self::unmarked`]).
    pub fn mark(&mut self, path: &Path) {
        if let Some(i) = self.find(path) {
            self.main[i].meta.flags |= MARK;
        } else if let Some(v) = self.delta.get_mut(path) {
            v.0.flags |= MARK;
        }
    }

    /// Paths not marked since [`Self::clear_marks`].
    pub fn unmarked(&self) -> Vec<PathBuf> {
        self.iter_meta()
            .filter(|(_, m, _)| m.flags & MARK == 0)
            .map(|(p, _, _)| p.to_path_buf())
            .collect()
    }

    pub fn clear_marks(&mut self) {
        for s in &mut self.main {
            s.meta.flags &= !MARK;
        }
        for v in self.delta.values_mut() {
            v.0.flags &= !MARK;
        }
    }

    /// Every alive entry in path order, as stored.
    pub(crate) fn iter_meta(&self) -> impl Iterator<Item = (&Path, &Meta, &str)> {
        self.iter_meta_from(None)
    }

    /// Like [`Self::iter_meta`], from the first path `>= from`.
    fn iter_meta_from<'a>(
        &'a self,
        from: Option<&Path>,
    ) -> impl Iterator<Item = (&'a Path, &'a Meta, &'a str)> + 'a {
        let start = from.map_or(0, |f| self.main.partition_point(|s| self.slot_path(s) < f));
        let mut main = self.main[start..]
            .iter()
            .filter(|s| s.meta.flags & DEAD == 0)
            .map(|s| (self.slot_path(s), &s.meta, self.slot_target(s)))
            .peekable();
        let delta: Box<dyn Iterator<Item = (&PathBuf, &Added)>> = match from {
            Some(f) => Box::new(
                self.delta
                    .range::<Path, _>((Bound::Included(f), Bound::Unbounded)),
            ),
            None => Box::new(self.delta.iter()),
        };
        let mut delta = delta
            .map(|(p, (m, t))| (p.as_path(), m, t.as_deref().unwrap_or("")))
            .peekable();
        std::iter::from_fn(move || match (main.peek(), delta.peek()) {
            (Some(a), Some(b)) => {
                if a.0.cmp(b.0) == Ordering::Less {
                    main.next()
                } else {
                    delta.next()
                }
            }
            (Some(_), None) => main.next(),
            (None, _) => delta.next(),
        })
    }

    /// Every alive entry in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, Entry)> {
        self.iter_meta().map(|(p, m, t)| (p, m.to_entry(t)))
    }

    /// Paths strictly below `dir` (what `range(dir..).take_while(starts_with)`
    /// gave on the map this replaces).
    pub fn paths_under(&self, dir: &Path) -> Vec<PathBuf> {
        self.iter_meta_from(Some(dir))
            .take_while(|(p, _, _)| p.starts_with(dir))
            .filter(|(p, _, _)| *p != dir)
            .map(|(p, _, _)| p.to_path_buf())
            .collect()
    }

    /// The content hashes the entries refer to.
    pub fn hashes(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.iter_meta().filter_map(|(_, m, _)| m.hash())
    }

    /// Builds from entries already in strictly increasing path order (the
    /// caller checked). Capacity is exact: nothing to grow later.
    pub(crate) fn from_sorted<'a, I>(count: usize, path_bytes: usize, items: I) -> Self
    where
        I: IntoIterator<Item = (&'a Path, Meta, &'a str)>,
    {
        let mut out = Entries {
            main: Vec::with_capacity(count),
            arena: Vec::with_capacity(path_bytes),
            ..Entries::default()
        };
        for (p, m, t) in items {
            out.push_sorted(p, m, t);
        }
        out
    }

    /// Appends one entry greater than every entry in `main` (and none in
    /// `delta`). Refused (false) when the path buffer would pass 4 GiB.
    pub(crate) fn push_sorted(&mut self, path: &Path, meta: Meta, target: &str) -> bool {
        match self.new_slot(path, meta, target) {
            Some(slot) => {
                self.main.push(slot);
                true
            }
            None => false,
        }
    }

    /// A slot for `path`, its bytes appended to `arena` (None past 4 GiB).
    fn new_slot(&mut self, path: &Path, meta: Meta, target: &str) -> Option<Slot> {
        let bytes = path.as_os_str().as_bytes();
        let at = u32::try_from(self.arena.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        u32::try_from(self.arena.len() + bytes.len()).ok()?;
        self.arena.extend_from_slice(bytes);
        let target = self.push_target(target);
        Some(Slot {
            meta: Meta {
                flags: meta.flags & (STORED_FLAGS | MARK),
                ..meta
            },
            path_at: at,
            path_len: len,
            target,
        })
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.main.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.targets.shrink_to_fit();
    }

    fn maybe_merge(&mut self) {
        let alive = self.main.len() - self.dead;
        let limit = (alive / 8).max(MIN_MERGE);
        if self.delta.len() > limit
            || self.dead > limit
            || (self.dead_targets > MIN_COMPACT && self.dead_targets * 2 > self.targets.len())
        {
            self.merge();
        }
    }

    /// Merges `delta` into `main` in place: dead slots dropped, the added
    /// paths appended to `arena`, and the two sorted runs merged from the
    /// back through a copy of the added one (at most 1/8 of `main`). There
    /// is never a second copy of `main`, so the peak stays near what is
    /// held (a rebuilt copy peaked at twice the baseline's size).
    fn merge(&mut self) {
        let mut freed = 0usize;
        self.main.retain(|s| {
            let alive = s.meta.flags & DEAD == 0;
            if !alive {
                freed += s.path_len as usize;
            }
            alive
        });
        self.dead = 0;
        self.dead_bytes += freed;
        if self.dead_bytes > MIN_COMPACT * 1024 && self.dead_bytes * 2 > self.arena.len() {
            self.compact_arena();
        }
        if self.dead_targets > MIN_COMPACT && self.dead_targets * 2 > self.targets.len() {
            self.compact_targets();
        }
        let delta = std::mem::take(&mut self.delta);
        let mut added: Vec<Slot> = Vec::with_capacity(delta.len());
        for (p, (m, t)) in delta {
            match self.new_slot(&p, m, t.as_deref().unwrap_or("")) {
                Some(slot) => added.push(slot),
                // Past 4 GiB of paths: stays in `delta`.
                None => {
                    self.delta.insert(p, (m, t));
                }
            }
        }
        let old = self.main.len();
        self.main.reserve_exact(added.len());
        self.main.extend_from_slice(&added);
        let (mut i, mut j, mut w) = (old, added.len(), self.main.len());
        while j > 0 {
            w -= 1;
            let arena = &self.arena;
            let path = |s: &Slot| {
                let at = s.path_at as usize;
                as_path(&arena[at..at + s.path_len as usize])
            };
            if i > 0 && path(&self.main[i - 1]) > path(&added[j - 1]) {
                self.main[w] = self.main[i - 1];
                i -= 1;
            } else {
                self.main[w] = added[j - 1];
                j -= 1;
            }
        }
    }

    /// Copies the live paths into a new buffer (when half of it is dead).
    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.dead_bytes);
        for s in &mut self.main {
            let at = s.path_at as usize;
            let bytes = &self.arena[at..at + s.path_len as usize];
            // Never larger than the old buffer, which fit u32.
            s.path_at = u32::try_from(arena.len()).unwrap_or(u32::MAX);
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    /// Drops the symlink targets no slot refers to.
    fn compact_targets(&mut self) {
        let mut targets = Vec::with_capacity(self.targets.len() - self.dead_targets);
        let old = std::mem::take(&mut self.targets);
        let mut old: Vec<Option<Box<str>>> = old.into_iter().map(Some).collect();
        for s in &mut self.main {
            if s.target != 0 {
                let t = old
                    .get_mut(s.target as usize - 1)
                    .and_then(Option::take)
                    .unwrap_or_default();
                targets.push(t);
                s.target = u32::try_from(targets.len()).unwrap_or(0);
            }
        }
        self.targets = targets;
        self.dead_targets = 0;
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter_meta()
                .zip(other.iter_meta())
                .all(|(a, b)| a.0 == b.0 && a.1.same(b.1) && a.2 == b.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(i: u64, target: &str) -> Entry {
        Entry {
            file_type: if target.is_empty() {
                FileType::File
            } else {
                FileType::Symlink
            },
            size: i,
            mode: 0o100644,
            uid: 1,
            gid: 2,
            dev: 3,
            inode: i,
            mtime: -5,
            mtime_nsec: 999_999_999,
            ctime: 7,
            ctime_nsec: 8,
            sha256: if i.is_multiple_of(3) {
                String::new()
            } else {
                crate::state::sha256(&i.to_le_bytes())
            },
            hash_skipped: SKIPPED[(i % 4) as usize].to_string(),
            symlink_target: target.to_string(),
        }
    }

    #[test]
    fn a_slot_is_112_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 112);
    }

    #[test]
    fn entries_round_trip_losslessly_and_bad_ones_are_refused() {
        let mut m = Entries::new();
        for i in 0..40 {
            let e = entry(i, if i % 5 == 0 { "t" } else { "" });
            let p = PathBuf::from(format!("/x/{i}"));
            m.insert(&p, &e).unwrap();
            assert_eq!(m.get(&p), Some(e.clone()));
            assert!(m.holds(&p, &e));
        }
        let mut bad = entry(1, "");
        bad.sha256 = "AB".repeat(32);
        assert_eq!(m.insert(Path::new("/b"), &bad), Err(PackError::Hash));
        bad = entry(1, "");
        bad.hash_skipped = "other".into();
        assert!(m.insert(Path::new("/b"), &bad).is_err());
        bad = entry(1, "");
        bad.ctime_nsec = 1_000_000_000;
        assert_eq!(m.insert(Path::new("/b"), &bad), Err(PackError::Nanos));
        assert!(!m.contains_key(Path::new("/b")));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, bool),
        Remove(u8),
        Mark(u8),
        Clear,
    }

    fn path_of(k: u8) -> PathBuf {
        // Names that sort differently bytewise and by components.
        let names = [
            "a", "a b", "a.b", "a/b", "a/b/c", "a/bc", "ab", "b", "a/b c",
        ];
        PathBuf::from(format!("/r/{}/{}", names[usize::from(k % 9)], k / 9))
    }

    proptest! {
        /// Behaves exactly as the BTreeMap it replaces, across merges.
        #[test]
        fn behaves_as_a_btreemap(ops in prop::collection::vec(
            prop_oneof![
                6 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(k, v, l)| Op::Insert(k, v, l)),
                3 => any::<u8>().prop_map(Op::Remove),
                1 => any::<u8>().prop_map(Op::Mark),
                1 => Just(Op::Clear),
            ], 0..3000)) {
            let mut m = Entries::new();
            let mut model: BTreeMap<PathBuf, (Entry, bool)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v, link) => {
                        let e = entry(u64::from(v), if link { "to/x" } else { "" });
                        m.insert(&path_of(k), &e).unwrap();
                        let marked = model.get(&path_of(k)).is_some_and(|x| x.1);
                        model.insert(path_of(k), (e, marked));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(m.remove(&path_of(k)), model.remove(&path_of(k)).map(|x| x.0));
                    }
                    Op::Mark(k) => {
                        m.mark(&path_of(k));
                        if let Some(x) = model.get_mut(&path_of(k)) { x.1 = true; }
                    }
                    Op::Clear => {
                        m.clear_marks();
                        for x in model.values_mut() { x.1 = false; }
                    }
                }
                prop_assert_eq!(m.len(), model.len());
            }
            let got: Vec<(PathBuf, Entry)> = m.iter().map(|(p, e)| (p.to_path_buf(), e)).collect();
            let want: Vec<(PathBuf, Entry)> = model.iter().map(|(p, e)| (p.clone(), e.0.clone())).collect();
            prop_assert_eq!(got, want);
            let unmarked: Vec<PathBuf> = model.iter().filter(|x| !x.1.1).map(|x| x.0.clone()).collect();
            prop_assert_eq!(m.unmarked(), unmarked);
            for dir in ["/r/a", "/r/a/b", "/r", "/r/a b", "/"] {
                let dir = Path::new(dir);
                let want: Vec<PathBuf> = model
                    .range(dir.to_path_buf()..)
                    .take_while(|(p, _)| p.starts_with(dir))
                    .filter(|(p, _)| p.as_path() != dir)
                    .map(|(p, _)| p.clone())
                    .collect();
                prop_assert_eq!(m.paths_under(dir), want);
            }
            for k in 0..=255u8 {
                prop_assert_eq!(m.get(&path_of(k)), model.get(&path_of(k)).map(|x| x.0.clone()));
            }
        }
    }
}
