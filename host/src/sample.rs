//! One host sample as a `HostMetrics` message: sysinfo for CPU, memory,
//! load, disks and processes; `/proc` and `/sys` (see [`crate::procfs`])
//! for disk I/O, interface counters with drops and operational state.
//!
//! Guarantees:
//! * rates cover the real time elapsed since the previous sample (measured
//!   with `Instant`, not the configured interval) and never go negative;
//! * the first sample has no rates (0) — there is nothing to compare with;
//! * a top process is named as `ps` shows it, with the executable the
//!   kernel runs and its comm, read fresh at each sample ([`naming`]);
//! * only what the message needs is refreshed: processes without threads,
//!   environment, cwd or disk usage; users are read once and again only when
//!   an unknown uid shows up;
//! * a part that cannot be read is left empty; sampling never fails as a
//!   whole and never panics on what the kernel returns;
//! * a process's command line leaves this module with its secrets replaced
//!   by `[redacted]` ([`command_line`]: `mysql -pX`, `--password=x`,
//!   `token=x`, URLs with credentials, keys and hashes — the rules of
//!   `owlet_redact::redact_args`), redacted *before* it is cut to
//!   `command_line_max` characters, so a cut never exposes part of a secret.
//!   Not covered: secrets that no rule there recognises (see owlet-redact).
//!
//! It blocks (it reads `/proc`): call it off the async workers.

use std::time::Instant;

use owlet_proto::v1::{DiskIo, DiskUsage, HostMetrics, NetworkCounters, ProcessUsage};
use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Pid, ProcessRefreshKind,
    ProcessesToUpdate, System, UpdateKind, Users,
};

use crate::naming::{self, PROC, truncate};
use crate::procfs::{self, DiskCounters, NetCounters, Previous, rate};

/// File systems that say nothing about the host's storage.
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "nsfs",
    "ramfs",
    "autofs",
    "fuse.lxcfs",
];

/// Keeps what a sample needs from the previous one.
pub struct Sampler {
    system: System,
    disks: Disks,
    users: Users,
    own_pid: Option<Pid>,
    top: usize,
    command_line_max: usize,
    last: Option<Instant>,
    disk_io: Previous<DiskCounters>,
    nets: Previous<NetCounters>,
}

/// sysinfo cannot sample this platform.
#[derive(Debug, thiserror::Error)]
#[error("host sampling is not supported on this system: {0}")]
pub struct Unsupported(pub sysinfo::Error);

impl Sampler {
    /// A sampler whose top lists hold `top` processes with command lines cut
    /// to `command_line_max` characters.
    /// Fails only where sysinfo does not support the platform.
    pub fn new(top: usize, command_line_max: usize) -> Result<Self, Unsupported> {
        Ok(Self {
            system: System::new().map_err(Unsupported)?,
            disks: Disks::new().map_err(Unsupported)?,
            users: Users::new_with_refreshed_list().map_err(Unsupported)?,
            own_pid: sysinfo::get_current_pid().ok(),
            top,
            command_line_max,
            last: None,
            disk_io: Previous::default(),
            nets: Previous::default(),
        })
    }

    /// Changes the top-list settings (a reload).
    pub fn set_limits(&mut self, top: usize, command_line_max: usize) {
        self.top = top;
        self.command_line_max = command_line_max;
    }

    /// Takes one sample now.
    pub fn sample(&mut self) -> HostMetrics {
        let now = Instant::now();
        let elapsed = self.last.map(|last| now.duration_since(last).as_secs_f64());
        self.last = Some(now);
        let seconds = elapsed.unwrap_or(0.0);

        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_user(UpdateKind::OnlyIfNotSet)
                // Always: a process that execs keeps its pid and start time,
                // and `bash -c 'exec -a xmrig …'` read once would keep the
                // wrapper's command line for the miner's whole life.
                .with_cmd(UpdateKind::Always)
                .without_tasks(),
        );
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());

        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });
        let (agent_cpu_percent, agent_rss_bytes) = self
            .own_pid
            .and_then(|pid| self.system.process(pid))
            .map_or((0.0, 0), |p| (f64::from(p.cpu_usage()), p.memory()));
        let (top_cpu, top_memory) = self.top_processes();
        let boot = System::boot_time().unwrap_or(0);

        let mut metrics = HostMetrics {
            cpu_percent: if elapsed.is_some() {
                f64::from(self.system.global_cpu_usage())
            } else {
                0.0
            },
            cpu_core_percent: self
                .system
                .cpus()
                .iter()
                .map(|c| {
                    if elapsed.is_some() {
                        f64::from(c.usage())
                    } else {
                        0.0
                    }
                })
                .collect(),
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            memory_available_bytes: self.system.available_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
            uptime_seconds: System::uptime().unwrap_or(0),
            process_count: u32::try_from(self.system.processes().len()).unwrap_or(u32::MAX),
            disks: self.disk_usage(),
            networks: self.networks(seconds),
            top_processes: top_cpu,
            interval_seconds: seconds,
            top_processes_by_memory: top_memory,
            boot_time: (boot > 0).then(|| {
                owlet_proto::timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(boot))
            }),
            disk_io: self.disk_io(seconds),
            agent_cpu_percent,
            agent_rss_bytes,
            learning_percent: 0.0,
        };
        if elapsed.is_none() {
            metrics
                .top_processes
                .iter_mut()
                .for_each(|p| p.cpu_percent = 0.0);
        }
        metrics
    }

    fn disk_usage(&self) -> Vec<DiskUsage> {
        let mut seen = std::collections::HashSet::new();
        self.disks
            .iter()
            .filter(|d| {
                let fs = d.file_system().to_string_lossy();
                !PSEUDO_FS.contains(&fs.as_ref()) && d.total_space() > 0
            })
            // Bind mounts show the same mount point once.
            .filter(|d| seen.insert(d.mount_point().to_path_buf()))
            .map(|d| DiskUsage {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            })
            .collect()
    }

    fn disk_io(&mut self, seconds: f64) -> Vec<DiskIo> {
        let parsed =
            procfs::parse_diskstats(&procfs::read("/proc/diskstats"), &procfs::is_whole_disk);
        let out = parsed
            .iter()
            .filter_map(|(name, now)| {
                let before = self.disk_io.swap(name, 0, *now)?;
                Some(DiskIo {
                    device: name.clone(),
                    read_bytes_per_second: rate(before.read_sectors, now.read_sectors, seconds)
                        * 512.0,
                    write_bytes_per_second: rate(before.write_sectors, now.write_sectors, seconds)
                        * 512.0,
                    reads_per_second: rate(before.reads, now.reads, seconds),
                    writes_per_second: rate(before.writes, now.writes, seconds),
                    busy_percent: (rate(before.busy_ms, now.busy_ms, seconds) / 10.0).min(100.0),
                })
            })
            .collect();
        self.disk_io.retain(&|n| parsed.iter().any(|(p, _)| p == n));
        out
    }

    fn networks(&mut self, seconds: f64) -> Vec<NetworkCounters> {
        let parsed = procfs::parse_net_dev(&procfs::read("/proc/net/dev"));
        let out = parsed
            .iter()
            .map(|(name, now)| {
                let (oper_state, index) = procfs::interface_state(name);
                // New or re-created: rates start at the next sample.
                let before = self.nets.swap(name, index, *now).unwrap_or(*now);
                NetworkCounters {
                    interface: name.clone(),
                    rx_bytes: now.rx_bytes,
                    tx_bytes: now.tx_bytes,
                    rx_packets: now.rx_packets,
                    tx_packets: now.tx_packets,
                    rx_errors: now.rx_errors,
                    tx_errors: now.tx_errors,
                    rx_bytes_per_second: rate(before.rx_bytes, now.rx_bytes, seconds),
                    tx_bytes_per_second: rate(before.tx_bytes, now.tx_bytes, seconds),
                    rx_packets_per_second: rate(before.rx_packets, now.rx_packets, seconds),
                    tx_packets_per_second: rate(before.tx_packets, now.tx_packets, seconds),
                    rx_errors_per_second: rate(before.rx_errors, now.rx_errors, seconds),
                    tx_errors_per_second: rate(before.tx_errors, now.tx_errors, seconds),
                    rx_dropped: now.rx_dropped,
                    tx_dropped: now.tx_dropped,
                    rx_dropped_per_second: rate(before.rx_dropped, now.rx_dropped, seconds),
                    tx_dropped_per_second: rate(before.tx_dropped, now.tx_dropped, seconds),
                    oper_state,
                }
            })
            .collect();
        self.nets.retain(&|n| parsed.iter().any(|(p, _)| p == n));
        out
    }

    /// Top processes by CPU and by resident memory.
    fn top_processes(&mut self) -> (Vec<ProcessUsage>, Vec<ProcessUsage>) {
        let mut all: Vec<&sysinfo::Process> = self
            .system
            .processes()
            .values()
            .filter(|p| p.thread_kind().is_none())
            .collect();
        all.sort_by(|a, b| b.cpu_usage().total_cmp(&a.cpu_usage()));
        let by_cpu: Vec<Pid> = all.iter().take(self.top).map(|p| p.pid()).collect();
        all.sort_by_key(|p| std::cmp::Reverse(p.memory()));
        let by_memory: Vec<Pid> = all.iter().take(self.top).map(|p| p.pid()).collect();
        let unknown_user = by_cpu
            .iter()
            .chain(&by_memory)
            .filter_map(|pid| self.system.process(*pid)?.user_id())
            .any(|uid| self.users.get_user_by_id(uid).is_none());
        if unknown_user {
            // A user added since start; cheap enough at this rate (top N only).
            self.users.refresh();
        }
        let usage = |pid: &Pid| self.system.process(*pid).map(|p| self.usage(p));
        (
            by_cpu.iter().filter_map(usage).collect(),
            by_memory.iter().filter_map(usage).collect(),
        )
    }

    fn usage(&self, p: &sysinfo::Process) -> ProcessUsage {
        let names = naming::identify(PROC, p.pid().as_u32(), &p.name().to_string_lossy());
        let user = p
            .user_id()
            .and_then(|uid| self.users.get_user_by_id(uid))
            .map(|u| u.name().to_string())
            .unwrap_or_default();
        let args: Vec<_> = p.cmd().iter().map(|a| a.to_string_lossy()).collect();
        ProcessUsage {
            pid: p.pid().as_u32(),
            name: names.name,
            comm: names.comm,
            exe: names.exe,
            user,
            cpu_percent: f64::from(p.cpu_usage()),
            memory_bytes: p.memory(),
            command_line: command_line(&args, self.command_line_max),
        }
    }
}

/// The command line shown for a process: its arguments with secrets
/// redacted, joined by blanks, then cut to at most `max` characters.
/// Redaction works on the arguments (exact boundaries: `--password` takes
/// the whole next argument, blanks and all) and comes before the cut.
pub fn command_line<S: AsRef<str>>(args: &[S], max: usize) -> String {
    truncate(&owlet_redact::redact_args(args).join(" "), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::truncate;

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn command_line_is_redacted_before_it_is_cut() {
        let args = ["/usr/bin/mysql", "-uroot", "-pS3cretValue99", "appdb"];
        assert_eq!(
            command_line(&args, 100),
            "/usr/bin/mysql -uroot -p[redacted] appdb"
        );
        for max in 1..60 {
            let shown = command_line(&args, max);
            assert!(shown.chars().count() <= max, "{max}: {shown}");
            // Cut first, the line would end in "-pS3c…" for some max.
            assert!(!shown.contains("S3c"), "{max}: {shown}");
        }
    }

    #[test]
    fn command_line_secrets_of_common_programs() {
        for (args, secret) in [
            (
                &["sshpass", "-p", "Hunter2Hunter2", "ssh", "h"][..],
                "Hunter2Hunter2",
            ),
            (&["redis-cli", "-a", "R3disPassw0rd"][..], "R3disPassw0rd"),
            (&["smbclient", "-U", "bob%Smb5ecret!"][..], "Smb5ecret!"),
            (
                &["curl", "-u", "bob:Curl5ecret", "https://h/"][..],
                "Curl5ecret",
            ),
            (
                &["app", "--password", "two words here"][..],
                "two words here",
            ),
            (&["app", "--token=Tok3nValue99"][..], "Tok3nValue99"),
            (
                &["worker", "DATABASE_URL=postgres://u:Pg5ecret@db/x"][..],
                "Pg5ecret",
            ),
        ] {
            let shown = command_line(args, 4096);
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        let plain = ["nginx", "-g", "daemon off;"];
        assert_eq!(command_line(&plain, 4096), "nginx -g daemon off;");
    }

    #[test]
    fn a_sample_reads_this_host() {
        let mut s = Sampler::new(3, 64).unwrap();
        let first = s.sample();
        assert!(first.memory_total_bytes > 0);
        assert!(first.process_count > 0);
        assert!(first.boot_time.is_some());
        assert!(first.networks.iter().any(|n| n.interface == "lo"));
        let second = s.sample();
        assert!(second.interval_seconds > 0.0);
        assert!(second.top_processes.len() <= 3);
        assert!(
            second
                .top_processes
                .iter()
                .all(|p| p.command_line.chars().count() <= 64)
        );
        assert!(second.agent_rss_bytes > 0);
    }
}
