//! `owlet-loadgen`: the real agent (`owlet run`) plus a synthetic load
//! producer, for benchmarks and end-to-end tests.
//!
//! The load generator is kept out of the `owlet` sensor binary on purpose:
//! what runs with CAP_NET_RAW next to a customer's firewall carries no test
//! generator. This binary is never packaged.
#![forbid(unsafe_code)]

mod synthetic;
mod wedge;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "owlet-loadgen",
    version,
    about = "owlet agent with a synthetic load producer (benchmarks and tests only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent like `owlet run`, plus synthetic check results.
    Run {
        /// The agent's configuration file (same format as `owlet run`).
        #[arg(long, short)]
        config: PathBuf,
        /// Events per second to produce.
        #[arg(long)]
        rate: u64,
        /// Stop producing after this many events (0: never stop).
        #[arg(long, default_value_t = 0)]
        total: u64,
        /// What to produce: check results or flow records.
        #[arg(long, value_enum, default_value = "check")]
        kind: synthetic::LoadKind,
        /// While this file exists, the spool's fdatasync calls do not
        /// return: the spool writer wedges inside a real spool call, as on
        /// a hung disk (tests of the systemd watchdog).
        #[arg(long)]
        wedge_spool_when: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    let Command::Run {
        config,
        rate,
        total,
        kind,
        wedge_spool_when,
    } = cli.command;
    let load = synthetic::Synthetic::new(kind, rate, total);
    let status = match wedge_spool_when {
        None => owlet_agent::cli::run_with(config, vec![Box::new(load)]),
        Some(trigger) => owlet_agent::cli::run_with_spool_fs(
            config,
            vec![Box::new(load)],
            Arc::new(wedge::WedgeFs::new(trigger)),
        ),
    };
    std::process::exit(status);
}
