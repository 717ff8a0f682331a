//! `owlet hw-profile detect|show` on this machine (structure, not this
//! machine's numbers), and `hw_profile = "auto"` reaching the SOC as the
//! name detection chose.

use std::fs;
use std::time::Duration;

use owlet_tests::*;
use serde_json::Value;

const PROFILES: [&str; 3] = ["small", "medium", "large"];
const KEYS: [&str; 8] = [
    "capture.workers",
    "capture.ring_bytes",
    "capture.max_flows",
    "spool.max_bytes",
    "spool.max_batches",
    "batch.max_events",
    "probe.max_concurrency",
    "fim.baseline_io_budget",
];

fn json(cmd: &mut std::process::Command) -> Value {
    let out = run_ok(cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn detected() -> Value {
    json(owlet().args(["hw-profile", "detect", "--json"]))
}

#[test]
fn detect_explains_the_choice_for_this_machine() {
    let d = detected();
    let machine = &d["machine"];
    assert!(machine["cores"].as_u64().is_some_and(|c| c >= 1), "{d}");
    assert!(
        machine["memory_bytes"].as_u64().is_some_and(|m| m > 0),
        "{d}"
    );
    for nic in machine["nics"].as_array().unwrap() {
        assert!(nic["name"].as_str().is_some_and(|n| !n.is_empty()), "{nic}");
        assert!(nic["name"] != "lo", "lo is not a physical NIC");
    }
    let fits: Vec<&str> = d["fits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["profile"].as_str().unwrap())
        .collect();
    assert_eq!(fits, PROFILES);
    let name = d["name"].as_str().unwrap();
    assert!(PROFILES.contains(&name), "{d}");
    assert!(d["reason"].as_str().unwrap().starts_with(name), "{d}");
    // The chosen profile fits, or it is the smallest and nothing fits.
    let fit = d["fits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["profile"] == name)
        .unwrap();
    assert!(
        fit["unmet"].as_array().unwrap().is_empty() || name == "small",
        "{d}"
    );

    let text = run_ok(owlet().args(["hw-profile", "detect"]));
    for label in [
        "CPU cores:",
        "memory:",
        "physical NICs:",
        "profile:",
        "why:",
    ] {
        assert!(text.contains(label), "no {label:?} in:\n{text}");
    }
    assert!(text.contains(&format!("profile:       {name}\n")), "{text}");
}

#[test]
fn detect_reads_the_root_it_is_given() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    fs::create_dir_all(p.join("sys/devices/system/cpu")).unwrap();
    fs::write(p.join("sys/devices/system/cpu/online"), "0-31\n").unwrap();
    fs::create_dir_all(p.join("proc")).unwrap();
    fs::write(p.join("proc/meminfo"), "MemTotal:       65000000 kB\n").unwrap();
    for nic in ["ens1f0", "ens1f1"] {
        fs::create_dir_all(p.join("sys/class/net").join(nic).join("device")).unwrap();
        fs::write(p.join("sys/class/net").join(nic).join("speed"), "10000\n").unwrap();
    }
    let d = json(
        owlet()
            .args(["hw-profile", "detect", "--json", "--root"])
            .arg(p),
    );
    assert_eq!(d["name"], "large", "{d}");
    assert_eq!(d["machine"]["cores"], 32);
}

fn settings(shown: &Value) -> Vec<(String, String)> {
    shown["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert!(s["value"].as_u64().is_some(), "{s}");
            (
                s["key"].as_str().unwrap().to_string(),
                s["from"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn show_lists_each_setting_with_where_it_comes_from() {
    for name in PROFILES {
        let shown = json(owlet().args(["hw-profile", "show", name, "--json"]));
        assert_eq!(shown["profile"], name);
        assert!(shown["memory_max"].as_u64().unwrap() > 0);
        let got = settings(&shown);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, KEYS);
        assert!(got.iter().all(|(_, from)| from == "profile"), "{got:?}");
    }
    let small = json(owlet().args(["hw-profile", "show", "small", "--json"]));
    assert_eq!(small["memory_max"], 128 << 20);

    // auto: the profile detect picks, with the detection.
    let auto = json(owlet().args(["hw-profile", "show", "auto", "--json"]));
    assert_eq!(auto["requested"], "auto");
    assert_eq!(auto["profile"], detected()["name"]);
    assert!(auto["detection"]["reason"].is_string(), "{auto}");

    let text = run_ok(owlet().args(["hw-profile", "show", "medium"]));
    assert!(text.starts_with("profile medium\n"), "{text}");
    for key in KEYS {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        assert!(line.ends_with("profile"), "{line}");
    }
}

#[test]
fn show_with_a_config_file_puts_its_values_first() {
    let soc = Soc::init();
    let mut agent = soc.issue("acme", "hw");
    agent.set("agent", "hw_profile", "large");
    agent.set("capture", "workers", 3);
    agent.write_config();
    let shown = profile_shown("small", &agent.config_path);
    assert_eq!(shown["profile"], "small");
    assert_eq!(shown["selected"], "large", "{shown}");
    assert_eq!(shown["selected_profile"], "large", "{shown}");
    let workers = &shown["settings"][0];
    assert_eq!(workers["key"], "capture.workers");
    assert_eq!(workers["value"], 3);
    assert_eq!(workers["from"], "config");
    // The rest is large's (the file selects it), with small's beside it.
    let from: Vec<(String, String)> = settings(&shown);
    assert!(from[1..].iter().all(|(_, f)| f == "profile"), "{from:?}");
    let large = json(owlet().args(["hw-profile", "show", "large", "--json"]));
    let small = json(owlet().args(["hw-profile", "show", "small", "--json"]));
    for i in 1..KEYS.len() {
        assert_eq!(
            shown["settings"][i]["value"], large["settings"][i]["value"],
            "{shown}"
        );
        assert_eq!(
            shown["settings"][i]["profile_value"], small["settings"][i]["value"],
            "{shown}"
        );
    }

    // A broken file: its errors, exit 2.
    fs::write(&agent.config_path, "[agent]\nhw_profil = \"small\"\n").unwrap();
    let out = output(
        owlet()
            .args(["hw-profile", "show", "small", "--config"])
            .arg(&agent.config_path),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean `hw_profile`?"), "{stderr}");
}

/// A config that selects no profile runs on the built-in defaults: no
/// value of it may be labelled `profile`, whatever NAME is shown.
#[test]
fn show_labels_a_config_without_a_profile_as_defaults() {
    let soc = Soc::init();
    let mut agent = soc.issue("acme", "none");
    agent.unset("agent", "hw_profile");
    agent.set("spool", "max_batches", 5000);
    agent.write_config();
    let shown = profile_shown("small", &agent.config_path);
    assert_eq!(shown["selected"], "", "{shown}");
    assert!(shown["selected_profile"].is_null(), "{shown}");
    for (key, from) in settings(&shown) {
        let want = if key == "spool.max_batches" {
            "config"
        } else {
            "default"
        };
        assert_eq!(from, want, "{key}: {shown}");
    }
    let spool = profile_setting(&shown, "spool.max_bytes");
    assert_eq!(spool["value"], 1u64 << 30, "the built-in default: {spool}");
    assert_eq!(spool["profile_value"], 256u64 << 20, "small's: {spool}");

    let text = run_ok(
        owlet()
            .args(["hw-profile", "show", "small", "--config"])
            .arg(&agent.config_path),
    );
    assert!(text.contains("selects no hardware profile"), "{text}");
    assert!(
        text.contains("set [agent] hw_profile = \"small\""),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("spool.max_bytes"))
        .unwrap();
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        columns,
        ["spool.max_bytes", "1.0", "GiB", "default", "256.0", "MiB"],
        "{line}"
    );
}

#[test]
fn an_unknown_profile_name_is_refused_with_the_known_ones() {
    let out = output(owlet().args(["hw-profile", "show", "smal"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("did you mean `small`?") && stderr.contains("small, medium, large"),
        "{stderr}"
    );
}

#[test]
fn the_agent_reports_the_profile_auto_chose_to_the_soc() {
    let want = detected()["name"].as_str().unwrap().to_string();
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "auto");
    agent.set("agent", "hw_profile", "auto");
    agent.start();
    let mut reported = String::new();
    wait_until(
        "the agent's hello at the SOC",
        Duration::from_secs(30),
        || {
            reported = soc
                .agents_json()
                .iter()
                .find(|a| a["agent_id"] == "auto")
                .and_then(|a| a["hw_profile"].as_str())
                .unwrap_or_default()
                .to_string();
            !reported.is_empty()
        },
    );
    assert_eq!(reported, want);
}
