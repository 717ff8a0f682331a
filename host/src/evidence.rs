//! Builds host `Alert` events with the top processes of the moment as
//! evidence, so an analyst sees *who* burns the CPU (a hidden miner) in the
//! message itself and in labels a SOC rule can match.
//!
//! A process is named in the message as `ps` shows it *and* by what the
//! kernel runs ([`naming::describe`]): `xmrig (exe /usr/bin/dash, comm sh,
//! pid 1234, 99.0 % CPU, 3.1 MB)` for `exec -a xmrig sh -c …` — a renamed
//! miner shows both the name it chose and the file it really is.
//!
//! Guarantee: every alert from this crate has source "host", a subject, and
//! labels `top_process` (argv\[0\]), `top_process_exe`, `top_process_comm`,
//! `top_process_pid`, `top_process_user`,
//! `top_process_cpu_percent`, `top_process_memory_bytes`,
//! `top_process_command_line` and `top_processes` whenever the sample had
//! any process (memory-ranked for memory alerts, CPU-ranked otherwise).
//! Command lines and names are copied as the sample holds them, and the
//! sample holds them redacted ([`crate::sample::command_line`],
//! [`naming::name`]); besides them only the executable's path and the
//! comm, as the kernel gives them ([`crate::naming`]), are text of a
//! process in a label or message built here.

use std::collections::HashMap;

use owlet_proto::v1::{Alert, HostMetrics, ProcessUsage, Severity, State};

use crate::naming;

/// Processes named in the message itself (all of them are in the labels).
const MESSAGE_PROCESSES: usize = 3;

/// Which ranking is the evidence for an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    Cpu,
    Memory,
}

/// The parts of an alert the caller decides.
pub struct Draft {
    pub name: String,
    pub subject: String,
    pub severity: Severity,
    pub old_state: State,
    pub new_state: State,
    pub message: String,
    pub labels: HashMap<String, String>,
}

/// The alert, with the evidence appended to its message and labels.
pub fn alert(draft: Draft, metrics: &HostMetrics, rank: Rank) -> Alert {
    let list = match rank {
        Rank::Cpu => &metrics.top_processes,
        Rank::Memory => &metrics.top_processes_by_memory,
    };
    let mut labels = draft.labels;
    let mut message = draft.message;
    if let Some(top) = list.first() {
        let short: Vec<String> = list
            .iter()
            .take(MESSAGE_PROCESSES)
            .map(|p| {
                naming::describe_with(
                    p,
                    &format!(
                        "{:.1} % CPU, {:.1} MB",
                        p.cpu_percent,
                        p.memory_bytes as f64 / 1e6
                    ),
                )
            })
            .collect();
        message.push_str(&format!("; top processes: {}", short.join(", ")));
        labels.insert("top_process".into(), top.name.clone());
        labels.insert("top_process_exe".into(), top.exe.clone());
        labels.insert("top_process_comm".into(), top.comm.clone());
        labels.insert("top_process_pid".into(), top.pid.to_string());
        labels.insert("top_process_user".into(), top.user.clone());
        labels.insert(
            "top_process_cpu_percent".into(),
            format!("{:.1}", top.cpu_percent),
        );
        labels.insert(
            "top_process_memory_bytes".into(),
            top.memory_bytes.to_string(),
        );
        labels.insert("top_process_command_line".into(), top.command_line.clone());
        labels.insert(
            "top_processes".into(),
            list.iter().map(describe).collect::<Vec<_>>().join("; "),
        );
    }
    Alert {
        source: "host".into(),
        subject: draft.subject,
        name: draft.name,
        severity: draft.severity as i32,
        old_state: draft.old_state as i32,
        new_state: draft.new_state as i32,
        failure: 0,
        message,
        labels,
        last_result: None,
    }
}

/// `name (exe /path, comm c, pid 123, user root, 99.1 % CPU, 12.3 MB):
/// command line` (comm only when it differs from the name).
pub fn describe(p: &ProcessUsage) -> String {
    let user = if p.user.is_empty() { "?" } else { &p.user };
    let figures = format!(
        "user {user}, {:.1} % CPU, {:.1} MB",
        p.cpu_percent,
        p.memory_bytes as f64 / 1e6
    );
    format!("{}: {}", naming::describe_with(p, &figures), p.command_line)
}
