//! `owlet health` and `owlet reload`: clients of the control socket.
//!
//! When the agent cannot be reached the client says why in the operator's
//! terms and exits 3 (UNKNOWN): no socket (the agent is not running, or
//! another `--socket` is configured), a socket nobody listens on, or a socket
//! this user may not open — then naming who owns what stopped it and the fix
//! that works for its mode: joining its group where the group may use it,
//! else running as its owner or changing the mode (a 0700 directory, as
//! `owlet-soc ca issue --layout user` makes, lets no group in).
//! `reload` prints the agent's verdict: exit 0 when the new configuration
//! was applied whole, 1 when part of it was not (a collector failed to start
//! with it, a new certificate was refused — the agent keeps the old one —
//! or settings wait for a restart: each named), 2 when it was rejected (the
//! agent keeps the old one); it says when the agent took a new certificate.
//! Keys of
//! a reply this client does not know are ignored, so an older client works
//! with a newer agent.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::control;
use crate::verdict::Verdict;

/// Exit status when the agent cannot be asked (Nagios UNKNOWN).
const UNREACHABLE: i32 = 3;

/// Prints the agent's health; the exit status is the Nagios verdict, 3
/// (UNKNOWN) when the agent cannot be reached.
pub async fn health(socket: PathBuf, json: bool) -> anyhow::Result<i32> {
    let reply = match control::request(&socket, "health").await {
        Ok(reply) => reply,
        Err(e) => {
            println!("OWLET UNKNOWN - {}", unreachable(&socket, &e));
            return Ok(Verdict::Unknown.exit_code());
        }
    };
    let value: serde_json::Value = serde_json::from_str(&reply)?;
    let verdict = match value["verdict"].as_str() {
        Some("OK") => Verdict::Ok,
        Some("WARNING") => Verdict::Warning,
        Some("CRITICAL") => Verdict::Critical,
        _ => Verdict::Unknown,
    };
    if json {
        println!("{reply}");
    } else {
        let reasons: Vec<&str> = value["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        let summary = if reasons.is_empty() {
            "all good".to_string()
        } else {
            reasons.join("; ")
        };
        let m = &value["metrics"];
        // Host learning progress, when host health runs with learning on.
        let learning = value["collectors"]["host"]["detail"]["host"]["learning"]["percent"]
            .as_f64()
            .map_or(String::new(), |p| format!(" host_learning={p:.0}%"));
        println!(
            "OWLET {} - {summary} | connection={} spool_events={} spool_bytes={}B accepted={}c dropped={}c{learning}",
            value["verdict"].as_str().unwrap_or("UNKNOWN"),
            m["connection"].as_str().unwrap_or("?"),
            value["spool_events"],
            value["spool_bytes"],
            m["events_accepted"],
            m["events_dropped"],
        );
    }
    Ok(verdict.exit_code())
}

/// Asks the agent to reload; prints what changed (exit 0), what did not
/// take effect (exit 1: a collector that failed to start with the new
/// values, settings that need a restart) or why the new configuration was
/// rejected (exit 2).
pub async fn reload(socket: PathBuf, json: bool) -> anyhow::Result<i32> {
    match control::request(&socket, "reload").await {
        Ok(reply) => {
            let (text, code) = reload_outcome(&reply);
            if json {
                println!("{reply}");
            } else if code == 0 {
                println!("{text}");
            } else {
                eprintln!("{text}");
            }
            Ok(code)
        }
        Err(e) => {
            eprintln!("owlet: {}", unreachable(&socket, &e));
            Ok(UNREACHABLE)
        }
    }
}

/// The text and exit status for the agent's answer to `reload`.
fn reload_outcome(reply: &str) -> (String, i32) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(reply) else {
        return (
            format!("owlet: the agent answered something unexpected: {reply}"),
            UNREACHABLE,
        );
    };
    match (value["reload"].as_str(), value["error"].as_str()) {
        (Some(outcome @ ("applied" | "partial")), _) => {
            let list = |what: &str| -> Vec<String> {
                value[what]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_string))
                    .collect()
            };
            let parts: Vec<String> = ["added", "changed", "removed", "restarted"]
                .into_iter()
                .filter_map(|what| {
                    let ids = list(what);
                    (!ids.is_empty()).then(|| format!("{what} {}", ids.join(", ")))
                })
                .collect();
            let summary = if parts.is_empty() {
                "nothing changed".to_string()
            } else {
                parts.join("; ")
            };
            let cert = &value["certificate"];
            let summary = if cert["reloaded"].as_bool() == Some(true) {
                format!(
                    "{summary}; certificate reloaded: serial {} (was {}), valid until {}; reconnecting to the SOC with it",
                    cert["serial"].as_str().unwrap_or("?"),
                    cert["previous_serial"].as_str().unwrap_or("?"),
                    cert["not_after"].as_str().unwrap_or("?")
                )
            } else {
                summary
            };
            if outcome == "applied" {
                return (format!("reload applied: {summary}"), 0);
            }
            let mut text = format!("reload applied in part: {summary}");
            for failed in list("failed") {
                let what = if failed.starts_with("certificate: ") {
                    format!(
                        "certificate NOT reloaded, the agent keeps using {}",
                        cert["serial"].as_str().unwrap_or("the previous one")
                    )
                } else {
                    "failed to start with the new configuration (retried with backoff; see owlet health)".to_string()
                };
                text.push_str(&format!("\n{what}: {failed}"));
            }
            let restart = list("needs_restart");
            if !restart.is_empty() {
                text.push_str(&format!(
                    "\nneeds a restart: {} (not applied until then: systemctl restart owlet)",
                    restart.join(", ")
                ));
            }
            (text, 1)
        }
        (Some("rejected"), _) => {
            let errors = value["errors"]
                .as_str()
                .map_or_else(|| value["errors"].to_string(), str::to_string);
            (
                format!(
                    "reload rejected; the agent keeps running its previous configuration. Fix these and reload again:\n{errors}"
                ),
                2,
            )
        }
        // An agent from before reloads reported their outcome.
        (Some("requested"), _) => (
            "reload requested (this agent does not report the outcome: see its log)".to_string(),
            0,
        ),
        (_, Some(error)) => (format!("owlet: the agent refused: {error}"), 2),
        _ => (
            format!("owlet: the agent answered something unexpected: {reply}"),
            UNREACHABLE,
        ),
    }
}

/// Why `socket` could not be used, and what to do about it.
fn unreachable(socket: &Path, error: &io::Error) -> String {
    let path = socket.display();
    match error.kind() {
        io::ErrorKind::NotFound => format!(
            "no control socket at {path}: the agent is not running (start it: systemctl start owlet), \
             or it uses another control.socket (pass that path with --socket)"
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "nothing listens on {path} (a socket left behind by an agent that stopped): \
             the agent is not running (start it: systemctl start owlet), \
             or it uses another control.socket (pass that path with --socket)"
        ),
        io::ErrorKind::PermissionDenied => permission_denied(socket),
        _ => format!("cannot reach the agent at {path}: {error}"),
    }
}

/// The message for EACCES: which file stopped this user (the socket, or a
/// directory above it that may not be entered), who owns it, and the fix:
/// join the group when the group may use it, else run as the owner or
/// change the mode (no group helps with a 0700 directory).
fn permission_denied(socket: &Path) -> String {
    let blocker = blocking_path(socket);
    let Ok(meta) = std::fs::metadata(&blocker) else {
        return format!(
            "permission denied on the control socket {}: run this command with sudo, \
             or as a member of the agent's group",
            socket.display()
        );
    };
    let mode = meta.permissions().mode() & 0o7777;
    let group = group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string());
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", meta.uid()), |u| u.name);
    let is_socket = blocker == socket;
    let what = if is_socket {
        "it".to_string()
    } else {
        format!("the directory {} above it", blocker.display())
    };
    // What the group needs: write on the socket (connect), search on a
    // directory.
    let (group_bit, grant) = if is_socket {
        (0o020, "g+w")
    } else {
        (0o010, "g+x")
    };
    let head = format!(
        "permission denied: this user may not open the control socket {}",
        socket.display()
    );
    if mode & group_bit != 0 {
        return format!(
            "{head} ({what} belongs to group `{group}`, mode {mode:04o}). Join that group \
             (`sudo usermod -aG {group} $USER`, then log in again) or run this command with sudo"
        );
    }
    let run_as = if meta.uid() == 0 {
        "run this command with sudo".to_string()
    } else {
        format!("run this command as {owner} (`sudo -u {owner} owlet ...`) or with sudo")
    };
    format!(
        "{head} ({what} belongs to user `{owner}`, mode {mode:04o}: only {owner} and root may use it; \
         joining a group does not help). {}, or let a group in \
         (`sudo chgrp GROUP {path} && sudo chmod {grant} {path}`, then join GROUP)",
        capitalized(&run_as),
        path = blocker.display(),
    )
}

/// `text` with its first letter upper-case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// `socket`, or the first directory above it that this user cannot enter
/// (so the socket itself cannot even be looked at).
fn blocking_path(socket: &Path) -> PathBuf {
    let mut ancestors: Vec<&Path> = socket.ancestors().collect();
    ancestors.reverse();
    for pair in ancestors.windows(2) {
        if let Err(e) = std::fs::symlink_metadata(pair[1])
            && e.kind() == io::ErrorKind::PermissionDenied
        {
            return pair[0].to_path_buf();
        }
    }
    socket.to_path_buf()
}

/// The name of group `gid` from /etc/group (where the package creates the
/// service group).
fn group_name(gid: u32) -> Option<String> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(gid)).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applied_reload_lists_what_changed_and_exits_0() {
        let (text, code) = reload_outcome(
            r#"{"reload":"applied","added":["web","dns"],"changed":[],"removed":["old"],"took_ms":3}"#,
        );
        assert_eq!(code, 0);
        assert_eq!(text, "reload applied: added web, dns; removed old");
        let (text, code) =
            reload_outcome(r#"{"reload":"applied","added":[],"changed":[],"removed":[]}"#);
        assert_eq!(
            (text.as_str(), code),
            ("reload applied: nothing changed", 0)
        );
    }

    #[test]
    fn a_partial_reload_names_what_did_not_apply_and_exits_1() {
        let (text, code) = reload_outcome(
            r#"{"reload":"partial","added":["fim"],"changed":[],"removed":[],"failed":["fim: cannot create /var/lib/owlet/fim"],"needs_restart":["[soc]","[spool]"]}"#,
        );
        assert_eq!(code, 1);
        assert!(
            text.starts_with("reload applied in part: added fim\n"),
            "{text}"
        );
        assert!(
            text.contains("failed to start with the new configuration"),
            "{text}"
        );
        assert!(
            text.contains("fim: cannot create /var/lib/owlet/fim"),
            "{text}"
        );
        assert!(text.contains("needs a restart: [soc], [spool]"), "{text}");
        assert!(!text.contains("reload applied:"), "{text}");
    }

    #[test]
    fn a_reloaded_certificate_is_named_and_a_refused_one_exits_1() {
        let (text, code) = reload_outcome(
            r#"{"reload":"applied","added":[],"changed":[],"removed":[],
                "certificate":{"reloaded":true,"serial":"0b","previous_serial":"0a","not_after":"2027-01-01T00:00:00Z"}}"#,
        );
        assert_eq!(code, 0);
        assert!(
            text.contains("certificate reloaded: serial 0b (was 0a)"),
            "{text}"
        );
        let (text, code) = reload_outcome(
            r#"{"reload":"partial","added":[],"changed":[],"removed":[],"failed":["certificate: cannot use certificate agent.pem with key agent.key"],
                "certificate":{"reloaded":false,"serial":"0a","error":"cannot use certificate agent.pem with key agent.key"}}"#,
        );
        assert_eq!(code, 1);
        assert!(
            text.contains("NOT reloaded, the agent keeps using 0a"),
            "{text}"
        );
        assert!(text.contains("agent.key"), "{text}");
        let (text, code) = reload_outcome(
            r#"{"reload":"applied","added":[],"changed":[],"removed":[],"certificate":{"reloaded":false,"serial":"0a"}}"#,
        );
        assert_eq!(
            (text.as_str(), code),
            ("reload applied: nothing changed", 0)
        );
    }

    #[test]
    fn a_rejected_reload_prints_the_errors_and_exits_2() {
        let (text, code) = reload_outcome(
            r#"{"reload":"rejected","errors":"/etc/owlet/owlet.toml:3:1: agent.colour: unknown key `colour`","future":true}"#,
        );
        assert_eq!(code, 2);
        assert!(
            text.contains("keeps running its previous configuration"),
            "{text}"
        );
        assert!(
            text.ends_with("\n/etc/owlet/owlet.toml:3:1: agent.colour: unknown key `colour`"),
            "{text}"
        );
    }

    #[test]
    fn other_replies_are_not_taken_for_success() {
        assert_eq!(reload_outcome(r#"{"reload":"requested"}"#).1, 0);
        assert_eq!(reload_outcome(r#"{"error":"agent is shutting down"}"#).1, 2);
        assert_eq!(reload_outcome("not json").1, UNREACHABLE);
        assert_eq!(reload_outcome(r#"{"reload":"maybe"}"#).1, UNREACHABLE);
    }

    #[tokio::test]
    async fn a_missing_socket_says_the_agent_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("owlet.sock");
        let code = reload(socket.clone(), false).await.unwrap();
        assert_eq!(code, UNREACHABLE);
        let e = control::request(&socket, "health").await.unwrap_err();
        let text = unreachable(&socket, &e);
        assert!(text.contains("the agent is not running"), "{text}");
        assert!(text.contains("--socket"), "{text}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_says_the_agent_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("owlet.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let e = control::request(&socket, "health").await.unwrap_err();
        let text = unreachable(&socket, &e);
        assert!(text.starts_with("nothing listens on"), "{text}");
        assert!(text.contains("the agent is not running"), "{text}");
    }

    #[test]
    fn group_names_come_from_etc_group() {
        assert_eq!(group_name(0).as_deref(), Some("root"));
        assert_eq!(group_name(u32::MAX - 7), None);
    }
}
