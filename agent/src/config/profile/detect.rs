//! What this machine is (cores, memory, physical NICs and their link
//! speeds) and which hardware profile fits it (`hw_profile = "auto"`).
//!
//! Everything is read under a root directory (`/` on a real machine, a fake
//! tree in tests): `sys/devices/system/cpu/online` (else the `processor`
//! lines of `proc/cpuinfo`), `MemTotal` of `proc/meminfo`, and
//! `sys/class/net/*`: an interface with a `device` link is physical; its
//! `speed` (Mb/s) counts when the kernel reports one (a link that is down,
//! or a virtual NIC, reports none).
//!
//! Guarantees: detection never fails, whatever the files say; what it cannot
//! read is `None` and the choice says so. A requirement that cannot be
//! checked because nothing was found fails (cores, memory), except the NIC
//! capacity, which is not checked when no link speed is known (VMs, links
//! down): the choice is then made by cores and memory, and says so.

use std::path::Path;

use bytesize::ByteSize;
use serde::Serialize;

use super::{HW_PROFILES, Minimums};

/// What detection found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Online CPU cores.
    pub cores: Option<usize>,
    /// Memory the kernel reports (`MemTotal`), in bytes.
    pub memory_bytes: Option<u64>,
    /// Physical network interfaces, by name.
    pub nics: Vec<Nic>,
}

/// One physical network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nic {
    pub name: String,
    /// Link speed in Mb/s, when the kernel reports one.
    pub speed_mbps: Option<u64>,
}

impl Machine {
    /// Sum of the known link speeds, or `None` when no speed is known.
    pub fn nic_mbps(&self) -> Option<u64> {
        let speeds: Vec<u64> = self.nics.iter().filter_map(|n| n.speed_mbps).collect();
        (!speeds.is_empty()).then(|| speeds.iter().sum())
    }
}

/// Reads the machine under `root`.
pub fn detect(root: &Path) -> Machine {
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    let cores = read("sys/devices/system/cpu/online")
        .and_then(|list| count_cpu_list(&list))
        .or_else(|| {
            let n = read("proc/cpuinfo")?
                .lines()
                .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
                .count();
            (n > 0).then_some(n)
        });
    let memory_bytes = read("proc/meminfo").and_then(|text| mem_total(&text));
    let mut nics: Vec<Nic> = std::fs::read_dir(root.join("sys/class/net"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("device").exists())
        .map(|entry| Nic {
            name: entry.file_name().to_string_lossy().into_owned(),
            speed_mbps: std::fs::read_to_string(entry.path().join("speed"))
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0),
        })
        .collect();
    nics.sort_by(|a, b| a.name.cmp(&b.name));
    Machine {
        cores,
        memory_bytes,
        nics,
    }
}

/// Number of CPUs in a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().ok()?, b.trim().parse().ok()?),
            None => {
                let cpu = part.trim().parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        n = n.checked_add(last.checked_sub(first)?.checked_add(1)?)?;
    }
    (n > 0).then_some(n)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// How one profile compares with the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fit {
    pub profile: &'static str,
    pub requires: Minimums,
    /// What the machine lacks, one sentence each; empty = it fits.
    pub unmet: Vec<String>,
}

/// The profile `auto` picks, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub name: &'static str,
    pub machine: Machine,
    /// Every profile, smallest first.
    pub fits: Vec<Fit>,
    /// Why this one, in a sentence or two.
    pub reason: String,
}

/// Picks the largest built-in profile whose minimums `machine` meets, else
/// the smallest.
pub fn choose(machine: &Machine) -> Choice {
    let profiles: Vec<(&'static str, Minimums)> = HW_PROFILES
        .iter()
        .filter_map(|name| match super::builtin(name) {
            Ok(Some(p)) => Some((*name, p.hardware)),
            // A broken built-in profile cannot be chosen (a test keeps
            // them all valid).
            _ => None,
        })
        .collect();
    choose_among(machine, &profiles)
}

/// [`choose`] among `profiles` (smallest first).
pub fn choose_among(machine: &Machine, profiles: &[(&'static str, Minimums)]) -> Choice {
    let fits: Vec<Fit> = profiles
        .iter()
        .map(|(name, min)| Fit {
            profile: name,
            requires: min.clone(),
            unmet: unmet(machine, min),
        })
        .collect();
    let fitting = fits.iter().rposition(|f| f.unmet.is_empty());
    let smallest = HW_PROFILES[0];
    let (name, mut reason) = match fitting {
        Some(i) => {
            let name = fits[i].profile;
            let mut reason =
                format!("{name}: the largest profile whose minimums this machine meets");
            if let Some(next) = fits.get(i + 1) {
                reason.push_str(&format!(
                    "; not {}: {}",
                    next.profile,
                    next.unmet.join(" and ")
                ));
            }
            (name, reason)
        }
        None => {
            let name = fits.first().map_or(smallest, |f| f.profile);
            let why = fits
                .first()
                .map(|f| f.unmet.join(" and "))
                .unwrap_or_default();
            (
                name,
                format!(
                    "{name}: this machine is below even the smallest profile ({why}); {name} asks the least of it"
                ),
            )
        }
    };
    if machine.nic_mbps().is_none() {
        reason.push_str(
            "; NIC capacity not checked: no physical interface reports a link speed (virtual NICs, links down)",
        );
    }
    Choice {
        name,
        machine: machine.clone(),
        fits,
        reason,
    }
}

fn unmet(machine: &Machine, min: &Minimums) -> Vec<String> {
    let mut unmet = Vec::new();
    match machine.cores {
        Some(cores) if cores >= min.cores_min => {}
        Some(cores) => unmet.push(format!("needs {} cores, found {cores}", min.cores_min)),
        None => unmet.push(format!(
            "needs {} cores, found none (cannot read the CPU list)",
            min.cores_min
        )),
    }
    match machine.memory_bytes {
        Some(bytes) if bytes >= min.memory_min.as_u64() => {}
        Some(bytes) => unmet.push(format!(
            "needs {} of memory, found {}",
            min.memory_min.display().iec(),
            ByteSize(bytes).display().iec()
        )),
        None => unmet.push(format!(
            "needs {} of memory, found none (cannot read MemTotal)",
            min.memory_min.display().iec()
        )),
    }
    if let Some(mbps) = machine.nic_mbps()
        && mbps < min.nic_mbps_min
    {
        unmet.push(format!(
            "needs {} Mb/s of NIC links, found {mbps} Mb/s",
            min.nic_mbps_min
        ));
    }
    unmet
}
