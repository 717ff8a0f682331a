//! The `owlet` command line. A thin shell: each subcommand parses its
//! arguments and calls library code. Exit statuses are part of the interface
//! (scripts and monitoring depend on them): 0 success / OK, 1 warning,
//! 2 failure / critical, 3 unknown (Nagios plugin conventions).

mod fim;
mod health;
mod hw_profile;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "owlet",
    version,
    about = "On-premises monitoring agent for managed security services"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as a service: collect, spool and stream to the SOC.
    Run {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a configuration file; every error names file, line and key.
    CheckConfig {
        #[arg(default_value = config::DEFAULT_PATH)]
        file: PathBuf,
    },
    /// Everything on loopback: a throwaway CA, a real SOC receiver (the
    /// `owlet-soc` binary, found beside this one or on PATH) and a real agent
    /// (this binary), with the SOC's view shown live.
    Demo {
        /// Stop after this long (e.g. "30s"); default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Keep the demo's files here instead of a temporary directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run one uptime check now and print the result.
    Probe(Box<owlet_probe::cli::ProbeArgs>),
    /// Read a capture file (pcap or pcapng) through the flow pipeline and
    /// print flow records, interval summaries and alerts.
    Capture(Box<owlet_capture::cli::CaptureArgs>),
    /// File integrity: build the baseline of the watched files, or compare
    /// them with it (like `aide --init` / `aide --check`).
    Fim(Box<fim::FimArgs>),
    /// Ask the running agent how it is (Nagios exit codes).
    Health {
        #[arg(long)]
        json: bool,
        /// Control socket of the agent.
        #[arg(long, default_value = "/run/owlet/owlet.sock")]
        socket: PathBuf,
    },
    /// Hardware profiles: which one fits this machine (`detect`) and what
    /// one sets (`show NAME`).
    #[command(subcommand)]
    HwProfile(hw_profile::HwProfileCommand),
    /// The operation test of an installation: configuration, certificates,
    /// capture, watched paths, spool, the SOC (mTLS, clock, a test event and
    /// a failure test it must acknowledge). One line per step, a fix for
    /// each failure; exit 0 all passed, 1 warnings, 2 a failure.
    Selftest {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Largest clock offset against the SOC that passes (e.g. "500ms").
        #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
        clock_tolerance: Duration,
        /// The service's unit file: run as root, capture and watched paths
        /// are checked as its User= with its AmbientCapabilities= (default:
        /// the installed owlet.service with its drop-ins, else the packaged
        /// one).
        #[arg(long, value_name = "FILE")]
        service_unit: Option<PathBuf>,
    },
    /// The part of `owlet selftest` that runs as the service user (started
    /// by `owlet selftest` as root; prints JSON).
    #[command(hide = true)]
    SelftestAsService {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service_unit: Option<PathBuf>,
    },
    /// Ask the running agent to re-read its configuration (same as SIGHUP).
    Reload {
        /// Print the agent's answer as JSON (`reload`: applied / rejected,
        /// with added / changed / removed or the errors).
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "/run/owlet/owlet.sock")]
        socket: PathBuf,
    },
}

/// Runs the parsed command; returns the process exit status.
pub fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => run_with(config, Vec::new()),
        Command::Demo { duration, dir } => demo(duration, dir),
        Command::Capture(args) => owlet_capture::cli::run(*args),
        Command::Fim(args) => fim::run(*args),
        Command::Probe(args) => {
            runtime_then(|| async move { Ok(owlet_probe::cli::run(*args).await) })
        }
        Command::Health { json, socket } => runtime_then(|| health::health(socket, json)),
        Command::Selftest {
            config,
            json,
            clock_tolerance,
            service_unit,
        } => runtime_then(|| {
            crate::selftest::main(crate::selftest::Options {
                config,
                json,
                clock_tolerance,
                service_unit,
            })
        }),
        // Before any runtime: credentials are per thread.
        Command::SelftestAsService {
            config,
            service_unit,
        } => crate::selftest::as_service_main(&config, service_unit.as_ref()),
        Command::Reload { socket, json } => runtime_then(|| health::reload(socket, json)),
        Command::HwProfile(command) => hw_profile::run(command),
    }
}

fn check_config(file: &std::path::Path) -> i32 {
    match config::load(file) {
        Ok(config) => {
            for warning in config.warnings() {
                eprintln!("{}: warning: {warning}", file.display());
            }
            // The identity the SOC will know this agent by (the config
            // loaded, so the certificate has one).
            let identity = config
                .certificate_identity()
                .map_or_else(|e| format!("unknown: {e}"), |id| id.to_string());
            println!(
                "{}: OK (agent {identity}, SOC {}, {} checks, spool {})",
                file.display(),
                config.soc.address,
                config.probe.checks.len(),
                config.spool_dir().display()
            );
            0
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            2
        }
    }
}

/// `owlet run`, with `extra` collectors beside the configured ones (used by
/// `owlet-loadgen`; the sensor passes none). Returns the exit status.
pub fn run_with(path: PathBuf, extra: Vec<Box<dyn crate::collect::Collector>>) -> i32 {
    run_with_spool_fs(path, extra, std::sync::Arc::new(owlet_spool::fs::RealFs))
}

/// [`run_with`] with the spool on `spool_fs` (`owlet-loadgen`'s fault
/// injection; the sensor always uses the real filesystem).
pub fn run_with_spool_fs(
    path: PathBuf,
    extra: Vec<Box<dyn crate::collect::Collector>>,
    spool_fs: std::sync::Arc<dyn owlet_spool::fs::Filesystem>,
) -> i32 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::malloc::tune();
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return 2;
        }
    };
    // The parse of a large config is the most the agent ever frees.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    crate::malloc::release_free_memory();
    owlet_logging::init(&config.log);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    runtime_then(|| crate::service::run_on(path, config, extra, spool_fs))
}

/// `owlet demo`: the sensor binary carries no SOC code, so the demo is run
/// by `owlet-soc demo`, which starts this binary as its agent.
fn demo(duration: Option<Duration>, dir: Option<PathBuf>) -> i32 {
    let me = match std::env::current_exe() {
        Ok(me) => me,
        Err(e) => {
            eprintln!("owlet demo: cannot find this program's own path: {e}");
            return 2;
        }
    };
    let beside = me.with_file_name("owlet-soc");
    let soc = if beside.is_file() {
        beside
    } else {
        PathBuf::from("owlet-soc")
    };
    let mut command = std::process::Command::new(&soc);
    command.arg("demo").arg("--agent-bin").arg(&me);
    if let Some(duration) = duration {
        command
            .arg("--duration")
            .arg(humantime::format_duration(duration).to_string());
    }
    if let Some(dir) = dir {
        command.arg("--dir").arg(dir);
    }
    // exec, not spawn: Ctrl-C and SIGTERM reach owlet-soc directly, which
    // stops its agent child and cleans up before exiting.
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    eprintln!(
        "owlet demo: cannot start {} ({error}); the demo needs the owlet-soc binary beside owlet or on PATH (cargo build --workspace --bins builds both)",
        soc.display()
    );
    2
}

/// Builds the tokio runtime, runs `f` on it and maps errors to exit status 2.
fn runtime_then<F, Fut, T>(f: F) -> i32
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
    T: Into<ExitStatus>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("owlet: cannot start the async runtime: {e}");
            return 2;
        }
    };
    match runtime.block_on(f()) {
        Ok(value) => value.into().0,
        Err(e) => {
            eprintln!("owlet: {e:#}");
            2
        }
    }
}

/// A process exit status.
pub struct ExitStatus(pub i32);

impl From<()> for ExitStatus {
    fn from((): ()) -> Self {
        ExitStatus(0)
    }
}

impl From<i32> for ExitStatus {
    fn from(code: i32) -> Self {
        ExitStatus(code)
    }
}
