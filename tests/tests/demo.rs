//! The README's first command: `owlet demo` (the sensor binary hands the demo
//! to `owlet-soc demo`, which starts this binary as its agent). The demo's
//! own behaviour — alert raised and cleared, closed pipes, running as nobody —
//! is tested in soc/tests/demo.rs; this checks the hand-over end to end.

use owlet_tests::*;

#[test]
fn owlet_demo_runs_a_soc_and_an_agent() {
    let out = output(owlet().args(["demo", "--duration", "8s"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "owlet demo failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("agent up"),
        "the demo never showed the agent's heartbeat:\n{stdout}\nstderr:\n{stderr}"
    );
}
