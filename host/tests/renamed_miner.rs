//! A CPU burner that hides behind `exec -a xmrig` — the user's report: host
//! health called it `sh`. A real process, sampled from `/proc` like any
//! other, must be named in the alert message as `ps` shows it (argv[0],
//! `xmrig`) together with the executable the kernel runs (the shell's real
//! file) and its comm (`sh`).
//!
//! Needs bash and sh (Debian's bash and dash).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use owlet_host::Sampler;
use owlet_host::config::{Severity, Threshold};
use owlet_host::threshold::Thresholds;
use owlet_proto::v1::{HostMetrics, ProcessUsage};

/// Kills the burner however the test ends.
struct Burner(Child);

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `sh` is on this machine, found the way bash finds it.
fn real_sh() -> PathBuf {
    let out = Command::new("bash")
        .args(["-c", "command -v sh"])
        .output()
        .expect("bash is needed by this test (apt-get install bash)");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "sh is needed by this test (apt-get install dash)"
    );
    std::fs::canonicalize(&path).unwrap()
}

fn cmdline(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

fn entry(m: &HostMetrics, pid: u32) -> Option<&ProcessUsage> {
    m.top_processes.iter().find(|p| p.pid == pid)
}

#[test]
fn a_miner_renamed_with_exec_a_is_named_with_its_real_executable() {
    let sh = real_sh();
    // The wrapper sleeps first so the sampler sees it before the exec: the
    // pid and start time stay, only the program changes.
    let burner = Burner(
        Command::new("bash")
            .args(["-c", "sleep 2; exec -a xmrig sh -c 'while :; do :; done'"])
            .spawn()
            .unwrap(),
    );
    let pid = burner.0.id();
    // Every process, so the burner is in the list whatever else this shared
    // machine is busy with.
    let mut sampler = Sampler::new(1_000_000, 256).unwrap();
    let before = sampler.sample();
    let wrapper = entry(&before, pid).expect("the wrapper is sampled");
    assert!(
        !cmdline(pid).starts_with(b"xmrig\0"),
        "the exec happened before the first sample: the test proves nothing about stale names"
    );
    assert_eq!(wrapper.comm, "bash");

    let deadline = Instant::now() + Duration::from_secs(20);
    while !cmdline(pid).starts_with(b"xmrig\0") {
        assert!(Instant::now() < deadline, "the burner never exec'd");
        std::thread::sleep(Duration::from_millis(50));
    }
    sampler.sample();
    // A window of 1 s, again while the burner got no clock tick in it (a
    // machine busy with other builds can starve it that long).
    let deadline = Instant::now() + Duration::from_secs(15);
    let (after, miner) = loop {
        std::thread::sleep(Duration::from_secs(1));
        let after = sampler.sample();
        let miner = entry(&after, pid).expect("the burner is sampled").clone();
        if miner.cpu_percent > 0.0 || Instant::now() > deadline {
            break (after, miner);
        }
    };
    assert_eq!(miner.name, "xmrig", "{miner:?}");
    assert_eq!(miner.comm, "sh", "{miner:?}");
    assert_eq!(miner.exe, sh.to_string_lossy(), "{miner:?}");
    assert!(
        miner
            .command_line
            .starts_with("xmrig -c while :; do :; done"),
        "the command line is read again after the exec: {miner:?}"
    );
    assert!(miner.cpu_percent > 0.0, "{miner:?}");

    // The alert a CPU threshold raises with this sample as evidence. Which
    // processes rank first on this shared machine (other builds run here)
    // is not the test's to decide: the evidence keeps the burner's sampled
    // entry alone.
    let mut rules = Thresholds::new(vec![Threshold {
        metric: "cpu_percent".into(),
        above: Some(0.0),
        below: None,
        hold: Duration::ZERO,
        severity: Severity::Critical,
        mount: None,
        interface: None,
    }]);
    let metrics = HostMetrics {
        top_processes: vec![miner.clone()],
        ..after
    };
    let alerts = rules.evaluate(&metrics, Instant::now());
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    let named = format!("xmrig (exe {}, comm sh, pid {pid}, ", sh.display());
    assert!(
        alert.message.contains(&format!("top processes: {named}")),
        "{}",
        alert.message
    );
    assert_eq!(alert.labels["top_process"], "xmrig");
    assert_eq!(alert.labels["top_process_exe"], sh.to_string_lossy());
    assert_eq!(alert.labels["top_process_comm"], "sh");
    assert!(
        alert.labels["top_processes"].starts_with(&named),
        "{}",
        alert.labels["top_processes"]
    );
    drop(burner);
}
