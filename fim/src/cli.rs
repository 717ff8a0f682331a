//! The work of `owlet fim baseline | scan`: the baseline without the
//! running agent, like `aide --init` and `aide --check`.
//!
//! Configuration in, exit status out: the caller (the agent's command line)
//! loads `owlet.toml` with the agent's own loader — hardware profile,
//! relative paths, `FILE:LINE:COL` errors, the same as `owlet run` — and
//! passes the loaded [`FimConfig`] and the agent's state directory; this
//! module never reads a configuration file itself, so the two cannot
//! disagree. Exit statuses: [`baseline`]: 0 written, 2 error; [`scan`]: 0 no
//! changes, 1 changes, 2 error (no baseline yet). `scan` changes nothing on
//! disk. Do not run `baseline` while an agent uses the same state directory.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::change::Output;
use crate::config::FimConfig;
use crate::engine::{Engine, ScanKind, StartError};

type Collected = Arc<Mutex<Vec<Output>>>;

fn engine(
    mut cfg: FimConfig,
    state_dir: &Path,
    unlimited: bool,
) -> Result<(Engine, Collected), StartError> {
    if unlimited {
        cfg.baseline_io_budget = bytesize::ByteSize::b(0);
    }
    let collected: Collected = Arc::default();
    let sink = collected.clone();
    let engine = Engine::new(
        cfg,
        FimConfig::state_dir(state_dir),
        Box::new(move |o| {
            if let Ok(mut v) = sink.lock() {
                v.push(o);
            }
        }),
        None,
    )?;
    Ok((engine, collected))
}

fn print_alerts(outputs: &[Output]) {
    for o in outputs {
        if let Output::Alert(a) = o {
            eprintln!("{}: {}", a.name, a.message);
        }
    }
}

/// `owlet fim baseline`: builds (or rebuilds) the baseline of `cfg`'s
/// watched files in `FimConfig::state_dir(agent_state_dir)` at
/// `cfg.baseline_io_budget` (no limit with `unlimited`); progress on a
/// terminal, a summary line on stdout. Returns the exit status.
pub fn baseline(cfg: FimConfig, agent_state_dir: &Path, unlimited: bool) -> i32 {
    let budget = match cfg.baseline_io_budget.as_u64() {
        _ if unlimited => "unlimited (--unlimited)".to_string(),
        0 => "unlimited".to_string(),
        b => format!("{}/s", bytesize::ByteSize::b(b).display().iec()),
    };
    let (mut engine, collected) = match engine(cfg, agent_state_dir, unlimited) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    engine.progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let (files, bytes, _) = engine.full_scan(ScanKind::Start, true);
    if let Err(e) = engine.save_baseline_now() {
        eprintln!("{e}");
        return 2;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    print_alerts(&collected.lock().map(|v| v.clone()).unwrap_or_default());
    println!(
        "baseline: {files} files, {:.1} MB in {secs:.2}s ({:.0} files/s, {:.1} MB/s; I/O budget {budget}) -> {}",
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs,
        engine.baseline_dir().display()
    );
    0
}

/// `owlet fim scan`: compares `cfg`'s watched files with the baseline in
/// `FimConfig::state_dir(agent_state_dir)` and prints the changes (JSON
/// lines with `json`); writes nothing. `config` only names the file in the
/// hint when there is no baseline yet. Returns the exit status.
pub fn scan(cfg: FimConfig, agent_state_dir: &Path, json: bool, config: &Path) -> i32 {
    let (mut engine, collected) = match engine(cfg, agent_state_dir, false) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    engine.read_only = true;
    if !engine.load_baseline() {
        print_alerts(&collected.lock().map(|v| v.clone()).unwrap_or_default());
        eprintln!(
            "no usable baseline in {}: run `owlet fim baseline --config {}` first",
            engine.baseline_dir().display(),
            config.display()
        );
        return 2;
    }
    engine.full_scan(ScanKind::Rescan, false);
    let outputs = collected.lock().map(|v| v.clone()).unwrap_or_default();
    print_alerts(&outputs);
    let mut out = std::io::stdout().lock();
    let mut changes = 0;
    for o in &outputs {
        let Output::Change(c) = o else { continue };
        changes += 1;
        let _ = if json {
            writeln!(out, "{}", serde_json::to_string(c).unwrap_or_default())
        } else {
            let what = c.action.name();
            let hash = |e: &Option<crate::state::Entry>| {
                e.as_ref().map_or("-".to_string(), |e| {
                    if e.sha256.is_empty() {
                        e.hash_skipped.clone()
                    } else {
                        e.sha256[..12.min(e.sha256.len())].to_string()
                    }
                })
            };
            let from = c
                .old_path
                .as_ref()
                .map(|p| format!(" (from {})", p.display()))
                .unwrap_or_default();
            writeln!(
                out,
                "{what} {}{from}  sha256 {} -> {}",
                c.path.display(),
                hash(&c.old),
                hash(&c.new)
            )
            .and_then(|()| {
                if c.diff.is_empty() {
                    Ok(())
                } else {
                    write!(out, "{}", c.diff)
                }
            })
        };
    }
    if !json {
        let _ = writeln!(out, "{changes} change(s)");
    }
    i32::from(changes > 0)
}
