//! `owlet fim baseline | scan --config FILE`: the file-integrity baseline
//! without the running agent (like `aide --init` / `aide --check`).
//!
//! The configuration is loaded by the agent's own loader ([`config::load`]):
//! hardware profile, relative paths resolved against the file, state_dir
//! rules and `FILE:LINE:COL` errors are exactly those of `owlet run` and
//! `owlet check-config` (so the whole file must be valid, certificates
//! included). The work itself is `owlet_fim::cli`, which takes the loaded
//! `[fim]` and state directory and reads no file of its own.
//!
//! Run as root, `baseline` hands what it wrote — `<state_dir>/fim` and
//! everything in it, and `state_dir` itself when it created it — to the
//! service user: `User=` / `Group=` of owlet.service (`--service-unit FILE`,
//! else the installed unit, else the packaged one: `owlet`), when that user
//! exists here. A baseline owned by root would be unusable to the service.
//! Exit statuses are `owlet_fim::cli`'s; 2 also when the hand-over fails.

use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::unit::ServiceUnit;

/// `owlet fim ...`
#[derive(clap::Args, Debug, Clone)]
pub struct FimArgs {
    #[command(subcommand)]
    pub command: FimCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum FimCommand {
    /// Build (or rebuild) the baseline of the watched files; progress on a
    /// terminal, files/s and MB/s at the end. Run as root, the baseline is
    /// then handed to the service user.
    Baseline {
        /// The agent's configuration file, loaded as `owlet run` loads it.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Read as fast as the disk allows instead of fim.baseline_io_budget.
        #[arg(long)]
        unlimited: bool,
        /// The service's unit file, whose User= / Group= get the baseline
        /// (default: the installed owlet.service, else the packaged one).
        #[arg(long, value_name = "FILE")]
        service_unit: Option<PathBuf>,
    },
    /// Compare the watched files with the baseline and print the changes
    /// (exit 0: none, 1: changes, 2: error).
    Scan {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// One JSON object per change and line.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `owlet fim ...`; returns the exit status.
pub fn run(args: FimArgs) -> i32 {
    match args.command {
        FimCommand::Baseline {
            config,
            unlimited,
            service_unit,
        } => {
            let Some(loaded) = load(&config) else {
                return 2;
            };
            let state_dir = loaded.agent.state_dir.clone();
            let existed = state_dir.exists();
            let code = owlet_fim::cli::baseline(loaded.fim, &state_dir, unlimited);
            if code != 0 {
                return code;
            }
            hand_over(&state_dir, existed, service_unit.as_deref())
        }
        FimCommand::Scan { config, json } => {
            let Some(loaded) = load(&config) else {
                return 2;
            };
            owlet_fim::cli::scan(loaded.fim, &loaded.agent.state_dir, json, &config)
        }
    }
}

/// The configuration as `owlet run` loads it, with watched paths; `None`
/// after printing why not (as `owlet check-config` prints it).
fn load(path: &Path) -> Option<Config> {
    match config::load(path) {
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            None
        }
        Ok(config) if !config.fim.enabled() => {
            eprintln!(
                "{}: no [[fim.watch]] entries: add one, e.g.\n[[fim.watch]]\npath = \"/etc\"",
                path.display()
            );
            None
        }
        Ok(config) => Some(config),
    }
}

/// As root: gives the baseline to the service user (see the module doc).
fn hand_over(state_dir: &Path, existed: bool, unit: Option<&Path>) -> i32 {
    if !nix::unistd::geteuid().is_root() {
        return 0;
    }
    let fim_dir = owlet_fim::FimConfig::state_dir(state_dir);
    let unit = match ServiceUnit::load(unit) {
        Ok(unit) => unit,
        Err(e) => {
            eprintln!(
                "owlet fim baseline: {e}; {} stays owned by root",
                fim_dir.display()
            );
            return 2;
        }
    };
    let user = unit.user_name().to_string();
    let account = match unit.account() {
        Ok(Some(account)) => account,
        Ok(None) => {
            eprintln!(
                "note: there is no user {user} (User= of {}) on this host: {} stays owned by root",
                unit.origin,
                fim_dir.display()
            );
            return 0;
        }
        Err(e) => {
            eprintln!(
                "owlet fim baseline: {e}; {} stays owned by root",
                fim_dir.display()
            );
            return 2;
        }
    };
    if account.uid.is_root() {
        return 0;
    }
    let (uid, gid) = (account.uid.as_raw(), account.gid.as_raw());
    let result = chown_tree(&fim_dir, uid, gid).and_then(|()| {
        if existed {
            Ok(())
        } else {
            std::os::unix::fs::lchown(state_dir, Some(uid), Some(gid))
        }
    });
    match result {
        Ok(()) => {
            println!(
                "{} handed to {user} (uid {uid}, gid {gid}): the user {} runs the agent as",
                fim_dir.display(),
                unit.origin
            );
            0
        }
        Err(e) => {
            eprintln!(
                "owlet fim baseline: the baseline was written, but cannot be handed to {user}: {e}; \
                 run `chown -R {user}: {}`",
                fim_dir.display()
            );
            2
        }
    }
}

/// `chown -R` without following symbolic links.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
