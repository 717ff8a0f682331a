//! How a process is named in host evidence: the way `ps` shows it, plus
//! what the kernel knows it really runs.
//!
//! A process has three names, and a miner that hides lies in at least one:
//! * **argv\[0\]**, the first element of `/proc/PID/cmdline` — what
//!   `ps -o args` (and `ps aux`) shows first. `exec -a xmrig sh` sets it to
//!   `xmrig`; a process may also overwrite it later (setproctitle);
//! * **comm**, `/proc/PID/comm` — what `ps -o comm` and `top` show: the
//!   kernel's copy of the executed file's base name at `execve` (15 bytes),
//!   changeable only by the process itself (`prctl(PR_SET_NAME)`);
//! * **exe**, the target of `/proc/PID/exe` — the executable file really
//!   mapped, with ` (deleted)` when it was removed after start (sysinfo
//!   strips that suffix; this module keeps it, it is evidence).
//!
//! Guarantees:
//! * [`name`] is argv\[0\] as `ps -o args` starts (a kernel thread or a
//!   zombie, whose command line is empty, is `[comm]`, as `ps` shows it);
//! * [`describe`] always shows the name, the exe (or `exe unknown`) and the
//!   pid, and the comm whenever it is not argv\[0\]'s base name — so
//!   `exec -a xmrig sh -c …` reads `xmrig (exe /usr/bin/dash, comm sh, pid
//!   1234)`;
//! * the name is redacted as command lines are
//!   (`owlet_redact::redact_command_line`: argv\[0\] is part of the
//!   command line, and a process may write any title there); the exe path
//!   and the comm are shown as the kernel gives them;
//! * every text from a process is printable: control characters (a newline
//!   to forge a second log line, terminal escapes) become `?`, and names are
//!   cut to [`NAME_MAX`] characters;
//! * all three are read from `/proc` when the sample is taken
//!   ([`identify`]), never from sysinfo's copies, which it reads once per
//!   process start time: a process that execs (`bash -c 'exec -a xmrig
//!   …'`) keeps its pid and start time, and sysinfo would keep calling it
//!   `bash`;
//! * reading never fails as a whole and never panics: what cannot be read
//!   is empty. `/proc/PID/exe` of another user's process needs
//!   CAP_SYS_PTRACE (the kernel's ptrace read check); without it `exe` is
//!   empty and `comm` is what names the executed file.
//!
//! It never reads a process's environment or memory.

use std::path::Path;

use owlet_proto::v1::ProcessUsage;

/// Where processes are read.
pub const PROC: &str = "/proc";
/// Longest name or exe path kept, in characters.
pub const NAME_MAX: usize = 128;
/// What the kernel keeps of comm (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// argv\[0\] of `cmdline` (the raw bytes of `/proc/PID/cmdline`), or
/// `[comm]` when the command line is empty. A title written over the
/// argument area without NULs (`postgres: checkpointer`) is one argv\[0\].
pub fn name(cmdline: &[u8], comm: &str) -> String {
    if cmdline.iter().all(|&b| b == 0) {
        return format!("[{}]", printable(comm, COMM_LEN));
    }
    let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let text = String::from_utf8_lossy(first);
    let text = text.trim_end();
    if text.is_empty() {
        // `exec -a ''`: say so rather than show the next argument as the name.
        return "\"\"".into();
    }
    // argv[0] is part of the command line, and redacted like it (before
    // the cut): a title such as `app --token=…` shows no secret here either.
    printable(&owlet_redact::redact_command_line(text), NAME_MAX)
}

/// The name of process `pid` as `ps` shows it, read now from
/// `<proc>/PID/cmdline` (not sysinfo's copy, which is read once per
/// process and goes stale when the process execs); `comm` for an empty or
/// unreadable command line.
pub fn read_name(proc: impl AsRef<Path>, pid: u32, comm: &str) -> String {
    let cmdline =
        std::fs::read(proc.as_ref().join(pid.to_string()).join("cmdline")).unwrap_or_default();
    name(&cmdline, comm)
}

/// The target of `<proc>/PID/exe`, ` (deleted)` kept; empty when it cannot
/// be read (another user's process without CAP_SYS_PTRACE, a kernel thread,
/// a process that just ended).
pub fn read_exe(proc: impl AsRef<Path>, pid: u32) -> String {
    std::fs::read_link(proc.as_ref().join(pid.to_string()).join("exe"))
        .map(|p| printable(&p.to_string_lossy(), NAME_MAX))
        .unwrap_or_default()
}

/// The comm of process `pid`, read now from `<proc>/PID/comm`; `fallback`
/// when it cannot be read. (sysinfo 0.40 reads a process's comm once per
/// start time, so after an `exec` it keeps the old program's.)
pub fn read_comm(proc: impl AsRef<Path>, pid: u32, fallback: &str) -> String {
    let comm = std::fs::read(proc.as_ref().join(pid.to_string()).join("comm"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\n')
                .to_string()
        })
        .unwrap_or_else(|_| fallback.to_string());
    printable(&comm, NAME_MAX)
}

/// The three names of process `pid`, read now: (name, comm, exe).
/// `comm_fallback` stands in for an unreadable comm.
pub fn identify(proc: impl AsRef<Path>, pid: u32, comm_fallback: &str) -> Names {
    let proc = proc.as_ref();
    let comm = read_comm(proc, pid, comm_fallback);
    Names {
        name: read_name(proc, pid, &comm),
        exe: read_exe(proc, pid),
        comm,
    }
}

/// What [`identify`] found (the `ProcessUsage` fields of the same names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub name: String,
    pub comm: String,
    pub exe: String,
}

/// `text` with control characters replaced by `?`, cut to `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    truncate(&clean, max)
}

/// Whether `comm` says nothing that `name` does not: comm is the base name
/// of what was executed, cut to 15 bytes, so `/usr/sbin/nginx` and `nginx`,
/// `-bash` and `bash`, `postgres: checkpointer` and `postgres` agree.
fn comm_is_redundant(name: &str, comm: &str) -> bool {
    if comm.is_empty() || name == format!("[{comm}]") {
        return true;
    }
    let first = name.split([' ', ':']).next().unwrap_or(name);
    let base = first.rsplit('/').next().unwrap_or(first);
    let base = base.strip_prefix('-').unwrap_or(base);
    let cut: String = base.chars().take(COMM_LEN).collect();
    let comm_cut: String = comm.chars().take(COMM_LEN).collect();
    !cut.is_empty() && cut == comm_cut
}

/// `xmrig (exe /usr/bin/dash, comm sh, pid 1234)`: the name as `ps` shows
/// it, the executable the kernel runs, the comm when it differs from the
/// name, and the pid.
pub fn describe(p: &ProcessUsage) -> String {
    describe_with(p, "")
}

/// [`describe`] with `more` (figures) inside the parentheses:
/// `xmrig (exe /usr/bin/dash, comm sh, pid 1234, 99.0 % CPU)`.
pub fn describe_with(p: &ProcessUsage, more: &str) -> String {
    let more = if more.is_empty() {
        String::new()
    } else {
        format!(", {more}")
    };
    let exe = if p.exe.is_empty() {
        "unknown"
    } else {
        p.exe.as_str()
    };
    let comm = if comm_is_redundant(&p.name, &p.comm) {
        String::new()
    } else {
        format!(", comm {}", p.comm)
    };
    format!("{} (exe {exe}{comm}, pid {}{more})", p.name, p.pid)
}

/// `text` cut to at most `max` characters, ending in "…" when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(name: &str, comm: &str, exe: &str) -> ProcessUsage {
        ProcessUsage {
            pid: 7,
            name: name.into(),
            comm: comm.into(),
            exe: exe.into(),
            ..Default::default()
        }
    }

    #[test]
    fn argv0_is_the_name() {
        assert_eq!(name(b"xmrig\0-c\0while :; do :; done\0", "sh"), "xmrig");
        assert_eq!(name(b"/usr/sbin/nginx\0-g\0", "nginx"), "/usr/sbin/nginx");
        assert_eq!(
            name(b"postgres: checkpointer   ", "postgres"),
            "postgres: checkpointer"
        );
        assert_eq!(name(b"", "kworker/0:1"), "[kworker/0:1]");
        assert_eq!(name(b"\0--donate-level\0", "xmrig"), "\"\"");
        assert_eq!(name(b"evil\nline\x1b[2J\0", "sh"), "evil?line?[2J");
        assert_eq!(name(&[b'a'; 500], "a").chars().count(), NAME_MAX);
        assert_eq!(name(b"\xff\xfeminer\0", "x"), "\u{fffd}\u{fffd}miner");
        // A title written over argv[0] is redacted like a command line.
        assert_eq!(
            name(b"worker --token=Tok3nValue99 x\0", "worker"),
            "worker --token=[redacted] x"
        );
    }

    #[test]
    fn describe_shows_exe_and_a_comm_that_differs() {
        assert_eq!(
            describe(&usage("xmrig", "sh", "/usr/bin/dash")),
            "xmrig (exe /usr/bin/dash, comm sh, pid 7)"
        );
        assert_eq!(
            describe(&usage("/usr/sbin/nginx", "nginx", "/usr/sbin/nginx")),
            "/usr/sbin/nginx (exe /usr/sbin/nginx, pid 7)"
        );
        assert_eq!(
            describe(&usage("-bash", "bash", "")),
            "-bash (exe unknown, pid 7)"
        );
        assert_eq!(
            describe(&usage(
                "postgres: checkpointer",
                "postgres",
                "/usr/lib/postgresql/bin/postgres"
            )),
            "postgres: checkpointer (exe /usr/lib/postgresql/bin/postgres, pid 7)"
        );
        assert_eq!(
            describe(&usage("[kthreadd]", "kthreadd", "")),
            "[kthreadd] (exe unknown, pid 7)"
        );
        // comm keeps 15 bytes of a longer base name.
        assert_eq!(
            describe(&usage(
                "/opt/containerd-shim-runc-v2",
                "containerd-shim",
                ""
            )),
            "/opt/containerd-shim-runc-v2 (exe unknown, pid 7)"
        );
        // A kernel-thread look-alike set with `exec -a`.
        assert_eq!(
            describe(&usage("[kworker/0:1]", "xmrig", "/tmp/.x/xmrig (deleted)")),
            "[kworker/0:1] (exe /tmp/.x/xmrig (deleted), comm xmrig, pid 7)"
        );
    }

    #[test]
    fn this_process_reads_as_itself() {
        let me = std::process::id();
        let proc = PROC;
        let exe = read_exe(proc, me);
        assert_eq!(exe, std::env::current_exe().unwrap().to_string_lossy());
        let argv0 = std::env::args().next().unwrap();
        assert_eq!(read_name(proc, me, "x"), argv0);
        assert_eq!(read_exe(proc, u32::MAX), "");
        assert_eq!(read_name(proc, u32::MAX, "gone"), "[gone]");
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let names = identify(proc, me, "x");
        assert_eq!(names.comm, comm.trim_end());
        assert_eq!((names.name, names.exe), (argv0, exe));
        assert_eq!(identify(proc, u32::MAX, "gone").comm, "gone");
    }
}
