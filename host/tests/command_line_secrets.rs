//! Secrets on command lines never reach alert evidence: a real process
//! sampled from `/proc` like any other, and argument vectors of the
//! programs that take passwords on their command line. The sample and the
//! alert built from it hold the command lines with the secrets replaced.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use owlet_host::Sampler;
use owlet_host::evidence::{Draft, Rank, alert};
use owlet_host::sample::command_line;
use owlet_proto::v1::{HostMetrics, ProcessUsage, Severity, State};

/// Kills the child when the test ends, passed or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The message and labels of a CPU alert and of a memory alert whose
/// evidence is `top`, as one text.
fn evidence_text(top: Vec<ProcessUsage>) -> String {
    let metrics = HostMetrics {
        top_processes: top.clone(),
        top_processes_by_memory: top.into_iter().rev().collect(),
        ..Default::default()
    };
    [Rank::Cpu, Rank::Memory]
        .into_iter()
        .map(|rank| {
            let a = alert(
                Draft {
                    name: "cpu".into(),
                    subject: "cpu_percent".into(),
                    severity: Severity::Warning,
                    old_state: State::Up,
                    new_state: State::Degraded,
                    message: "CPU high".into(),
                    labels: HashMap::new(),
                },
                &metrics,
                rank,
            );
            format!("{} {:?}", a.message, a.labels)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_running_process_secrets_never_reach_the_evidence() {
    let secrets = [
        "Pl4ntedS3cretPw",
        "Pl4ntedApiK3yValue",
        "Pl4ntedUrlPassw0rd",
    ];
    // `; :` keeps sh itself running (no exec of the last command), with
    // these arguments in its /proc/PID/cmdline.
    let child = Reaped(
        Command::new("sh")
            .args([
                "-c",
                "sleep 30; :",
                "owlet-secret-test",
                "--password=Pl4ntedS3cretPw",
                "--api-key",
                "Pl4ntedApiK3yValue",
                "https://backup:Pl4ntedUrlPassw0rd@store.example/",
            ])
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    // Until the child has exec'd sh, /proc shows the parent's command line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let raw = loop {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let raw = String::from_utf8_lossy(&raw).into_owned();
        if raw.contains("owlet-secret-test") || Instant::now() > deadline {
            break raw;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        secrets.iter().all(|s| raw.contains(s)),
        "the kernel shows the secrets (else this test proves nothing): {raw}"
    );

    let mut sampler = Sampler::new(usize::MAX, 512).unwrap();
    let ours = sampler
        .sample()
        .top_processes
        .into_iter()
        .find(|p| p.pid == pid)
        .expect("the child is among all processes");
    for part in ["owlet-secret-test", "[redacted]"] {
        assert!(ours.command_line.contains(part), "{}", ours.command_line);
    }

    let text = evidence_text(vec![ours]);
    assert!(text.contains("owlet-secret-test"), "{text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn password_taking_programs_never_leak_into_labels() {
    let planted: [(&[&str], &str); 6] = [
        (
            &["mysqldump", "-uroot", "-pPl4ntedMysqlPw", "--all-databases"],
            "Pl4ntedMysqlPw",
        ),
        (
            &["sshpass", "-p", "Pl4ntedSshPass", "ssh", "backup@nas"],
            "Pl4ntedSshPass",
        ),
        (
            &["redis-cli", "-h", "cache", "-a", "Pl4ntedRedisPw"],
            "Pl4ntedRedisPw",
        ),
        (
            &["smbclient", "//fs/share", "-U", "bob%Pl4ntedSmbPw"],
            "Pl4ntedSmbPw",
        ),
        (
            &["curl", "-u", "bob:Pl4ntedCurlPw", "https://h.example/"],
            "Pl4ntedCurlPw",
        ),
        (
            &["agent", "--token", "Pl4ntedTokenValue", "--verbose"],
            "Pl4ntedTokenValue",
        ),
    ];
    // Short lines too: the cut comes after redaction.
    for max in [20, 40, 4096] {
        let top = planted
            .iter()
            .zip(1..)
            .map(|((args, _), pid)| ProcessUsage {
                pid,
                name: args[0].to_string(),
                command_line: command_line(args, max),
                ..Default::default()
            })
            .collect();
        let text = evidence_text(top);
        for (_, secret) in planted {
            // Not even the start of one (a cut before redaction would leave it).
            assert!(!text.contains(&secret[..4]), "{secret} in {text}");
        }
    }
}
