//! Watch rules compiled from `[[fim.watch]]`: which paths are in scope,
//! which rule decides a path's severity / tag / diff, and which directories
//! must be watched to see every change (the parent of a watched single file,
//! so that a rename over it — an editor's save — is seen).
//!
//! Guarantee: `rule_for(p)` is `Some` exactly for the paths a scan of
//! `roots()` reports; the most specific rule (longest root) wins.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};

use crate::config::{FimConfig, Severity, WatchConfig, has_glob_meta};

/// How a rule selects paths.
#[derive(Debug, Clone)]
enum Scope {
    /// One file (or symlink), watched through its parent directory.
    File,
    /// A directory's entries, with or without subdirectories.
    Dir { recursive: bool },
    /// Paths under `root` matching the glob.
    Glob {
        matcher: GlobMatcher,
        recursive: bool,
    },
}

/// One compiled `[[fim.watch]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The file itself (File), the directory (Dir) or the glob's literal
    /// directory prefix (Glob).
    pub root: PathBuf,
    scope: Scope,
    exclude: GlobSet,
    pub severity: Severity,
    pub tag: String,
    pub diff: bool,
    /// Secret files ([`crate::secret_file`]) are diffed too.
    pub diff_secret_files: bool,
    /// The configured path text (reports and the baseline's rule list).
    pub spec: String,
}

/// Why one `[[fim.watch]]` does not compile.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// An `exclude` entry is not a glob.
    #[error("exclude {pattern:?}: {source}")]
    Exclude {
        pattern: String,
        source: globset::Error,
    },
    /// The `exclude` globs together do not build one set.
    #[error(transparent)]
    ExcludeSet(globset::Error),
    /// The watched path has glob syntax but is not a glob.
    #[error("{spec:?}: {source}")]
    Path {
        spec: String,
        source: globset::Error,
    },
}

/// Why the rules of a configuration do not compile: the entry, and why.
#[derive(Debug, thiserror::Error)]
#[error("fim.watch[{index}]: {problem}")]
pub struct InvalidWatch {
    /// Index of the `[[fim.watch]]` entry.
    pub index: usize,
    pub problem: RuleError,
}

impl Rule {
    fn compile(w: &WatchConfig) -> Result<Rule, RuleError> {
        let mut exclude = GlobSetBuilder::new();
        for ex in &w.exclude {
            exclude.add(Glob::new(ex).map_err(|source| RuleError::Exclude {
                pattern: ex.clone(),
                source,
            })?);
        }
        let exclude = exclude.build().map_err(RuleError::ExcludeSet)?;
        let spec = w.path.trim_end_matches('/').to_string();
        let spec = if spec.is_empty() {
            "/".to_string()
        } else {
            spec
        };
        let (root, scope) = if has_glob_meta(&spec) {
            let matcher = globset::GlobBuilder::new(&spec)
                .literal_separator(true)
                .build()
                .map_err(|source| RuleError::Path {
                    spec: spec.clone(),
                    source,
                })?
                .compile_matcher();
            let mut root = PathBuf::from("/");
            let mut rest = 0;
            let parts: Vec<&str> = spec.split('/').filter(|s| !s.is_empty()).collect();
            for (i, part) in parts.iter().enumerate() {
                if has_glob_meta(part) {
                    rest = parts.len() - i;
                    break;
                }
                root.push(part);
            }
            let recursive = rest > 1 || spec.contains("**");
            (root, Scope::Glob { matcher, recursive })
        } else {
            let root = PathBuf::from(&spec);
            match std::fs::symlink_metadata(&root) {
                Ok(m) if m.is_dir() => (
                    root,
                    Scope::Dir {
                        recursive: w.recursive.unwrap_or(true),
                    },
                ),
                // A file, or nothing yet: a file that may appear.
                _ => (root, Scope::File),
            }
        };
        Ok(Rule {
            root,
            scope,
            exclude,
            severity: w.severity,
            tag: w.tag.clone(),
            diff: w.diff,
            diff_secret_files: w.diff_secret_files,
            spec,
        })
    }

    /// Whether `path` (a file) is in this rule's scope.
    pub fn covers(&self, path: &Path) -> bool {
        if self.exclude.is_match(path) {
            return false;
        }
        match &self.scope {
            Scope::File => path == self.root,
            Scope::Dir { recursive: true } => path.starts_with(&self.root) && path != self.root,
            Scope::Dir { recursive: false } => path.parent() == Some(self.root.as_path()),
            Scope::Glob { matcher, .. } => matcher.is_match(path),
        }
    }

    /// Whether files inside directory `dir` may be in scope (so `dir` must
    /// be watched and walked).
    pub fn wants_dir(&self, dir: &Path) -> bool {
        if self.exclude.is_match(dir) {
            return false;
        }
        match &self.scope {
            Scope::File => self.root.parent() == Some(dir),
            Scope::Dir { recursive } | Scope::Glob { recursive, .. } => {
                if *recursive {
                    dir.starts_with(&self.root)
                } else {
                    dir == self.root
                }
            }
        }
    }

    /// The directory to start walking from.
    pub fn walk_root(&self) -> &Path {
        match self.scope {
            Scope::File => self.root.parent().unwrap_or(Path::new("/")),
            _ => &self.root,
        }
    }
}

/// All rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles the rules; errors name the entry (a config that passed
    /// [`FimConfig::validate`] compiles).
    pub fn new(config: &FimConfig) -> Result<Rules, InvalidWatch> {
        let rules = config
            .watch
            .iter()
            .enumerate()
            .map(|(index, w)| Rule::compile(w).map_err(|problem| InvalidWatch { index, problem }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rules { rules })
    }

    /// The rule that decides `path`'s severity and tag, if any covers it.
    pub fn rule_for(&self, path: &Path) -> Option<&Rule> {
        self.rules
            .iter()
            .filter(|r| r.covers(path))
            .max_by_key(|r| r.root.as_os_str().len())
    }

    /// Whether directory `dir` must be watched and walked.
    pub fn wants_dir(&self, dir: &Path) -> bool {
        self.rules.iter().any(|r| r.wants_dir(dir))
    }

    /// Directories to start walking from (deduplicated, outermost first).
    pub fn walk_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = self
            .rules
            .iter()
            .map(|r| r.walk_root().to_path_buf())
            .collect();
        roots.sort();
        roots.dedup();
        let mut out: Vec<PathBuf> = Vec::new();
        for r in roots {
            if !out
                .iter()
                .any(|o| r.starts_with(o) && self.covers_subtree(o))
            {
                out.push(r);
            }
        }
        out
    }

    /// Whether some rule walks everything below `dir`.
    fn covers_subtree(&self, dir: &Path) -> bool {
        self.rules.iter().any(|r| {
            matches!(
                r.scope,
                Scope::Dir { recursive: true }
                    | Scope::Glob {
                        recursive: true,
                        ..
                    }
            ) && dir.starts_with(&r.root)
        })
    }

    /// The configured path texts (stored with the baseline so that a rule
    /// added later does not report its files as created).
    pub fn specs(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.spec.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Rules {
        Rules::new(&toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn globs_files_dirs_and_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let r = rules(&format!(
            "[[watch]]\npath = \"{d}\"\nexclude = [\"**/*.swp\"]\ntag = \"all\"\n\
             [[watch]]\npath = \"{d}/fw/rules.v4\"\ntag = \"fw\"\nseverity = \"critical\"\n\
             [[watch]]\npath = \"/nonexistent-owlet/*.conf\"\n"
        ));
        let p = |s: &str| PathBuf::from(format!("{d}/{s}"));
        assert_eq!(r.rule_for(&p("a/b/c")).unwrap().tag, "all");
        assert_eq!(r.rule_for(&p("fw/rules.v4")).unwrap().tag, "fw");
        assert!(r.rule_for(&p("a/.x.swp")).is_none());
        assert!(r.rule_for(Path::new("/nonexistent-owlet/x.conf")).is_some());
        // `*` stays inside one directory level.
        assert!(
            r.rule_for(Path::new("/nonexistent-owlet/a/x.conf"))
                .is_none()
        );
        assert!(r.rule_for(Path::new("/nonexistent-owlet/x.txt")).is_none());
        assert!(r.wants_dir(&p("a/b")));
        assert_eq!(r.walk_roots().len(), 2, "{:?}", r.walk_roots());
    }

    #[test]
    fn a_single_file_is_watched_through_its_parent() {
        let r = rules("[[watch]]\npath = \"/nonexistent-owlet/app.conf\"\n");
        assert!(r.wants_dir(Path::new("/nonexistent-owlet")));
        assert!(
            r.rule_for(Path::new("/nonexistent-owlet/app.conf"))
                .is_some()
        );
        assert!(r.rule_for(Path::new("/nonexistent-owlet/other")).is_none());
        assert_eq!(r.walk_roots(), vec![PathBuf::from("/nonexistent-owlet")]);
    }
}
