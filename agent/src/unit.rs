//! Who `owlet.service` runs the agent as: the `User=`, `Group=`,
//! `AmbientCapabilities=`, `CapabilityBoundingSet=` and `ProtectHome=` of
//! the systemd unit, so that commands run by hand as root can act as the
//! service will (`owlet selftest` checks capture and watched paths as that
//! user with those capabilities; `owlet fim baseline` hands what it wrote to
//! that user).
//!
//! Where the settings come from, first found wins: a unit file the caller
//! names (`--service-unit FILE`); else `owlet.service` installed in the
//! systemd unit directories (`/etc`, `/run`, `/usr/lib`, `/lib`, in
//! systemd's order), with its drop-ins (`owlet.service.d/*.conf` in those
//! directories, a file name in an earlier directory hiding the same name in
//! a later one, applied in file-name order); else the packaged unit
//! (`systemd/owlet.service`), compiled in. A test keeps the compiled-in
//! values equal to the packaged unit's.
//!
//! Only the keys above are read, with systemd's rules for them: a list key
//! given several times accumulates, an empty assignment resets it, and a
//! leading `~` inverts it. It never runs `systemctl` and never writes.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::{Capability, CapsHashSet};

/// The unit the package installs.
pub const UNIT_NAME: &str = "owlet.service";

/// The user the packaged unit runs the agent as (its `User=`).
pub const DEFAULT_USER: &str = "owlet";

/// The packaged unit, compiled in: what applies when none is installed.
const PACKAGED: &str = include_str!("../../systemd/owlet.service");

/// Unit directories in systemd's order of precedence.
const UNIT_DIRS: [&str; 4] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Where the unit's settings were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Files on this host: the unit, then its drop-ins.
    Files(Vec<PathBuf>),
    /// No unit installed: the packaged one, compiled into this binary.
    Packaged,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Files(files) => {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                f.write_str(&names.join(" + "))
            }
            Origin::Packaged => write!(f, "the packaged {UNIT_NAME} (none installed here)"),
        }
    }
}

/// The settings of the unit that matter to acting as the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUnit {
    pub origin: Origin,
    /// `User=` (`None`: the unit runs as root).
    pub user: Option<String>,
    /// `Group=` (`None`: the user's own group).
    pub group: Option<String>,
    /// `AmbientCapabilities=`.
    pub ambient: CapsHashSet,
    /// `CapabilityBoundingSet=` (`None`: not limited).
    pub bounding: Option<CapsHashSet>,
    /// `ProtectHome=` hides /home, /root and /run/user (`yes`, `tmpfs`).
    pub hides_home: bool,
}

/// A unit file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("cannot read the service unit {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: unknown capability `{name}` (e.g. CAP_NET_RAW)")]
    Capability {
        path: PathBuf,
        line: usize,
        key: String,
        name: String,
    },
}

impl ServiceUnit {
    /// The installed `owlet.service` with its drop-ins, else the packaged
    /// unit.
    pub fn find() -> Result<ServiceUnit, UnitError> {
        let Some(main) = UNIT_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(UNIT_NAME))
            .find(|p| p.is_file())
        else {
            return Ok(Self::packaged());
        };
        let dropin_dirs: Vec<PathBuf> = UNIT_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(format!("{UNIT_NAME}.d")))
            .collect();
        Self::from_files(&main, &dropin_dirs)
    }

    /// `path` with the drop-ins of `PATH.d/` (`--service-unit FILE`), or
    /// [`find`](Self::find) without a path.
    pub fn load(path: Option<&Path>) -> Result<ServiceUnit, UnitError> {
        match path {
            Some(path) => {
                let mut dropins = path.as_os_str().to_owned();
                dropins.push(".d");
                Self::from_files(path, &[PathBuf::from(dropins)])
            }
            None => Self::find(),
        }
    }

    /// The packaged unit, compiled in.
    pub fn packaged() -> ServiceUnit {
        let mut settings = Settings::default();
        // The packaged unit is checked by a test: it always parses.
        let _ = settings.apply(Path::new("systemd/owlet.service"), PACKAGED);
        settings.into_unit(Origin::Packaged)
    }

    fn from_files(main: &Path, dropin_dirs: &[PathBuf]) -> Result<ServiceUnit, UnitError> {
        let mut files = vec![main.to_path_buf()];
        // Drop-ins by file name: the first directory that has a name wins.
        let mut dropins: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
        for dir in dropin_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "conf") {
                    dropins.entry(entry.file_name()).or_insert(path);
                }
            }
        }
        files.extend(dropins.into_values());
        let mut settings = Settings::default();
        for path in &files {
            let text = std::fs::read_to_string(path).map_err(|source| UnitError::Read {
                path: path.clone(),
                source,
            })?;
            settings.apply(path, &text)?;
        }
        Ok(settings.into_unit(Origin::Files(files)))
    }

    /// What the service may do beyond an ordinary user: the ambient
    /// capabilities inside the bounding set.
    pub fn capabilities(&self) -> CapsHashSet {
        match &self.bounding {
            Some(bounding) => self.ambient.intersection(bounding).copied().collect(),
            None => self.ambient.clone(),
        }
    }

    /// The user the service runs as (`root` when the unit names none).
    pub fn user_name(&self) -> &str {
        self.user.as_deref().unwrap_or("root")
    }

    /// The unit's user and group on this host; `Ok(None)` when the user
    /// does not exist here.
    pub fn account(&self) -> Result<Option<Account>, String> {
        let name = self.user_name();
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("cannot look up user {name}: {e}"))?;
        let Some(user) = user else {
            return Ok(None);
        };
        let gid = match &self.group {
            None => user.gid,
            Some(group) => {
                nix::unistd::Group::from_name(group)
                    .map_err(|e| format!("cannot look up group {group}: {e}"))?
                    .ok_or_else(|| {
                        format!(
                            "Group={group} of {}: no such group on this host",
                            self.origin
                        )
                    })?
                    .gid
            }
        };
        Ok(Some(Account {
            name: user.name,
            uid: user.uid,
            gid,
        }))
    }
}

/// Capability names as systemd writes them, sorted (`CAP_NET_RAW`), or
/// "no capabilities".
pub fn describe(caps: &CapsHashSet) -> String {
    let mut names: Vec<String> = caps.iter().map(ToString::to_string).collect();
    names.sort();
    if names.is_empty() {
        "no capabilities".to_string()
    } else {
        names.join(" ")
    }
}

/// A user (and group) on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: nix::unistd::Uid,
    pub gid: nix::unistd::Gid,
}

/// The keys read, as the files leave them.
#[derive(Default)]
struct Settings {
    user: Option<String>,
    group: Option<String>,
    ambient: CapsHashSet,
    bounding: Option<CapsHashSet>,
    hides_home: bool,
}

impl Settings {
    /// Applies one unit file or drop-in (its `[Service]` section).
    fn apply(&mut self, path: &Path, text: &str) -> Result<(), UnitError> {
        let mut in_service = false;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some((key, value)) = line.split_once('=').filter(|_| in_service) else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let caps = |what: &str| parse_caps(value, path, index + 1, what);
            match key {
                "User" => self.user = Some(value.to_string()).filter(|v| !v.is_empty()),
                "Group" => self.group = Some(value.to_string()).filter(|v| !v.is_empty()),
                // systemd merges lines: by OR, or by AND for `~` lines.
                "AmbientCapabilities" => match caps(key)? {
                    None => self.ambient.clear(),
                    Some((false, set)) => self.ambient.extend(set),
                    Some((true, but)) => {
                        if self.ambient.is_empty() {
                            self.ambient = caps::all();
                        }
                        self.ambient.retain(|c| !but.contains(c));
                    }
                },
                "CapabilityBoundingSet" => match caps(key)? {
                    None => self.bounding = None,
                    Some((false, set)) => self
                        .bounding
                        .get_or_insert_with(Default::default)
                        .extend(set),
                    Some((true, but)) => {
                        self.bounding
                            .get_or_insert_with(caps::all)
                            .retain(|c| !but.contains(c));
                    }
                },
                "ProtectHome" => self.hides_home = matches!(value, "yes" | "true" | "tmpfs"),
                _ => {}
            }
        }
        Ok(())
    }

    fn into_unit(self, origin: Origin) -> ServiceUnit {
        ServiceUnit {
            origin,
            user: self.user,
            group: self.group,
            ambient: self.ambient,
            bounding: self.bounding,
            hides_home: self.hides_home,
        }
    }
}

/// A capability list: `(false, listed)` for `CAP_A CAP_B`, `(true, listed)`
/// for `~CAP_C` (all but those); `None` for an empty assignment (a reset).
fn parse_caps(
    value: &str,
    path: &Path,
    line: usize,
    key: &str,
) -> Result<Option<(bool, CapsHashSet)>, UnitError> {
    let (invert, list) = match value.strip_prefix('~') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    if list.trim().is_empty() && !invert {
        return Ok(None);
    }
    let mut set = CapsHashSet::new();
    for name in list.split_whitespace() {
        let cap = Capability::from_str(&name.to_ascii_uppercase()).map_err(|_| {
            UnitError::Capability {
                path: path.to_path_buf(),
                line,
                key: key.to_string(),
                name: name.to_string(),
            }
        })?;
        set.insert(cap);
    }
    Ok(Some((invert, set)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_unit_is_the_packaged_one() {
        let unit = ServiceUnit::packaged();
        assert_eq!(unit.origin, Origin::Packaged);
        assert_eq!(unit.user.as_deref(), Some(DEFAULT_USER));
        assert_eq!(unit.group.as_deref(), Some(DEFAULT_USER));
        let raw: CapsHashSet = [Capability::CAP_NET_RAW].into_iter().collect();
        assert_eq!(unit.ambient, raw);
        assert_eq!(unit.bounding.as_ref(), Some(&raw));
        assert_eq!(unit.capabilities(), raw);
        assert!(unit.hides_home);
        assert_eq!(describe(&unit.capabilities()), "CAP_NET_RAW");
    }

    #[test]
    fn dropins_add_reset_and_override_in_file_name_order() {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("owlet.service");
        std::fs::write(
            &main,
            "[Unit]\nUser=ignored\n[Service]\nUser=owlet\nAmbientCapabilities=CAP_NET_RAW\n\
             CapabilityBoundingSet=CAP_NET_RAW\nProtectHome=yes\n",
        )
        .unwrap();
        let dropins = tmp.path().join("owlet.service.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::write(
            dropins.join("a.conf"),
            "[Service]\nAmbientCapabilities=CAP_DAC_READ_SEARCH\nCapabilityBoundingSet=CAP_DAC_READ_SEARCH\n",
        )
        .unwrap();
        std::fs::write(
            dropins.join("b.conf"),
            "[Service]\nUser=sensor\nProtectHome=read-only\n",
        )
        .unwrap();
        std::fs::write(dropins.join("c.conf.example"), "[Service]\nUser=no\n").unwrap();
        let unit = ServiceUnit::load(Some(&main)).unwrap();
        assert_eq!(unit.user.as_deref(), Some("sensor"));
        assert!(!unit.hides_home);
        let want: CapsHashSet = [Capability::CAP_NET_RAW, Capability::CAP_DAC_READ_SEARCH]
            .into_iter()
            .collect();
        assert_eq!(unit.capabilities(), want);
        let Origin::Files(files) = &unit.origin else {
            panic!("{:?}", unit.origin)
        };
        assert_eq!(files.len(), 3, "{files:?}");

        // An empty assignment resets; the bounding set limits the ambient one.
        std::fs::write(
            dropins.join("d.conf"),
            "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_ADMIN\n",
        )
        .unwrap();
        let unit = ServiceUnit::load(Some(&main)).unwrap();
        assert!(unit.capabilities().is_empty(), "{unit:?}");

        std::fs::write(
            dropins.join("e.conf"),
            "[Service]\nAmbientCapabilities=CAP_NOPE\n",
        )
        .unwrap();
        let err = ServiceUnit::load(Some(&main)).unwrap_err().to_string();
        assert!(
            err.contains("e.conf:2: AmbientCapabilities: unknown capability `CAP_NOPE`"),
            "{err}"
        );
    }

    #[test]
    fn a_unit_without_user_runs_as_root() {
        let tmp = tempfile::tempdir().unwrap();
        let main = tmp.path().join("x.service");
        std::fs::write(&main, "[Service]\nExecStart=/bin/true\n").unwrap();
        let unit = ServiceUnit::load(Some(&main)).unwrap();
        assert_eq!(unit.user_name(), "root");
        let account = unit.account().unwrap().unwrap();
        assert_eq!(account.uid.as_raw(), 0);
    }
}
