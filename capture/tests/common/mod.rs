//! What the tests that record real traffic between network namespaces
//! share: the tool check (a missing tool fails the test, naming the
//! package), running a recording script, and replaying its pcap.

use std::path::{Path, PathBuf};
use std::process::Command;

use owlet_capture::engine::{Config, FlowRecord, Output};
use owlet_capture::pcap::ReplayReport;
use owlet_capture::summary::{CaptureAlert, Summary};

/// Fails the test unless `name` is on the PATH.
pub fn tool(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is needed by this test: apt-get install the packages in dev/packages.txt"
    );
}

/// Runs `tests/<script> OUT.pcap DIR` (it needs root for its namespaces);
/// returns the pcap's path in `dir`.
pub fn record(script: &str, dir: &Path) -> PathBuf {
    let pcap = dir.join("traffic.pcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let st = Command::new("bash")
        .arg(&script)
        .arg(&pcap)
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "{} failed (it needs root)", script.display());
    pcap
}

/// Everything a replay of `pcap` produced.
pub struct Replayed {
    pub flows: Vec<FlowRecord>,
    pub summaries: Vec<Summary>,
    pub alerts: Vec<CaptureAlert>,
    pub report: ReplayReport,
}

pub fn replay(pcap: &Path, cfg: Config) -> Replayed {
    let mut flows = Vec::new();
    let mut summaries = Vec::new();
    let mut alerts = Vec::new();
    let report = owlet_capture::pcap::replay(pcap, cfg, |o| match o {
        Output::Flow(f) => flows.push(f),
        Output::Summary(s) => summaries.push(*s),
        Output::Alert(a) => alerts.push(a),
        Output::Partial(..) => {}
    })
    .unwrap();
    Replayed {
        flows,
        summaries,
        alerts,
        report,
    }
}
