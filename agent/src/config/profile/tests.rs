//! Profiles: the compiled-in files are valid and fit their budgets;
//! precedence config > profile > default; `auto` from a fake /proc + /sys.

use std::path::{Path, PathBuf};

use super::detect::{Machine, Nic, choose, detect};
use super::*;

const BARE: &str = "[soc]\naddress = \"x:1\"\nca = \"c\"\ncert = \"c\"\nkey = \"k\"\n";

/// Deserializes `text` (plus a `[soc]` section) and applies its profile,
/// detecting under `root`.
fn load_text(text: &str, root: &Path) -> Result<Config, owlet_tomlconf::ConfigErrors> {
    owlet_tomlconf::parse(
        Path::new("owlet.toml"),
        format!("{text}\n{BARE}"),
        |c: &mut Config, src| apply(c, src, None, root),
    )
}

fn origin(config: &Config, key: &str) -> Origin {
    config.profile.origin(key).unwrap()
}

#[test]
fn every_profile_parses_and_sets_every_knob() {
    let defaults = load_text("", Path::new("/nonexistent")).unwrap();
    for name in HW_PROFILES {
        let profile = builtin(name).unwrap().unwrap();
        let config = load_text(
            &format!("[agent]\nhw_profile = \"{name}\""),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(config.agent.hw_profile, *name);
        for knob in KNOBS {
            assert_eq!(
                origin(&config, knob.key),
                Origin::Profile,
                "{name} {}",
                knob.key
            );
            assert_eq!(
                knob.value(&config),
                knob.profile_value(&profile, &defaults),
                "{name} {}",
                knob.key
            );
        }
    }
    assert!(builtin("huge").unwrap().is_none());
}

/// Memory the agent needs with `profile`'s settings, capturing on `ports`
/// interfaces: a base (runtime, buffers, probes) plus per capture worker its
/// ring and a full flow table (~160 bytes a flow measured, 256 allowed),
/// plus the spool's batch index (~150 bytes a batch).
fn estimated_memory(profile: &Profile, ports: u64) -> u64 {
    const BASE: u64 = 32 << 20;
    let c = &profile.capture;
    let per_worker = c.ring_bytes.as_u64() + c.max_flows as u64 * 256;
    BASE + ports * c.workers as u64 * per_worker + profile.spool.max_batches * 150
}

/// Capture ports each box class is sized for: the edge box's one port, two
/// mirror ports on the bigger ones.
fn capture_ports(name: &str) -> u64 {
    if name == "small" { 1 } else { 2 }
}

/// Why `profile` does not fit its own box, if it does not.
fn misfit(name: &str, profile: &Profile) -> Option<String> {
    let ports = capture_ports(name);
    let need = estimated_memory(profile, ports);
    if need > profile.memory_max.as_u64() {
        return Some(format!(
            "{name}: needs ~{} for {ports} capture port(s), memory_max is {}",
            ByteSize(need).display().iec(),
            profile.memory_max.display().iec()
        ));
    }
    let threads = ports * profile.capture.workers as u64;
    if threads > profile.hardware.cores_min as u64 {
        return Some(format!(
            "{name}: {threads} capture workers on {} cores",
            profile.hardware.cores_min
        ));
    }
    None
}

#[test]
fn every_profile_fits_its_memory_budget_and_cores() {
    for name in HW_PROFILES {
        let profile = builtin(name).unwrap().unwrap();
        assert_eq!(misfit(name, &profile), None);
    }
    // The check bites: ten times the flows does not fit the small box.
    let text = FILES[0]
        .1
        .replace("max_flows = 100000", "max_flows = 1000000");
    let greedy = parse("small", &text).unwrap();
    assert!(
        misfit("small", &greedy)
            .unwrap()
            .contains("memory_max is 128.0 MiB")
    );
}

/// `MemoryMax=` of a systemd unit text, in bytes (systemd's K/M/G/T are
/// powers of 1024).
fn unit_memory_max(unit: &str) -> Option<u64> {
    let value = unit
        .lines()
        .find_map(|l| l.trim().strip_prefix("MemoryMax="))?;
    let (digits, shift) = match value.chars().last()? {
        'K' => (&value[..value.len() - 1], 10),
        'M' => (&value[..value.len() - 1], 20),
        'G' => (&value[..value.len() - 1], 30),
        'T' => (&value[..value.len() - 1], 40),
        _ => (value, 0),
    };
    Some(digits.parse::<u64>().ok()? << shift)
}

#[test]
fn the_small_profile_is_the_systemd_units_memory_max() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/owlet.service");
    let unit = std::fs::read_to_string(&unit).unwrap();
    let profile = builtin("small").unwrap().unwrap();
    assert_eq!(
        unit_memory_max(&unit),
        Some(profile.memory_max.as_u64()),
        "systemd/owlet.service MemoryMax= and hw-profiles/small.toml memory_max must agree"
    );
    assert_eq!(
        unit_memory_max("[Service]\nMemoryMax=1536M\n"),
        Some(1536 << 20)
    );
}

#[test]
fn profiles_grow_from_small_to_large() {
    let p: Vec<Profile> = HW_PROFILES
        .iter()
        .map(|n| builtin(n).unwrap().unwrap())
        .collect();
    for pair in p.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.hardware.cores_min < b.hardware.cores_min);
        assert!(a.hardware.memory_min < b.hardware.memory_min);
        assert!(a.memory_max < b.memory_max);
        assert!(a.capture.workers <= b.capture.workers);
        assert!(a.spool.max_bytes < b.spool.max_bytes);
    }
}

#[test]
fn a_broken_profile_file_is_caught_with_its_key() {
    let small = FILES[0].1;
    // A missing setting: the profile would silently leave it at the default.
    let missing = parse("small", &small.replace("max_concurrency = 32\n", "")).unwrap_err();
    let text = missing.to_string();
    assert!(
        text.contains("hw-profiles/small.toml") && text.contains("max_concurrency"),
        "{text}"
    );
    // A misspelt key, located and with a suggestion.
    let typo = parse("small", &small.replace("max_flows =", "max_flow =")).unwrap_err();
    let text = typo.to_string();
    assert!(
        text.contains("capture.max_flow") && text.contains("did you mean `max_flows`?"),
        "{text}"
    );
    // A value of the wrong kind.
    let bad = parse("small", &small.replace("\"256MiB\"", "\"lots\"")).unwrap_err();
    assert!(bad.to_string().contains("spool.max_bytes"), "{bad}");
}

#[test]
fn a_value_in_the_file_wins_over_the_profile_which_wins_over_the_default() {
    let none = Path::new("/nonexistent");
    let defaults = load_text("", none).unwrap();
    let small = builtin("small").unwrap().unwrap();
    let config = load_text(
        "[agent]\nhw_profile = \"small\"\n[capture]\nworkers = 7\n[probe]\nmax_concurrency = 3\n",
        none,
    )
    .unwrap();
    assert_eq!(config.capture.workers, 7);
    assert_eq!(origin(&config, "capture.workers"), Origin::Config);
    assert_eq!(config.probe.max_concurrency, 3);
    assert_eq!(origin(&config, "probe.max_concurrency"), Origin::Config);
    assert_eq!(config.capture.ring_bytes, small.capture.ring_bytes);
    assert_eq!(origin(&config, "capture.ring_bytes"), Origin::Profile);
    assert_eq!(config.spool.max_bytes, small.spool.max_bytes);
    assert_ne!(config.spool.max_bytes, defaults.spool.max_bytes);

    // The same value written in the file is still the file's.
    let same = load_text(
        "[agent]\nhw_profile = \"small\"\n[spool]\nmax_bytes = \"256MiB\"\n",
        none,
    )
    .unwrap();
    assert_eq!(origin(&same, "spool.max_bytes"), Origin::Config);

    // Inline tables and dotted keys are the file's too.
    let inline = load_text(
        "capture = { max_flows = 5 }\nbatch.max_events = 9\n[agent]\nhw_profile = \"large\"\n",
        none,
    )
    .unwrap();
    assert_eq!(inline.capture.max_flows, 5);
    assert_eq!(origin(&inline, "capture.max_flows"), Origin::Config);
    assert_eq!(inline.batch.max_events, 9);
    assert_eq!(origin(&inline, "batch.max_events"), Origin::Config);
    assert_eq!(origin(&inline, "capture.workers"), Origin::Profile);

    // No profile: defaults, said to be defaults.
    for knob in KNOBS {
        assert_eq!(origin(&defaults, knob.key), Origin::Default, "{}", knob.key);
    }
    assert_eq!(defaults.capture.workers, 2);
    assert_eq!(defaults.capture.ring_bytes, ByteSize::mib(32));
}

#[test]
fn an_unknown_profile_names_the_known_ones_and_the_nearest() {
    let none = Path::new("/nonexistent");
    for (name, nearest) in [("smal", "small"), ("atuo", "auto"), ("Large", "large")] {
        let errors = load_text(&format!("[agent]\nhw_profile = \"{name}\""), none).unwrap_err();
        let e = &errors.0[0];
        assert_eq!((e.line, e.key.as_str()), (2, "agent.hw_profile"));
        assert!(
            e.message.contains(&format!("did you mean `{nearest}`?"))
                && e.message.contains("small, medium, large"),
            "{e}"
        );
    }
}

/// A fake machine root: `cpus` (kernel list), MemTotal in kB, and NICs as
/// (name, physical, speed file contents).
fn fake_root(
    cpus: Option<&str>,
    mem_kb: Option<u64>,
    nics: &[(&str, bool, Option<&str>)],
) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dir = |p: &str| -> PathBuf {
        let d = root.path().join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    if let Some(cpus) = cpus {
        std::fs::write(dir("sys/devices/system/cpu").join("online"), cpus).unwrap();
    }
    if let Some(kb) = mem_kb {
        std::fs::write(
            dir("proc").join("meminfo"),
            format!("MemTotal:       {kb} kB\nMemFree:         1000 kB\n"),
        )
        .unwrap();
    }
    for (name, physical, speed) in nics {
        let nic = dir(&format!("sys/class/net/{name}"));
        if *physical {
            std::fs::create_dir_all(nic.join("device")).unwrap();
        }
        if let Some(speed) = speed {
            std::fs::write(nic.join("speed"), format!("{speed}\n")).unwrap();
        }
    }
    root
}

const GIB_KB: u64 = 1 << 20;

#[test]
fn detection_reads_cores_memory_and_physical_nics() {
    let root = fake_root(
        Some("0-3,8,10-11\n"),
        Some(16 * GIB_KB),
        &[
            ("lo", false, Some("10000")),
            ("eth1", true, Some("-1")),
            ("eth0", true, Some("1000")),
            ("veth9", false, None),
            ("eth2", true, None),
        ],
    );
    let machine = detect(root.path());
    assert_eq!(machine.cores, Some(7));
    assert_eq!(machine.memory_bytes, Some(16 << 30));
    let nics: Vec<(&str, Option<u64>)> = machine
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.speed_mbps))
        .collect();
    assert_eq!(nics, [("eth0", Some(1000)), ("eth1", None), ("eth2", None)]);
    assert_eq!(machine.nic_mbps(), Some(1000));
}

#[test]
fn detection_survives_missing_and_garbled_files() {
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(detect(empty.path()), Machine::default());
    let root = fake_root(Some("banana"), None, &[("eth0", true, Some("fast"))]);
    std::fs::create_dir_all(root.path().join("proc")).unwrap();
    std::fs::write(
        root.path().join("proc/cpuinfo"),
        "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n",
    )
    .unwrap();
    std::fs::write(root.path().join("proc/meminfo"), "MemTotal: lots\n").unwrap();
    let machine = detect(root.path());
    assert_eq!(machine.cores, Some(2), "falls back to /proc/cpuinfo");
    assert_eq!(machine.memory_bytes, None);
    assert_eq!(machine.nics[0].speed_mbps, None);
    // Nothing known: the smallest, saying why.
    let choice = choose(&detect(empty.path()));
    assert_eq!(choice.name, "small");
    assert!(
        choice.reason.contains("below even the smallest"),
        "{}",
        choice.reason
    );
    assert!(choice.reason.contains("cannot read"), "{}", choice.reason);
}

fn machine(cores: usize, gib: u64, speeds: &[Option<u64>]) -> Machine {
    Machine {
        cores: Some(cores),
        // What the kernel reports: a little under the installed RAM.
        memory_bytes: Some((gib << 30) / 100 * 97),
        nics: speeds
            .iter()
            .enumerate()
            .map(|(i, s)| Nic {
                name: format!("eth{i}"),
                speed_mbps: *s,
            })
            .collect(),
    }
}

#[test]
fn auto_picks_the_largest_profile_the_machine_meets() {
    let g = Some(1000);
    let tg = Some(10_000);
    for (m, want) in [
        (machine(2, 2, &[g]), "small"),
        (machine(2, 4, &[g]), "small"),
        (machine(8, 16, &[g, g, g, g]), "medium"),
        (machine(32, 64, &[tg, tg, g]), "large"),
        // Cores, memory and NICs must all be there.
        (machine(32, 64, &[g, g, g, g]), "medium"),
        (machine(32, 8, &[tg, tg]), "small"),
        (machine(4, 64, &[tg, tg]), "small"),
        // No link speed known (a VM, links down): cores and memory decide.
        (machine(8, 16, &[None, None]), "medium"),
        (machine(1, 1, &[]), "small"),
    ] {
        let choice = choose(&m);
        assert_eq!(choice.name, want, "{m:?}: {}", choice.reason);
    }
    let limited = choose(&machine(32, 64, &[g, g, g, g]));
    assert!(
        limited
            .reason
            .contains("not large: needs 10000 Mb/s of NIC links, found 4000 Mb/s"),
        "{}",
        limited.reason
    );
    let vm = choose(&machine(8, 16, &[None]));
    assert!(
        vm.reason.contains("NIC capacity not checked"),
        "{}",
        vm.reason
    );
}

#[test]
fn auto_in_the_config_applies_and_reports_the_chosen_profile() {
    let root = fake_root(
        Some("0-7"),
        Some(16 * GIB_KB - 300_000),
        &[("eno1", true, Some("1000")), ("eno2", true, Some("1000"))],
    );
    let config = load_text("[agent]\nhw_profile = \"auto\"", root.path()).unwrap();
    let medium = builtin("medium").unwrap().unwrap();
    assert_eq!(config.agent.hw_profile, "medium");
    assert_eq!(config.profile.requested, "auto");
    assert_eq!(config.profile.name, Some("medium"));
    assert_eq!(config.capture.workers, medium.capture.workers);
    let choice = config.profile.choice.as_ref().unwrap();
    assert_eq!(choice.machine.cores, Some(8));
    assert!(
        choice.reason.starts_with("medium: the largest"),
        "{}",
        choice.reason
    );
}
