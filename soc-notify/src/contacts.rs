//! A tenant's notification contacts: the people its customer admin lists
//! in the portal (`/t/TENANT/contacts`), who get the tenant's mail
//! notifications besides the `to` of the SMTP channels that serve it.
//!
//! ## The seam between the portal and the notifier
//!
//! One JSON file per tenant, `ROOT/contacts/TENANT.json` (ROOT: the
//! store's root), whose format this module alone defines: the portal
//! writes it with [`update`], the notifier reads it with [`Watch`].
//!
//! * A file rather than the notifier opening `portal.db`: the portal is its
//!   own process (`owlet-soc portal`, its own unit) with its own schema and
//!   migrations; reading its database would tie every portal schema change
//!   to the notifier and put the notifier's reads inside the portal's
//!   locking. A small file that one crate defines keeps both sides free,
//!   is read without locks, and can be inspected (and restored) by hand.
//! * Not inside `ROOT/tenants/TENANT/`: the store makes a new tenant's
//!   directory by renaming a complete one into place, which fails if a
//!   directory of that name already exists; a tenant's contacts may be
//!   entered before its first event arrives.
//!
//! ## Guarantees
//!
//! * [`update`] replaces the file atomically (a temporary file in the same
//!   directory, synced, mode 0640, renamed over the old one, the directory
//!   synced): a reader sees the old list or the new one, never a part.
//!   Writers within one process are serialised, so two concurrent changes
//!   cannot lose one another; the portal is the only writing process.
//! * Every address saved passed [`parse_address`] (lettre's parser, the one
//!   mail is sent with), so the notifier does not meet a bad one.
//! * [`Watch::current`] re-reads the file when it changed (a rename makes a
//!   new inode; size and modification time too), so a change applies to the
//!   next notification composed, without a restart. A missing file is an
//!   empty list. An unreadable or damaged file is logged with its reason
//!   and its fix (once per state of the file) and the last good list is
//!   kept; it never stalls or stops the notifier, and the channels' own
//!   `to` are not touched by anything here.
//! * The tenant name is checked as the store checks it, so a name like
//!   `../x` cannot reach outside `ROOT/contacts/`.
//! * **Bounded.** A list holds at most [`MAX_CONTACTS`] contacts ([`update`]
//!   refuses to save more, with [`ContactsError::Full`]) and a file larger
//!   than [`MAX_FILE_BYTES`] is damaged, not read: a file grown by hand or
//!   by mistake cannot make the notifier or the portal read without bound.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::SystemTime;

use lettre::Address;
use serde::{Deserialize, Serialize};

use crate::config::Severity;

/// The directory below the store root.
pub const DIR: &str = "contacts";
/// The format's version, written in every file.
const VERSION: u32 = 1;
/// The most contacts one tenant lists.
pub const MAX_CONTACTS: usize = 200;
/// The largest contacts file read: [`MAX_CONTACTS`] contacts with the
/// longest names and addresses the portal saves fit with room to spare.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One person to notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Unique within the tenant's list, never reused while the list lives.
    pub id: u64,
    /// Who it is (shown in the portal, not sent).
    pub name: String,
    /// The mail address, as [`parse_address`] gave it.
    pub email: String,
    /// Only notifications of this severity or above; `None`: every one
    /// the tenant's rules send.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// A disabled contact stays listed and gets nothing.
    pub enabled: bool,
}

impl Contact {
    /// Whether a notification of `severity` goes to this contact.
    pub fn wants(&self, severity: Severity) -> bool {
        self.enabled && self.min_severity.is_none_or(|min| severity >= min)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    version: u32,
    contacts: Vec<Contact>,
}

/// Why the contacts cannot be read or written; each says the fix.
#[derive(Debug, thiserror::Error)]
pub enum ContactsError {
    #[error("tenant name \"{tenant}\": {reason}")]
    Tenant { tenant: String, reason: String },
    #[error(
        "contacts file {path}: {source} (owlet-soc must be able to read it and, for the portal, \
         write its directory; check the owner and mode: 0640, owner owlet-soc)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "contacts file {path} is damaged: {reason} (fix or remove the file, or restore it from a \
         backup; the portal rewrites it at the next change)"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("a tenant lists at most {MAX_CONTACTS} contacts; delete or reuse one first")]
    Full,
}

/// `ROOT/contacts/TENANT.json`, the tenant name checked as the store does.
pub fn path(store_root: &Path, tenant: &str) -> Result<PathBuf, ContactsError> {
    owlet_soc_store::Store::existing(store_root)
        .tenant_dir(tenant)
        .map_err(|e| ContactsError::Tenant {
            tenant: tenant.to_string(),
            reason: e.to_string(),
        })?;
    Ok(store_root.join(DIR).join(format!("{tenant}.json")))
}

/// A mail address as typed, checked; the address trimmed, or why not.
pub fn parse_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    Address::from_str(text).map(|a| a.to_string()).map_err(|e| {
        format!("\"{text}\" is not a mail address ({e}); write it as name@example.com")
    })
}

/// The tenant's contacts; none when the file does not exist.
pub fn load(store_root: &Path, tenant: &str) -> Result<Vec<Contact>, ContactsError> {
    read(&path(store_root, tenant)?)
}

fn read(path: &Path) -> Result<Vec<Contact>, ContactsError> {
    use std::io::Read;
    let io = |source| ContactsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(source)),
    };
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    let damaged = |reason: String| ContactsError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(damaged(format!(
            "it is larger than {MAX_FILE_BYTES} bytes, more than {MAX_CONTACTS} contacts can take"
        )));
    }
    let body: FileBody = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    if body.version != VERSION {
        return Err(damaged(format!(
            "format version {} is not the {VERSION} this owlet-soc reads",
            body.version
        )));
    }
    if body.contacts.len() > MAX_CONTACTS {
        return Err(damaged(format!(
            "it lists {} contacts, more than the {MAX_CONTACTS} a tenant may have",
            body.contacts.len()
        )));
    }
    for c in &body.contacts {
        parse_address(&c.email).map_err(damaged)?;
    }
    Ok(body.contacts)
}

/// Serialises writers within the process (the portal's requests).
static WRITER: Mutex<()> = Mutex::new(());

/// Reads the tenant's list, lets `change` edit it, and saves the result
/// atomically (see the module doc). `change`'s error, or a list longer
/// than [`MAX_CONTACTS`] ([`ContactsError::Full`]), leaves the file as it
/// was. Returns what `change` returned.
pub fn update<T, E: From<ContactsError>>(
    store_root: &Path,
    tenant: &str,
    change: impl FnOnce(&mut Vec<Contact>) -> Result<T, E>,
) -> Result<T, E> {
    let path = path(store_root, tenant)?;
    let _one_writer = WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut contacts = read(&path)?;
    let out = change(&mut contacts)?;
    if contacts.len() > MAX_CONTACTS {
        return Err(ContactsError::Full.into());
    }
    write(&path, &contacts)?;
    Ok(out)
}

/// The next free id of `contacts`.
pub fn next_id(contacts: &[Contact]) -> u64 {
    contacts.iter().map(|c| c.id).max().unwrap_or(0) + 1
}

fn write(path: &Path, contacts: &[Contact]) -> Result<(), ContactsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ContactsError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let body = serde_json::to_vec_pretty(&FileBody {
        version: VERSION,
        contacts: contacts.to_vec(),
    })
    .map_err(|e| ContactsError::Damaged {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let file_name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // The mode of `open` is masked by the umask; this one is not.
        f.set_permissions(std::fs::Permissions::from_mode(0o640))
            .map_err(io(&tmp))?;
        f.write_all(&body).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The addresses of `contacts` that a notification of `severity` goes to.
pub fn recipients(contacts: &[Contact], severity: Severity) -> Vec<Address> {
    contacts
        .iter()
        .filter(|c| c.wants(severity))
        .filter_map(|c| Address::from_str(&c.email).ok())
        .collect()
}

/// The notifier's view of one tenant's file: re-read when it changed.
pub struct Watch {
    tenant: String,
    path: Option<PathBuf>,
    /// (inode, size, modified) of the file last looked at; `None`: absent.
    seen: Option<Option<(u64, u64, SystemTime)>>,
    contacts: Vec<Contact>,
}

impl Watch {
    pub fn new(store_root: &Path, tenant: &str) -> Watch {
        let path = match path(store_root, tenant) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(tenant, error = %e, "notify: this tenant can have no contacts");
                None
            }
        };
        Watch {
            tenant: tenant.to_string(),
            path,
            seen: None,
            contacts: Vec::new(),
        }
    }

    /// The tenant's contacts now (the file is looked at on every call).
    pub fn current(&mut self) -> &[Contact] {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = &self.path else {
            return &self.contacts;
        };
        let state = std::fs::metadata(path).ok().map(|m| {
            (
                m.ino(),
                m.len(),
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            )
        });
        if self.seen == Some(state) {
            return &self.contacts;
        }
        self.seen = Some(state);
        match read(path) {
            Ok(list) => {
                tracing::info!(tenant = %self.tenant, contacts = list.len(),
                    enabled = list.iter().filter(|c| c.enabled).count(), "notify: contacts loaded");
                self.contacts = list;
            }
            Err(e) => tracing::warn!(tenant = %self.tenant, error = %e,
                kept = self.contacts.len(), "notify: cannot read the tenant's contacts; \
                 keeping the last good list (the channels' own recipients are unaffected)"),
        }
        &self.contacts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(id: u64, email: &str, min: Option<Severity>, enabled: bool) -> Contact {
        Contact {
            id,
            name: format!("c{id}"),
            email: email.into(),
            min_severity: min,
            enabled,
        }
    }

    #[test]
    fn addresses_are_checked_with_a_reason() {
        assert_eq!(parse_address(" a@b.example ").unwrap(), "a@b.example");
        for bad in ["", "nobody", "a@", "a b@c.example", "<a@b.example>"] {
            let e = parse_address(bad).unwrap_err();
            assert!(e.contains("is not a mail address"), "{bad}: {e}");
        }
    }

    #[test]
    fn severity_and_enabled_choose_the_recipients() {
        let list = [
            contact(1, "all@x.example", None, true),
            contact(2, "crit@x.example", Some(Severity::Critical), true),
            contact(3, "off@x.example", None, false),
        ];
        let to = |s| {
            recipients(&list, s)
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(to(Severity::Warning), ["all@x.example"]);
        assert_eq!(to(Severity::Critical), ["all@x.example", "crit@x.example"]);
    }

    #[test]
    fn update_writes_atomically_0640_and_the_watch_sees_each_change() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut watch = Watch::new(root, "acme");
        assert!(watch.current().is_empty(), "no file: no contacts");
        update(root, "acme", |l| {
            l.push(contact(next_id(l), "a@x.example", None, true));
            Ok::<_, ContactsError>(())
        })
        .unwrap();
        let file = path(root, "acme").unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(watch.current()[0].email, "a@x.example");
        update(root, "acme", |l| {
            l[0].enabled = false;
            Ok::<_, ContactsError>(())
        })
        .unwrap();
        assert!(
            !watch.current()[0].enabled,
            "a change is seen without a restart"
        );
        let names: Vec<_> = std::fs::read_dir(root.join(DIR)).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_damaged_file_keeps_the_last_good_list_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        update(root, "acme", |l| {
            l.push(contact(1, "a@x.example", None, true));
            Ok::<_, ContactsError>(())
        })
        .unwrap();
        let mut watch = Watch::new(root, "acme");
        assert_eq!(watch.current().len(), 1);
        let file = path(root, "acme").unwrap();
        std::fs::write(&file, "{ not json").unwrap();
        assert_eq!(watch.current().len(), 1, "last good list kept");
        let e = load(root, "acme").unwrap_err().to_string();
        assert!(
            e.contains("is damaged") && e.contains("fix or remove"),
            "{e}"
        );
        let e = update(root, "acme", |_| Ok::<_, ContactsError>(())).unwrap_err();
        assert!(
            e.to_string().contains("is damaged"),
            "a damaged file is not overwritten blindly"
        );
    }

    #[test]
    fn a_list_and_its_file_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let fill = |l: &mut Vec<Contact>| {
            while l.len() < MAX_CONTACTS {
                let id = next_id(l);
                l.push(contact(id, &format!("c{id}@x.example"), None, true));
            }
            Ok::<_, ContactsError>(())
        };
        update(root, "acme", fill).unwrap();
        let e = update(root, "acme", |l| {
            l.push(contact(next_id(l), "one-more@x.example", None, true));
            Ok::<_, ContactsError>(())
        })
        .unwrap_err();
        assert!(matches!(e, ContactsError::Full), "{e}");
        assert!(e.to_string().contains("delete or reuse one"), "{e}");
        assert_eq!(
            load(root, "acme").unwrap().len(),
            MAX_CONTACTS,
            "file unchanged"
        );

        let mut watch = Watch::new(root, "acme");
        assert_eq!(watch.current().len(), MAX_CONTACTS);
        let file = path(root, "acme").unwrap();
        let huge = format!(
            "{{\"version\":1,\"contacts\":[],\"pad\":\"{}\"}}",
            "x".repeat(MAX_FILE_BYTES as usize)
        );
        std::fs::write(&file, huge).unwrap();
        let e = load(root, "acme").unwrap_err().to_string();
        assert!(
            e.contains("larger than") && e.contains("fix or remove"),
            "{e}"
        );
        assert_eq!(watch.current().len(), MAX_CONTACTS, "last good list kept");
    }

    #[test]
    fn a_tenant_name_cannot_leave_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(path(dir.path(), "../etc").is_err());
        assert!(load(dir.path(), "a/b").is_err());
    }
}
