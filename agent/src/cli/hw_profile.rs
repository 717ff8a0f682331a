//! `owlet hw-profile detect|show`: which hardware profile fits this machine
//! and why, and what a profile sets (each value with where it comes from).
//! Exit status 0, or 2 when the name or the config file is wrong.
//!
//! `show NAME --config FILE` never pretends: the values and their `from`
//! labels are what the agent running FILE uses (`profile` only when FILE
//! selects a profile and that profile set the value), and what NAME would
//! set stands beside them in a column of its own.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;

use crate::config::profile::{self, AUTO, HW_PROFILES, KNOBS, Origin, Value, detect};
use crate::config::{self, Config};

/// Appends a line to the output text.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

#[derive(Debug, Subcommand)]
pub enum HwProfileCommand {
    /// What this machine has (cores, memory, NICs and link speeds) and the
    /// profile `hw_profile = "auto"` picks for it, with why.
    Detect {
        #[arg(long)]
        json: bool,
        /// Read /proc and /sys under this directory (tests).
        #[arg(long, hide = true, default_value = "/")]
        root: PathBuf,
    },
    /// The settings of profile NAME (small, medium, large, or auto for this
    /// machine's), each with where it comes from: the config file, the
    /// profile, or the built-in default.
    Show {
        name: String,
        /// Show the values this owlet.toml gives the agent (with its own
        /// hw_profile, or none) and where each comes from, beside what NAME
        /// sets.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the subcommand; returns the exit status.
pub fn run(command: HwProfileCommand) -> i32 {
    match command {
        HwProfileCommand::Detect { json, root } => explain(&root, json),
        HwProfileCommand::Show { name, config, json } => show(&name, config.as_deref(), json),
    }
}

fn explain(root: &Path, json: bool) -> i32 {
    let choice = detect::choose(&detect::detect(root));
    if json {
        return print_json(&choice);
    }
    let mut out = String::new();
    let machine = &choice.machine;
    let cores = machine
        .cores
        .map_or("unknown".to_string(), |c| c.to_string());
    let memory = machine.memory_bytes.map_or("unknown".to_string(), |b| {
        bytesize::ByteSize(b).display().iec().to_string()
    });
    let nics = if machine.nics.is_empty() {
        "none found".to_string()
    } else {
        machine
            .nics
            .iter()
            .map(|n| match n.speed_mbps {
                Some(s) => format!("{} {s} Mb/s", n.name),
                None => format!("{} (no link speed)", n.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!(out, "CPU cores:     {cores}");
    say!(out, "memory:        {memory}");
    say!(out, "physical NICs: {nics}");
    for fit in &choice.fits {
        let verdict = if fit.unmet.is_empty() {
            "fits".to_string()
        } else {
            format!("does not fit: {}", fit.unmet.join("; "))
        };
        say!(out, "  {:<8}{verdict}", fit.profile);
    }
    say!(out, "profile:       {}", choice.name);
    say!(out, "why:           {}", choice.reason);
    emit(&out)
}

/// `hw-profile show --json`.
#[derive(Serialize)]
struct Shown<'a> {
    requested: &'a str,
    profile: &'a str,
    description: &'a str,
    memory_max: u64,
    config: Option<&'a Path>,
    /// With `--config`: the file's `agent.hw_profile` as written ("" =
    /// none, "auto").
    #[serde(skip_serializing_if = "Option::is_none")]
    selected: Option<&'a str>,
    /// With `--config`: the profile the file ends up with (`auto`
    /// resolved); `None` when it selects none.
    #[serde(skip_serializing_if = "Option::is_none")]
    selected_profile: Option<Option<&'a str>>,
    settings: Vec<Setting>,
    detection: Option<&'a detect::Choice>,
}

#[derive(Serialize)]
struct Setting {
    key: &'static str,
    /// The value in effect: with `--config`, the file's; else NAME's.
    value: Value,
    /// Where `value` comes from.
    from: Origin,
    /// What profile NAME sets for the key.
    profile_value: Value,
}

fn show(name: &str, file: Option<&Path>, json: bool) -> i32 {
    if name != AUTO && !HW_PROFILES.contains(&name) {
        eprintln!("owlet hw-profile show: {}", profile::unknown(name));
        return 2;
    }
    // What NAME sets: the built-in defaults with NAME applied.
    let named: Config = match profile::defaults_with(name) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return 2;
        }
    };
    // What is in effect: FILE as the agent loads it (its own hw_profile),
    // or, without a file, a config that selects NAME and writes nothing.
    let effective: Config = match file {
        Some(file) => match config::load(file) {
            Ok(config) => config,
            Err(errors) => {
                eprintln!("{errors}");
                return 2;
            }
        },
        None => named.clone(),
    };
    let Some(resolved) = named.profile.name else {
        eprintln!("owlet hw-profile show: no profile applied for `{name}`");
        return 2;
    };
    let chosen = match profile::builtin(resolved) {
        Ok(Some(p)) => p,
        Ok(None) => {
            eprintln!("owlet hw-profile show: {}", profile::unknown(resolved));
            return 2;
        }
        Err(e) => {
            eprintln!("owlet hw-profile show: {e}");
            return 2;
        }
    };
    let settings: Vec<Setting> = KNOBS
        .iter()
        .map(|knob| Setting {
            key: knob.key,
            value: knob.value(&effective),
            from: effective
                .profile
                .origin(knob.key)
                .unwrap_or(Origin::Default),
            profile_value: knob.value(&named),
        })
        .collect();
    let selected = file.map(|_| effective.profile.requested.as_str());
    let selected_profile = file.map(|_| effective.profile.name);
    if json {
        return print_json(&Shown {
            requested: name,
            profile: resolved,
            description: &chosen.description,
            memory_max: chosen.memory_max.as_u64(),
            config: file,
            selected,
            selected_profile,
            settings,
            detection: named.profile.choice.as_ref(),
        });
    }
    let mut out = String::new();
    say!(out, "profile {resolved}");
    if let Some(choice) = &named.profile.choice {
        say!(out, "auto:          {}", choice.reason);
    }
    say!(out, "box:           {}", chosen.description);
    say!(
        out,
        "memory budget: {} (systemd MemoryMax={}M: the shipped unit has small's; a drop-in sets a bigger one)",
        chosen.memory_max.display().iec(),
        chosen.memory_max.as_u64() >> 20
    );
    if let Some(file) = file {
        let selects = match (effective.profile.requested.as_str(), effective.profile.name) {
            (_, None) => "selects no hardware profile".to_string(),
            (AUTO, Some(p)) => format!("selects auto, which picks {p} here"),
            (_, Some(p)) => format!("selects {p}"),
        };
        say!(out, "config:        {} ({selects})", file.display());
        if effective.profile.name != Some(resolved) {
            say!(
                out,
                "note:          the values in effect are not {resolved}'s: set [agent] hw_profile = \"{name}\" to use the column `{resolved} sets`"
            );
        }
    }
    let width = KNOBS.iter().map(|k| k.key.len()).max().unwrap_or(0);
    if file.is_some() {
        say!(
            out,
            "  {:<width$}  {:<12}  {:<8}  {resolved} sets",
            "key",
            "in effect",
            "from"
        );
    }
    for s in &settings {
        if file.is_some() {
            say!(
                out,
                "  {:<width$}  {:<12}  {:<8}  {}",
                s.key,
                s.value.to_string(),
                s.from.to_string(),
                s.profile_value
            );
        } else {
            say!(
                out,
                "  {:<width$}  {:<12}  {}",
                s.key,
                s.value.to_string(),
                s.from
            );
        }
    }
    emit(&out)
}

/// Writes `text` to stdout; a reader that went away (`| head`) is no error.
fn emit(text: &str) -> i32 {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    0
}

fn print_json(value: &impl Serialize) -> i32 {
    match serde_json::to_string_pretty(value) {
        Ok(text) => emit(&(text + "\n")),
        Err(e) => {
            eprintln!("owlet hw-profile: cannot write JSON: {e}");
            2
        }
    }
}
