//! `owlet fim baseline | scan --config FILE`: the baseline without the
//! running agent, like `aide --init` and `aide --check`.
//!
//! Both read the `[fim]` table and `agent.state_dir` of the agent's TOML
//! (nothing else of it: no certificates needed). Exit statuses:
//! `baseline`: 0 written, 2 error; `scan`: 0 no changes, 1 changes, 2 error
//! (bad configuration, no baseline yet). `scan` changes nothing on disk.
//! Do not run `baseline` while an agent uses the same state directory.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

use crate::change::Output;
use crate::config::FimConfig;
use crate::engine::{Engine, ScanKind};

/// `owlet fim ...`
#[derive(clap::Args, Debug, Clone)]
pub struct FimArgs {
    #[command(subcommand)]
    pub command: FimCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FimCommand {
    /// Build (or rebuild) the baseline of the watched files; progress on a
    /// terminal, files/s and MB/s at the end.
    Baseline {
        /// The agent's configuration file (its [fim] table and agent.state_dir).
        #[arg(long, short)]
        config: PathBuf,
        /// Read as fast as the disk allows instead of fim.baseline_io_budget.
        #[arg(long)]
        unlimited: bool,
    },
    /// Compare the watched files with the baseline and print the changes
    /// (exit 0: none, 1: changes, 2: error).
    Scan {
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object per change and line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Deserialize, Default)]
struct AgentPart {
    #[serde(default)]
    state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    agent: AgentPart,
    #[serde(default)]
    fim: FimConfig,
}

/// Reads the `[fim]` part of the agent's configuration; the error is ready
/// to print.
fn load(path: &Path) -> Result<(FimConfig, PathBuf), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let wanted: toml::Table = table
        .into_iter()
        .filter(|(k, _)| k == "agent" || k == "fim")
        .map(|(k, v)| match (k.as_str(), v) {
            // Only agent.state_dir matters here.
            ("agent", toml::Value::Table(t)) => (
                k,
                toml::Value::Table(t.into_iter().filter(|(k, _)| k == "state_dir").collect()),
            ),
            (_, v) => (k, v),
        })
        .collect();
    let file: ConfigFile = wanted
        .try_into()
        .map_err(|e: toml::de::Error| format!("{}: {e}", path.display()))?;
    let issues = file.fim.validate();
    if !issues.is_empty() {
        return Err(issues
            .iter()
            .map(|i| format!("{}: fim.{i}", path.display()))
            .collect::<Vec<_>>()
            .join("\n"));
    }
    if !file.fim.enabled() {
        return Err(format!(
            "{}: no [[fim.watch]] entries: add one, e.g.\n[[fim.watch]]\npath = \"/etc\"",
            path.display()
        ));
    }
    // As the agent does: a relative state_dir is relative to the config file.
    let state = match file.agent.state_dir {
        Some(dir) if dir.is_relative() => path.parent().unwrap_or(Path::new(".")).join(dir),
        Some(dir) => dir,
        None => PathBuf::from("/var/lib/owlet"),
    };
    Ok((file.fim, FimConfig::state_dir(&state)))
}

/// Runs `owlet fim ...`; returns the exit status.
pub fn run(args: FimArgs) -> i32 {
    match args.command {
        FimCommand::Baseline { config, unlimited } => baseline(&config, unlimited),
        FimCommand::Scan { config, json } => scan(&config, json),
    }
}

type Collected = Arc<Mutex<Vec<Output>>>;

fn engine(config: &Path, unlimited: bool) -> Result<(Engine, Collected), String> {
    let (mut cfg, dir) = load(config)?;
    if unlimited {
        cfg.baseline_io_budget = bytesize::ByteSize::b(0);
    }
    let collected: Collected = Arc::default();
    let sink = collected.clone();
    let engine = Engine::new(
        cfg,
        dir,
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

fn baseline(config: &Path, unlimited: bool) -> i32 {
    let (mut engine, collected) = match engine(config, unlimited) {
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
        "baseline: {files} files, {:.1} MB in {secs:.2}s ({:.0} files/s, {:.1} MB/s) -> {}",
        bytes as f64 / 1e6,
        files as f64 / secs,
        bytes as f64 / 1e6 / secs,
        engine.baseline_dir().display()
    );
    0
}

fn scan(config: &Path, json: bool) -> i32 {
    let (mut engine, collected) = match engine(config, false) {
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
