//! Process command lines: `mysql -pS3cret`, `curl -u bob:pw`,
//! `app --token=x`. [`redact_args`] works on the argument vector (what
//! `/proc/PID/cmdline` holds) and is exact about argument boundaries;
//! [`redact_command_line`] takes one joined string and splits it at blanks
//! outside `'…'` / `"…"` quotes first.
//!
//! Rules, on top of the line rules applied to every argument (keyword
//! `password=…`, URLs with credentials, tokens, hashes; the "end of the
//! line" of a keyword rule is the end of that argument):
//! * a flag whose name has a secret word (`--password`, `--pass`,
//!   `--token`, `--secret`, `--api-key`, `--access-key`, `-storepass`,
//!   `-passin`, `--client-secret`, …): `--flag=value` loses the value,
//!   `--flag value` loses the next argument, whatever it is (`mysql
//!   --password -h db` then shows `-h` redacted: over-redaction, accepted).
//!   `--no-password` style negations are switches and take no value;
//! * program-specific short flags, after the program's name appears (also
//!   behind `sudo`, `env`, `timeout`, …): `-pX` / `-p X` for the MySQL /
//!   MariaDB clients, `sshpass` and the MongoDB tools; `-a X` for
//!   `redis-cli`; `-P X` for `sqlcmd`, `bcp`, `ipmitool`; `-w X` (and
//!   `ldappasswd`'s `-s` / `-a`) for the OpenLDAP clients; `-U user%pass`
//!   (and `--user`) for the Samba clients and `-u user:pass` / `-U` (and
//!   `--user`, `--proxy-user`) for `curl`, which keep the user and lose the
//!   password; `-p X` for `docker` / `podman` / `helm` after `login`;
//!   the last argument of `htpasswd -b`;
//! * an argument holding blanks (`sh -c "mysql -pX db"`) is redacted as a
//!   command line of its own.
//!
//! Guarantee: every argument a rule names is replaced before anything is
//! cut, so a caller that truncates afterwards cannot expose part of a
//! secret. Not covered: secrets in the environment (not part of the command
//! line), a password read from a file whose name is shown, and programs
//! with their own short flag for a password that are not listed above.

use std::borrow::Cow;

use crate::line::{REDACTED, Redactor};

/// Programs with a short password flag, by the flag's letter.
const SHORT_PASSWORD_FLAGS: &[(&[&str], u8)] = &[
    (
        &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mysqlimport",
            "mysqlcheck",
            "mysqlshow",
            "mysqlslap",
            "mysqlbinlog",
            "mysqlpump",
            "mysqlsh",
            "mariadb",
            "mariadb-dump",
            "mariadb-admin",
            "mariadb-import",
            "mariadb-check",
            "mariadb-show",
            "mariadb-slap",
            "sshpass",
            "mongo",
            "mongosh",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
        ],
        b'p',
    ),
    (&["redis-cli", "valkey-cli", "keydb-cli"], b'a'),
    (&["sqlcmd", "bcp", "ipmitool"], b'P'),
    (
        &[
            "ldapsearch",
            "ldapmodify",
            "ldapadd",
            "ldapdelete",
            "ldapmodrdn",
            "ldapwhoami",
            "ldapcompare",
            "ldapexop",
            "ldappasswd",
        ],
        b'w',
    ),
];

/// `user%password` programs (Samba).
const SAMBA: &[&str] = &[
    "smbclient",
    "smbcacls",
    "smbget",
    "smbtree",
    "rpcclient",
    "net",
];

/// What the current program is, as far as the flags go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// Short flag letter that takes a password.
    ShortPassword(u8),
    /// `-U user%password`.
    Samba,
    /// `-u user:password`.
    Curl,
    /// `-p` after `login`.
    Registry {
        login: bool,
    },
    /// `ldappasswd`: `-w`, `-s` and `-a` take passwords.
    LdapPasswd,
    /// `htpasswd -b … user password`.
    Htpasswd {
        batch: bool,
    },
    Other,
}

impl Program {
    /// The program an argument names (by its base name), if a known one.
    fn named(arg: &str) -> Option<Program> {
        let name = arg.rsplit('/').next().unwrap_or(arg);
        if name == "ldappasswd" {
            return Some(Program::LdapPasswd);
        }
        if let Some((_, letter)) = SHORT_PASSWORD_FLAGS
            .iter()
            .find(|(names, _)| names.contains(&name))
        {
            return Some(Program::ShortPassword(*letter));
        }
        match name {
            _ if SAMBA.contains(&name) => Some(Program::Samba),
            "curl" => Some(Program::Curl),
            "docker" | "podman" | "helm" | "buildah" | "skopeo" | "nerdctl" => {
                Some(Program::Registry { login: false })
            }
            "htpasswd" => Some(Program::Htpasswd { batch: false }),
            _ => None,
        }
    }

    /// The letters of short flags that take a password (value attached or
    /// next), and how the value is cut.
    fn short_secret(self, letter: u8) -> Option<Cut> {
        match self {
            Program::ShortPassword(l) if l == letter => Some(Cut::All),
            Program::LdapPasswd if matches!(letter, b'w' | b's' | b'a') => Some(Cut::All),
            Program::Samba if letter == b'U' => Some(Cut::After(b'%')),
            Program::Curl if matches!(letter, b'u' | b'U') => Some(Cut::After(b':')),
            Program::Registry { login: true } if letter == b'p' => Some(Cut::All),
            _ => None,
        }
    }

    /// Long flags (without `--`) with a user:password value.
    fn long_user_secret(self, name: &str) -> Option<Cut> {
        match (self, name) {
            (Program::Samba, "user") => Some(Cut::After(b'%')),
            (Program::Curl, "user" | "proxy-user") => Some(Cut::After(b':')),
            _ => None,
        }
    }
}

/// Which part of a flag's value is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// All of it.
    All,
    /// What follows the first such byte (all of it without one... nothing:
    /// `curl -u bob` prompts for the password).
    After(u8),
}

impl Cut {
    fn apply(self, value: &str) -> Cow<'_, str> {
        match self {
            Cut::All if value.is_empty() => Cow::Borrowed(value),
            Cut::All => Cow::Borrowed(REDACTED),
            Cut::After(sep) => match value.bytes().position(|b| b == sep) {
                Some(i) if i + 1 < value.len() => Cow::Owned(format!("{}{REDACTED}", &value[..=i])),
                _ => Redactor::builtin().redact_line(value),
            },
        }
    }
}

/// Words that make a flag name secret, alone or as a part (`--db-password`).
const SECRET_FLAG_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "passphrase",
    "pwd",
    "pw",
    "token",
    "secret",
    "apikey",
    "credential",
    "credentials",
    "authtoken",
    "bearer",
    "storepass",
    "keypass",
    "srcstorepass",
    "deststorepass",
    "srckeypass",
    "destkeypass",
    "passin",
    "passout",
    "psk",
];

/// Words that make a flag secret when `key` follows (`--api-key`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "auth",
    "client",
    "license",
    "master",
    "encryption",
    "signing",
    "account",
    "app",
    "session",
];

/// Whether a flag name (dashes stripped) takes a secret value.
fn secret_flag(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split(['-', '_', '.']).collect();
    // Switches: `--no-password`, `--ask-pass`, `--password-stdin`.
    if matches!(parts.first(), Some(&"no" | &"without" | &"ask" | &"prompt"))
        || parts.contains(&"stdin")
    {
        return false;
    }
    lower.contains("password")
        || lower.contains("passwd")
        || lower.contains("secret")
        || lower.contains("token")
        || parts.iter().any(|p| SECRET_FLAG_WORDS.contains(p))
        || parts
            .windows(2)
            .any(|w| KEY_QUALIFIERS.contains(&w[0]) && w[1] == "key")
}

/// The arguments with secrets replaced; `Cow::Borrowed` for each argument
/// left alone. Same length and order as `args`.
pub fn redact_args<S: AsRef<str>>(args: &[S]) -> Vec<Cow<'_, str>> {
    let line_rules = Redactor::builtin();
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(args.len());
    let mut program = Program::Other;
    // The previous argument asked for this one to be cut so.
    let mut pending: Option<Cut> = None;
    for arg in args.iter().map(AsRef::as_ref) {
        if let Some(cut) = pending.take() {
            out.push(cut.apply(arg));
            continue;
        }
        if let Some(nested) = nested_command(arg) {
            out.push(nested);
            continue;
        }
        if let Some(p) = Program::named(arg) {
            program = p;
            out.push(line_rules.redact_line(arg));
            continue;
        }
        match &mut program {
            Program::Registry { login } if arg == "login" => *login = true,
            Program::Htpasswd { batch }
                if arg.starts_with('-') && !arg.starts_with("--") && arg.contains('b') =>
            {
                *batch = true
            }
            _ => {}
        }
        let (redacted, next) = flag(arg, program);
        pending = next;
        out.push(redacted.unwrap_or_else(|| line_rules.redact_line(arg)));
    }
    if let (Program::Htpasswd { batch: true }, Some(last)) = (program, out.last_mut())
        && args.len() > 2
    {
        *last = Cow::Borrowed(REDACTED);
    }
    out
}

/// An argument that is a command line itself (`sh -c "mysql -pX db"`, or
/// a quoted word of [`redact_command_line`]), redacted as one: first by the
/// line rules over all of it (a keyword's value runs to the end of the
/// argument: `-H "Authorization: Bearer x"`), then word by word. None for a
/// flag (its value may hold blanks: `--password=two words`) and for a
/// single word (quotes around it or not).
fn nested_command(arg: &str) -> Option<Cow<'_, str>> {
    if !arg.contains(char::is_whitespace) || arg.starts_with('-') {
        return None;
    }
    let quoted = arg.len() >= 2
        && ((arg.starts_with('"') && arg.ends_with('"'))
            || (arg.starts_with('\'') && arg.ends_with('\'')));
    let (open, inner, close) = if quoted {
        (&arg[..1], &arg[1..arg.len() - 1], &arg[arg.len() - 1..])
    } else {
        ("", arg, "")
    };
    if split_words(inner).len() < 2 {
        return None;
    }
    let whole = Redactor::builtin().redact_line(inner);
    let words = redact_words(&whole);
    Some(if words == inner {
        Cow::Borrowed(arg)
    } else {
        Cow::Owned(format!("{open}{words}{close}"))
    })
}

/// How one argument is redacted as a flag: its own text when a value is
/// attached, and how the next argument is cut when the value follows.
fn flag(arg: &str, program: Program) -> (Option<Cow<'_, str>>, Option<Cut>) {
    if let Some(long) = arg.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let cut = program
            .long_user_secret(name)
            .or_else(|| secret_flag(name).then_some(Cut::All));
        return match (cut, value) {
            (Some(cut), Some(v)) => {
                let kept = &arg[..arg.len() - v.len()];
                (Some(Cow::Owned(format!("{kept}{}", cut.apply(v)))), None)
            }
            (Some(cut), None) => (None, Some(cut)),
            (None, _) => (None, None),
        };
    }
    let Some(short) = arg.strip_prefix('-') else {
        return (None, None);
    };
    let bytes = short.as_bytes();
    // The program's own password letter first: `mysql -pwSecret` is `-p`.
    match bytes.first().and_then(|&l| program.short_secret(l)) {
        Some(cut) if bytes.len() > 1 => {
            let value = &arg[2..];
            (
                Some(Cow::Owned(format!("{}{}", &arg[..2], cut.apply(value)))),
                None,
            )
        }
        Some(cut) => (None, Some(cut)),
        // Single-dash long options of Java keytool and OpenSSL
        // (`-storepass x`, `-passin pass:x`).
        None if bytes.len() >= 3 && secret_flag(short) && !short.contains('=') => {
            (None, Some(Cut::All))
        }
        None => (None, None),
    }
}

/// A command line joined from its arguments: the line rules with each
/// keyword's value ending at the next blank (the words after it are other
/// arguments: `-H Authorization: Bearer x -o out`), then [`redact_args`] over
/// the line split at blanks outside quotes. Blanks and quotes are kept;
/// `Cow::Borrowed` when nothing was replaced. Without the argument
/// boundaries an unquoted value with blanks (`--password two words`) loses
/// its first word only: prefer [`redact_args`] when the arguments are known.
pub fn redact_command_line(line: &str) -> Cow<'_, str> {
    let out = redact_words(&Redactor::builtin().redact_words(line)).into_owned();
    if out == line {
        Cow::Borrowed(line)
    } else {
        Cow::Owned(out)
    }
}

/// [`redact_args`] over `line` split at blanks outside quotes.
fn redact_words(line: &str) -> Cow<'_, str> {
    let words = split_words(line);
    let args: Vec<&str> = words.iter().map(|r| &line[r.clone()]).collect();
    let redacted = redact_args(&args);
    if redacted.iter().zip(&args).all(|(r, a)| r == a) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (range, new) in words.iter().zip(&redacted) {
        out.push_str(&line[at..range.start]);
        out.push_str(new);
        at = range.end;
    }
    out.push_str(&line[at..]);
    Cow::Owned(out)
}

/// Byte ranges of blank-separated words; quotes (`'…'`, `"…"`) group blanks
/// into a word and stay part of it.
fn split_words(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    words.push(s..i);
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        words.push(s..line.len());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> String {
        let v: Vec<&str> = line.split(' ').collect();
        redact_args(&v).join(" ")
    }

    #[test]
    fn program_password_flags() {
        for (line, want) in [
            ("mysql -uroot -pS3cret db", "mysql -uroot -p[redacted] db"),
            (
                "/usr/bin/mysqldump -p S3cret db",
                "/usr/bin/mysqldump -p [redacted] db",
            ),
            (
                "mysqladmin --password=S3cret status",
                "mysqladmin --password=[redacted] status",
            ),
            ("sshpass -pS3cret ssh host", "sshpass -p[redacted] ssh host"),
            (
                "sudo sshpass -p S3cret ssh host",
                "sudo sshpass -p [redacted] ssh host",
            ),
            (
                "redis-cli -h db -a S3cret ping",
                "redis-cli -h db -a [redacted] ping",
            ),
            ("redis-cli -aS3cret", "redis-cli -a[redacted]"),
            (
                "smbclient //fs/share -U bob%S3cret",
                "smbclient //fs/share -U bob%[redacted]",
            ),
            (
                "smbclient -Ubob%S3cret //fs/s",
                "smbclient -Ubob%[redacted] //fs/s",
            ),
            (
                "smbclient --user=bob%S3cret",
                "smbclient --user=bob%[redacted]",
            ),
            (
                "curl -u bob:S3cret https://h/",
                "curl -u bob:[redacted] https://h/",
            ),
            (
                "curl -ubob:S3cret https://h/",
                "curl -ubob:[redacted] https://h/",
            ),
            (
                "curl --user bob:S3cret https://h/",
                "curl --user bob:[redacted] https://h/",
            ),
            ("curl -u bob https://h/", "curl -u bob https://h/"),
            (
                "ldapsearch -x -D cn=admin -w S3cret",
                "ldapsearch -x -D cn=admin -w [redacted]",
            ),
            (
                "docker login -u bob -p S3cret reg",
                "docker login -u bob -p [redacted] reg",
            ),
            ("docker run -p 8080:80 nginx", "docker run -p 8080:80 nginx"),
            (
                "htpasswd -b /etc/h bob S3cret",
                "htpasswd -b /etc/h bob [redacted]",
            ),
            (
                "sqlcmd -S db -U sa -P S3cret",
                "sqlcmd -S db -U sa -P [redacted]",
            ),
        ] {
            assert_eq!(args(line), want, "{line}");
        }
    }

    #[test]
    fn generic_secret_flags() {
        for (line, want) in [
            ("app --password S3cret -v", "app --password [redacted] -v"),
            ("app --pass=S3cret", "app --pass=[redacted]"),
            (
                "app --token=abc --port 80",
                "app --token=[redacted] --port 80",
            ),
            (
                "app --api-key k1 --secret s2",
                "app --api-key [redacted] --secret [redacted]",
            ),
            ("app --db-password=x", "app --db-password=[redacted]"),
            ("aws --aws-access-key AK", "aws --aws-access-key [redacted]"),
            (
                "keytool -storepass S3cret -keypass K3y",
                "keytool -storepass [redacted] -keypass [redacted]",
            ),
            (
                "openssl rsa -passin pass:S3cret",
                "openssl rsa -passin [redacted]",
            ),
            ("psql --no-password -h db", "psql --no-password -h db"),
            (
                "docker login --password-stdin reg",
                "docker login --password-stdin reg",
            ),
            ("app --bypass-cache file", "app --bypass-cache file"),
            (
                "app token=abc password=def",
                "app token=[redacted] password=[redacted]",
            ),
            (
                "java -Dspring.datasource.password=S3cret -jar app.jar",
                "java -Dspring.datasource.password=[redacted] -jar app.jar",
            ),
            (
                "git clone https://bob:S3cret@git.example/r.git",
                "git clone https://bob:[redacted]@git.example/r.git",
            ),
            (
                "mount -o username=bob,password=S3cret //fs/s /mnt",
                "mount -o username=bob,password=[redacted] //fs/s /mnt",
            ),
            ("nginx -g daemon off;", "nginx -g daemon off;"),
        ] {
            assert_eq!(args(line), want, "{line}");
        }
    }

    #[test]
    fn argument_boundaries_are_exact() {
        // One argv element holding a blank: the whole value goes.
        let v = ["mysql", "--password", "two words", "db"];
        assert_eq!(redact_args(&v).join(" "), "mysql --password [redacted] db");
        let v = ["app", "--password=two words"];
        assert_eq!(redact_args(&v).join(" "), "app --password=[redacted]");
        // A shell running a command line.
        let v = ["sh", "-c", "mysql -pS3cret db && echo ok"];
        assert_eq!(
            redact_args(&v).join(" "),
            "sh -c mysql -p[redacted] db && echo ok"
        );
    }

    #[test]
    fn joined_string_form() {
        for (line, want) in [
            ("mysql  -pS3cret   db", "mysql  -p[redacted]   db"),
            ("mysql -p\"my pass\" db", "mysql -p[redacted] db"),
            ("sh -c 'mysql -pS3cret db'", "sh -c 'mysql -p[redacted] db'"),
            (
                "app --password \"two words\" x",
                "app --password [redacted] x",
            ),
            (
                "curl -H 'Authorization: Bearer abc.def' https://h",
                "curl -H 'Authorization: Bearer [redacted]' https://h",
            ),
        ] {
            assert_eq!(redact_command_line(line), want, "{line}");
        }
        assert!(matches!(redact_command_line("sleep 30"), Cow::Borrowed(_)));
        assert!(matches!(redact_command_line(""), Cow::Borrowed(_)));
        assert_eq!(redact_command_line("mysql -p"), "mysql -p");
    }
}
