//! Loads one TOML configuration file into a typed struct, with errors a field
//! engineer can act on: every error names the file, line, column and key.
//!
//! Guarantees:
//! * unknown keys are errors, never silently ignored; all unknown keys of a file
//!   are reported at once (they do not stop deserialization), each with the
//!   nearest valid key of its table (`did you mean `interval`?`) or, when none
//!   is close, the list of valid keys; the valid keys come from the target
//!   type itself (see `fields`), so they cannot drift from the schema;
//! * serde's own messages are put in the operator's terms (see `hints`): a
//!   `deny_unknown_fields` or unknown enum value gets the same suggestion, a
//!   malformed duration an example (`"30s"`);
//! * a syntax or type error is reported with the exact position of the value
//!   and the dotted key path (`soc.cert`, `probe.check[2].timeout`);
//! * semantic checks made after loading (a missing file, a bad permission) are
//!   located with [`Source::locate`] so they carry the same file:line:col form.
//!
//! It never panics on file contents and never reads anything but the one file.
#![forbid(unsafe_code)]

mod fields;
pub mod hints;
mod sizes;

pub use sizes::byte_size;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// Dotted key path, e.g. `soc.cert`; empty for file-level problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One problem a capability crate finds in its own section after loading
/// (`probe`, `fim`, `host`): `path` is relative to that section, e.g.
/// `check[2].target`; the agent prefixes the section and locates it with
/// [`Source::error`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one file, in file order. Never empty.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The text of a loaded file, kept so later checks can point at a key.
#[derive(Debug, Clone)]
pub struct Source {
    file: PathBuf,
    text: String,
    /// Built on the first located error, so a valid file never pays for it
    /// and a file with thousands of errors parses once, not once per error.
    index: OnceLock<Index>,
    /// The dotted keys the file writes outside arrays (`a.b`), noted at
    /// load from the parse the load makes anyway: [`Source::contains`]
    /// answers from it, so a valid file never builds `index` (a second
    /// parse of the whole file and a map of every key of every array
    /// entry: with 10,000 checks, ~38 MB at the loader's peak).
    written: OnceLock<HashSet<String>>,
}

/// Where things are in a file's text.
#[derive(Debug, Clone, Default)]
struct Index {
    /// Byte offset of every key (`a.b`) and array element (`a.b[2]`).
    offsets: HashMap<String, usize>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl Index {
    fn build(text: &str) -> Index {
        let mut index = Index {
            offsets: HashMap::new(),
            line_starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        };
        if let Ok(root) = DeTable::parse(text) {
            index.add_table(root.get_ref(), "");
        }
        index
    }

    fn add_table(&mut self, table: &DeTable<'_>, path: &str) {
        for (key, value) in table {
            let path = join_key(path, key.get_ref());
            self.offsets.insert(path.clone(), key.span().start);
            self.add_value(value.get_ref(), &path);
        }
    }

    fn add_value(&mut self, value: &DeValue<'_>, path: &str) {
        match value {
            DeValue::Table(table) => self.add_table(table, path),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    self.offsets.insert(path.clone(), item.span().start);
                    self.add_value(item.get_ref(), &path);
                }
            }
            _ => {}
        }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let column = text.get(start..offset).map_or(0, |l| l.chars().count()) + 1;
        (line.max(1), column)
    }
}

impl Source {
    fn new(file: &Path, text: String) -> Source {
        Source {
            file: file.to_path_buf(),
            text,
            index: OnceLock::new(),
            written: OnceLock::new(),
        }
    }

    /// Notes the keys `root` (the parsed file) writes outside arrays.
    fn note_written(&self, root: &DeTable<'_>) {
        fn walk(table: &DeTable<'_>, path: &str, out: &mut HashSet<String>) {
            for (key, value) in table {
                let path = join_key(path, key.get_ref());
                if let DeValue::Table(inner) = value.get_ref() {
                    walk(inner, &path, out);
                }
                out.insert(path);
            }
        }
        let mut written = HashSet::new();
        walk(root, "", &mut written);
        let _ = self.written.set(written);
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::build(&self.text))
    }

    /// The file this source was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Directory relative paths in the file are resolved against.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// Resolves a path from the file: absolute paths stay, relative paths are
    /// taken relative to the config file's directory (so a generated config
    /// can sit beside its certificates).
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir().join(path)
        }
    }

    /// Whether the file itself writes `key` (dotted path, `a.b`), as
    /// opposed to leaving it to a default.
    pub fn contains(&self, key: &str) -> bool {
        match self.written.get() {
            Some(written) if !key.contains('[') => written.contains(key),
            _ => self.index().offsets.contains_key(key),
        }
    }

    /// An error located at `key` (dotted path, `a.b[2].c`). Falls back to the
    /// closest existing parent key, or to the file when nothing matches (a
    /// default value that was not written in the file).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.locate(key).unwrap_or((0, 0));
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Line and column (1-based) of the value at `key`, or of its closest
    /// parent that exists in the file.
    pub fn locate(&self, key: &str) -> Option<(usize, usize)> {
        let index = self.index();
        // The canonical form of each prefix of `key`; the deepest one in the
        // file wins.
        let mut prefix = String::new();
        let mut best = None;
        for segment in parse_key_path(key) {
            prefix = match segment {
                Segment::Key(name) => join_key(&prefix, name),
                Segment::Index(i) => format!("{prefix}[{i}]"),
            };
            // A segment missing from the file ends the walk at its parent.
            let Some(&offset) = index.offsets.get(&prefix) else {
                break;
            };
            best = Some(offset);
        }
        best.map(|offset| index.line_column(&self.text, offset))
    }

    fn error_at(
        &self,
        span: Option<std::ops::Range<usize>>,
        key: String,
        message: String,
    ) -> ConfigError {
        let (line, column) = span.map_or((0, 0), |s| self.index().line_column(&self.text, s.start));
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            key,
            message,
        }
    }
}

/// Reads and deserializes `path`, then runs `check` on the value (resolve
/// paths, semantic checks located with [`Source::error`]). Every problem is
/// returned at once: unknown keys do not stop `check` from running.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    check: impl FnOnce(&mut T, &Source) -> Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        }])
    })?;
    parse(path, text, check)
}

/// Like [`load`], for `text` as if read from `file`.
pub fn parse<T: DeserializeOwned>(
    file: &Path,
    text: String,
    check: impl FnOnce(&mut T, &Source) -> Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    let source = Source::new(file, text);
    let mut table = match DeTable::parse(&source.text) {
        Ok(t) => t,
        Err(e) => {
            let err = source.error_at(e.span(), String::new(), first_line(e.message()));
            return Err(ConfigErrors(vec![err]));
        }
    };
    source.note_written(table.get_ref());
    // Every unknown key, found before the real load and removed from what it
    // reads, so none can stop it (`deny_unknown_fields` included).
    let survey = fields::survey::<T>(&table);
    strip_unknown(&mut table, &survey);
    // Keys serde ignored that the survey could not see (a flattened struct)
    // are still errors.
    let mut ignored: Vec<(String, String)> = Vec::new();
    // Every bad value, not only the first: a value that does not
    // deserialize is recorded, taken out, and the load tried again.
    let mut value_errors: Vec<ConfigError> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    // The first load consumes the parsed table: a copy of it would double
    // the loader's peak memory for every valid file. Only after a bad value
    // is the file parsed again, into `retry`, which later loads copy.
    let mut first = Some(table);
    let mut retry: Option<toml::Spanned<DeTable<'_>>> = None;
    let loaded = loop {
        let attempt = match (first.take(), &retry) {
            (Some(table), _) => table,
            (None, Some(retry)) => retry.clone(),
            (None, None) => break None,
        };
        let mut track = serde_path_to_error::Track::new();
        let result = {
            let de = toml::de::Deserializer::from(attempt);
            let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
            serde_ignored::deserialize(tracked, |path| {
                ignored.push(match &path {
                    serde_ignored::Path::Map { parent, key } => (dotted(parent), key.clone()),
                    // Not a key (serde_ignored reports keys only, but an ignored
                    // value must never pass silently): located at its path.
                    other => (dotted(other), String::new()),
                });
            })
        };
        match result {
            Ok(value) => break Some(value),
            Err(e) => {
                let key = track.path().to_string();
                let key = if key == "." { String::new() } else { key };
                let message = first_line(e.message());
                // Taking a bad required key out makes it "missing": that is
                // the same mistake, already reported.
                let echo = removed
                    .iter()
                    .any(|r| message.starts_with("missing field") && r.starts_with(&key));
                if !echo {
                    value_errors.push(source.error_at(
                        e.span(),
                        key.clone(),
                        hints::rewrite(&message),
                    ));
                }
                if retry.is_none() {
                    // The same text parses the same (it parsed above).
                    retry = DeTable::parse(&source.text).ok().map(|mut table| {
                        strip_unknown(&mut table, &survey);
                        table
                    });
                }
                let taken_out = retry
                    .as_mut()
                    .is_some_and(|table| remove_key(table.get_mut(), &key));
                if echo || key.is_empty() || removed.len() >= MAX_VALUE_ERRORS || !taken_out {
                    break None;
                }
                removed.push(key);
            }
        }
    };
    let mut errors = unknown_key_errors(&source, &survey, &ignored);
    errors.extend(value_errors);
    match loaded {
        Some(mut value) if removed.is_empty() => {
            errors.extend(check(&mut value, &source));
            if errors.is_empty() {
                Ok(value)
            } else {
                Err(ConfigErrors(sorted(errors)))
            }
        }
        Some(mut value) => {
            // The rest is checked too; what the removed keys' defaults
            // would say about them is not news.
            errors.extend(
                check(&mut value, &source)
                    .into_iter()
                    .filter(|e| !removed.contains(&e.key)),
            );
            Err(ConfigErrors(sorted(errors)))
        }
        None => Err(ConfigErrors(sorted(errors))),
    }
}

/// Takes the survey's unknown keys out of `table`.
fn strip_unknown(table: &mut toml::Spanned<DeTable<'_>>, survey: &fields::Survey) {
    for (path, key) in &survey.unknown {
        if let Some(t) = table_at(table.get_mut(), path) {
            t.remove(key.as_str());
        }
    }
}

/// Most bad values reported from one file (each costs a load).
const MAX_VALUE_ERRORS: usize = 50;

/// Takes the key at dotted `path` (`a.b[2].c`) out of `root`; false when
/// there is no such key, or the bad value is an element of an array (it
/// cannot be taken out alone: the load stops there).
fn remove_key(root: &mut DeTable<'_>, path: &str) -> bool {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    if key.contains('[') {
        return false;
    }
    table_at(root, parent).is_some_and(|t| t.remove(key).is_some())
}

/// One error per unknown key (`(table path, key)`) of the survey and of
/// `ignored`, each suggesting the nearest key its table accepts.
fn unknown_key_errors(
    source: &Source,
    survey: &fields::Survey,
    ignored: &[(String, String)],
) -> Vec<ConfigError> {
    let mut seen = std::collections::HashSet::new();
    let mut messages: HashMap<(usize, &str), String> = HashMap::new();
    survey
        .unknown
        .iter()
        .chain(ignored)
        .filter(|entry| seen.insert(*entry))
        .map(|(table, key)| {
            if key.is_empty() {
                return source.error(table, "unexpected value (check the section it is in)");
            }
            let valid = survey.lists.get(table).copied().unwrap_or_default();
            // The same typo in every entry of a long list is worked out once.
            let message = messages
                .entry((valid.as_ptr() as usize, key.as_str()))
                .or_insert_with(|| hints::unknown_key(key, valid));
            source.error(&join_key(table, key), message.clone())
        })
        .collect()
}

/// The dotted path of `key` in the table at `table` (`""` is the root).
fn join_key(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_string()
    } else {
        format!("{table}.{key}")
    }
}

/// The table at dotted `path` (`a.b[2]`; `""` is `root`), if there is one.
fn table_at<'t, 'i>(root: &'t mut DeTable<'i>, path: &str) -> Option<&'t mut DeTable<'i>> {
    let mut table = root;
    let mut segments = parse_key_path(path).into_iter().peekable();
    while let Some(segment) = segments.next() {
        let Segment::Key(name) = segment else {
            return None;
        };
        let mut value = table.get_mut(name)?.get_mut();
        while let Some(Segment::Index(i)) = segments.peek() {
            let DeValue::Array(array) = value else {
                return None;
            };
            value = array.get_mut(*i)?.get_mut();
            segments.next();
        }
        let DeValue::Table(next) = value else {
            return None;
        };
        table = next;
    }
    Some(table)
}

/// `a.b[2].c`, the form [`Source::locate`] reads, from serde_ignored's path
/// (whose own Display writes indices as `.2` and options as `?`).
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        // serde's private wrapper fields (a `toml::Spanned` value) are not
        // keys of the file.
        Path::Map { parent, key } if key.starts_with("$__") => dotted(parent),
        Path::Map { parent, key } => join_key(&dotted(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by_key(|e| (e.line, e.column));
    errors
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `a.b[2].c` into keys and indices. Keys containing dots are not
/// supported (owlet's schemas have none).
fn parse_key_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            out.push(Segment::Key(&rest[..open]));
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else {
            out.push(Segment::Key(rest));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Conf {
        soc: Soc,
        #[serde(default)]
        check: Vec<Check>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Soc {
        address: String,
        #[serde(default)]
        port: u16,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Check {
        id: String,
    }

    fn parse_conf(text: &str) -> Result<Conf, ConfigErrors> {
        parse(
            Path::new("/etc/owlet/owlet.toml"),
            text.to_string(),
            |_, _| Vec::new(),
        )
    }

    #[test]
    fn unknown_keys_are_all_reported_with_their_lines() {
        let err =
            parse_conf("[soc]\naddress = \"x\"\nadress = \"y\"\n\n[sco]\nz = 1\n").unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 2, "{text}");
        assert_eq!(err.0[0].line, 3);
        assert_eq!(err.0[0].key, "soc.adress");
        assert_eq!(err.0[1].line, 5);
        assert_eq!(err.0[1].key, "sco");
        assert!(
            text.starts_with("/etc/owlet/owlet.toml:3:1: soc.adress: unknown key"),
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_checks_are_reported_in_one_pass() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Optional {
            #[serde(default)]
            port: u16,
            #[serde(default)]
            name: String,
            #[serde(default)]
            id: String,
        }
        let text = "port = \"high\"\nname = 7\nid = \"b\"\nbogus = 1\n";
        let err = parse(
            Path::new("/etc/owlet/owlet.toml"),
            text.to_string(),
            |c: &mut Optional, src| {
                let mut e = vec![src.error("id", "b is taken")];
                // What the default of a bad value would say is not news.
                if c.port == 0 {
                    e.push(src.error("port", "must not be 0"));
                }
                e
            },
        )
        .unwrap_err();
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["port", "name", "id", "bogus"], "{err}");
        assert!(!err.to_string().contains("must not be 0"), "{err}");
    }

    #[test]
    fn a_bad_required_value_is_not_also_called_missing() {
        let err = parse_conf("[soc]\naddress = 7\nport = \"high\"\n").unwrap_err();
        assert!(!err.to_string().contains("missing field"), "{err}");
        assert_eq!(err.0[0].key, "soc.address", "{err}");
    }

    #[test]
    fn wrong_type_names_line_column_and_key() {
        let err = parse_conf("[soc]\naddress = \"x\"\nport = \"high\"\n").unwrap_err();
        assert_eq!(err.0.len(), 1);
        let e = &err.0[0];
        assert_eq!((e.line, e.column, e.key.as_str()), (3, 8, "soc.port"));
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn a_key_missing_from_the_file_is_located_at_its_closest_parent() {
        let source = Source::new(
            Path::new("/etc/owlet/owlet.toml"),
            "[agent]\nid = \"a\"\n\n[spool]\nsegment_bytes = \"1MiB\"\n".into(),
        );
        assert_eq!(source.locate("spool.max_bytes"), Some((4, 2)));
        assert_eq!(source.locate("spool.segment_bytes"), Some((5, 1)));
        assert_eq!(source.locate("batch.linger"), None);
    }

    #[test]
    fn syntax_error_is_located() {
        let err = parse_conf("[soc]\naddress = \n").unwrap_err();
        assert_eq!(err.0[0].line, 2);
    }

    #[test]
    fn missing_key_names_the_table() {
        let err = parse_conf("[soc]\nport = 1\n").unwrap_err();
        assert!(
            err.0[0].message.contains("missing field `address`"),
            "{err}"
        );
    }

    #[test]
    fn later_checks_locate_nested_keys_and_run_despite_unknown_keys() {
        let text =
            "[soc]\naddress = \"x\"\nbogus = 1\n[[check]]\nid = \"a\"\n[[check]]\nid = \"b\"\n";
        let err = parse(
            Path::new("/etc/owlet/owlet.toml"),
            text.to_string(),
            |_: &mut Conf, src| {
                assert_eq!(src.locate("check[1].id"), Some((7, 1)));
                assert_eq!(src.locate("nowhere"), None);
                vec![src.error("soc.address", "bad")]
            },
        )
        .unwrap_err();
        let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "/etc/owlet/owlet.toml:2:1: soc.address: bad",
                "/etc/owlet/owlet.toml:3:1: soc.bogus: unknown key `bogus`; expected one of `address`, `port`",
            ]
        );
    }

    /// `contains` tells which keys the file writes (the hardware profiles
    /// ask it on every load) without indexing the file: that index is a
    /// second parse and a map of every key of every check entry.
    #[test]
    fn contains_answers_a_valid_file_without_indexing_it() {
        let text = "[soc]\naddress = \"x\"\nlimits = { port = 1 }\n\n[[check]]\nid = \"a\"\n";
        let mut answers = Vec::new();
        let indexed = std::cell::Cell::new(true);
        let _: Result<toml::Table, _> = parse(Path::new("/c.toml"), text.into(), |_, source| {
            for key in [
                "soc",
                "soc.address",
                "soc.port",
                "soc.limits.port",
                "check",
                "nope",
            ] {
                answers.push((key, source.contains(key)));
            }
            indexed.set(source.index.get().is_some());
            answers.push(("check[0].id", source.contains("check[0].id")));
            Vec::new()
        });
        assert!(!indexed.get(), "contains() built the index of a valid file");
        assert_eq!(
            answers,
            vec![
                ("soc", true),
                ("soc.address", true),
                ("soc.port", false),
                ("soc.limits.port", true),
                ("check", true),
                ("nope", false),
                ("check[0].id", true),
            ]
        );
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        #[serde(default)]
        soc: Option<Soc>,
        #[serde(default)]
        check: Vec<Check>,
        #[serde(default)]
        strict: Vec<Strict>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        interval: Option<u32>,
        #[serde(default)]
        kind: Kind,
    }
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Kind {
        #[default]
        Tcp,
        Http,
    }

    fn nested_errors(text: &str) -> Vec<(usize, String, String)> {
        parse::<Nested>(Path::new("/c.toml"), text.to_string(), |_, _| Vec::new())
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.line, e.key, e.message))
            .collect()
    }

    #[test]
    fn unknown_keys_suggest_the_nearest_key_of_their_own_table() {
        let errs = nested_errors(
            "[soc]\naddress = \"x\"\nprot = 1\n\n[[check]]\nid = \"a\"\n[[check]]\nid = \"b\"\nidd = \"b\"\n\n[sock]\n",
        );
        assert_eq!(
            errs,
            vec![
                (
                    3,
                    "soc.prot".into(),
                    "unknown key `prot`; did you mean `port`?".into()
                ),
                (
                    9,
                    "check[1].idd".into(),
                    "unknown key `idd`; did you mean `id`?".into()
                ),
                (
                    11,
                    "sock".into(),
                    "unknown key `sock`; did you mean `soc`?".into()
                ),
            ]
        );
    }

    #[test]
    fn strict_tables_get_the_same_suggestion_and_enum_values_too() {
        let errs = nested_errors("[[strict]]\nintervall = 5\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].0, 2, "{errs:?}");
        assert_eq!(
            errs[0].2,
            "unknown key `intervall`; did you mean `interval`?"
        );
        let errs = nested_errors("[[strict]]\nkind = \"htp\"\n");
        assert_eq!(
            (errs[0].0, errs[0].1.as_str()),
            (2, "strict[0].kind"),
            "{errs:?}"
        );
        assert!(
            errs[0]
                .2
                .starts_with("unknown value `htp`; did you mean `http`?"),
            "{errs:?}"
        );
    }

    #[test]
    fn an_unknown_key_in_a_strict_table_stops_nothing() {
        let text = "[soc]\naddress = \"x\"\nprot = 1\n\n[[strict]]\nintervall = 5\nkind = \"http\"\n\n[[strict]]\nkid = \"tcp\"\n";
        let err = parse(
            Path::new("/c.toml"),
            text.to_string(),
            |value: &mut Nested, src| {
                // The load went on: the second entry's good key was read.
                assert!(matches!(value.strict[0].kind, Kind::Http));
                vec![src.error("soc.address", "semantic check ran")]
            },
        )
        .unwrap_err();
        let found: Vec<(usize, &str)> = err.0.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (2, "soc.address"),
                (3, "soc.prot"),
                (6, "strict[0].intervall"),
                (10, "strict[1].kid"),
            ],
            "{err}"
        );
        assert!(err.0[3].message.ends_with("did you mean `kind`?"), "{err}");
    }

    #[test]
    fn spanned_tables_and_datetimes_are_not_mistaken_for_unknown_keys() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WithSpans {
            soc: toml::Spanned<Soc>,
            when: toml::value::Datetime,
        }
        let text = "when = 2026-11-26T10:00:00Z\n[soc]\naddress = \"x\"\n";
        let value: WithSpans = parse(Path::new("/c.toml"), text.into(), |_, _| Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value.soc.get_ref().address, "x");
        let err = parse::<WithSpans>(Path::new("/c.toml"), format!("{text}prot = 1\n"), |_, _| {
            Vec::new()
        })
        .unwrap_err();
        assert_eq!(
            (err.0[0].line, err.0[0].key.as_str()),
            (4, "soc.prot"),
            "{err}"
        );
    }

    #[test]
    fn every_one_of_many_errors_is_located_on_its_own_line() {
        // 2000 entries with a typo each: one error each, at its line (the
        // file is indexed once, not parsed again per error).
        let text: String = (0..2000)
            .map(|i| format!("[[check]]\nid = \"c{i}\"\nidd = 1\n"))
            .collect();
        let errs = nested_errors(&text);
        assert_eq!(errs.len(), 2000);
        for (i, (line, key, _)) in errs.iter().enumerate() {
            assert_eq!(
                (*line, key.as_str()),
                (3 * i + 3, format!("check[{i}].idd").as_str())
            );
        }
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let err = parse_conf("[soc] # é\naddress = \"é\"\nport = \"high\"\n").unwrap_err();
        assert_eq!((err.0[0].line, err.0[0].column), (3, 8));
        let source = Source::new(
            Path::new("/c.toml"),
            "a = \"é\"\n[soc]\n  \"é\" = 1\n".into(),
        );
        assert_eq!(source.locate("soc.é"), Some((3, 3)));
    }

    #[test]
    fn unreadable_file_is_a_file_level_error() {
        let err =
            load::<Conf>(Path::new("/nonexistent/owlet.toml"), |_, _| Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/owlet.toml: cannot read"),
            "{err}"
        );
    }
}
