//! The `owlet-soc` binary: see `owlet-soc --help` and the README.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use owlet_soc::{config, enroll, query, serve};

#[derive(Debug, Parser)]
#[command(name = "owlet-soc", version, about = "owlet SOC receiver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authority for agents (small deployments and tests).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Receive agents' streams.
    Serve {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Known agents with their state and last contact.
    Agents {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print stored events as they arrive.
    Tail {
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Only this agent: TENANT/AGENT or AGENT.
        #[arg(long)]
        agent: Option<String>,
        /// JSON lines (proto3 JSON mapping for the event).
        #[arg(long)]
        json: bool,
        /// Start from the first stored event instead of new ones.
        #[arg(long)]
        from_start: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create the agent CA, the SOC server certificate and soc.toml in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Names (DNS or IP) agents use to reach the SOC; repeatable.
        #[arg(long = "soc-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        soc_names: Vec<String>,
        /// Listen address written into soc.toml.
        #[arg(long, default_value = "127.0.0.1:4443")]
        listen: String,
    },
    /// Issue an agent certificate and a ready owlet.toml into OUT.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        out: PathBuf,
        /// SOC address written into owlet.toml.
        #[arg(long, default_value = "localhost:4443")]
        soc: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("owlet-soc: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn load(path: &std::path::Path) -> anyhow::Result<config::SocConfig> {
    config::load(path).map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Ca(CaCommand::Init {
            dir,
            soc_names,
            listen,
        }) => {
            let config = enroll::init(&dir, &soc_names, &listen)?;
            println!("CA, SOC certificate and {} written.", config.display());
            println!(
                "Next: owlet-soc ca issue --dir {} --tenant T --agent A --out DIR",
                dir.display()
            );
            Ok(0)
        }
        Command::Ca(CaCommand::Issue {
            dir,
            tenant,
            agent,
            out,
            soc,
        }) => {
            let identity = owlet_tls::Identity::new(tenant, agent)?;
            let options = enroll::AgentConfigOptions {
                soc_address: &soc,
                state_dir: std::path::Path::new("/var/lib/owlet"),
                socket: std::path::Path::new("/run/owlet/owlet.sock"),
                status_interval: "30s",
            };
            let config = enroll::issue(&dir, &identity, &out, &options)?;
            println!(
                "Agent {identity}: certificate, key and {} written.",
                config.display()
            );
            println!(
                "Copy {}/* to the sensor's /etc/owlet/ and run: owlet check-config /etc/owlet/owlet.toml",
                out.display()
            );
            Ok(0)
        }
        Command::Serve { config } => {
            let config = load(&config)?;
            owlet_soc::logging::init(&config.log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let receiver = serve::Receiver::bind(config).await?;
                receiver.serve(shutdown_signal()).await
            })?;
            Ok(0)
        }
        Command::Agents { config, json } => {
            let config = load(&config)?;
            let db = query::open_read_only(config.sqlite_path())
                .with_context(|| format!("cannot open {}", config.sqlite_path().display()))?;
            let rows = query::agents(&db)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10}  HOST",
                    "AGENT", "STATE", "VERSION", "LAST SEEN", "CLOCK ms", "DUPLICATES"
                );
                for r in rows {
                    println!(
                        "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10}  {}",
                        format!("{}/{}", r.tenant, r.agent_id),
                        r.state,
                        r.version,
                        r.last_seen,
                        r.clock_offset_ms,
                        r.duplicates_dropped,
                        r.hostname
                    );
                }
            }
            Ok(0)
        }
        Command::Tail {
            config,
            agent,
            json,
            from_start,
        } => {
            let config = load(&config)?;
            let db = query::open_read_only(config.sqlite_path())
                .with_context(|| format!("cannot open {}", config.sqlite_path().display()))?;
            let mut after = if from_start { 0 } else { query::last_row(&db)? };
            let mut out = std::io::stdout().lock();
            loop {
                let events = query::events_after(&db, after, agent.as_deref(), 1000)?;
                for e in &events {
                    let line = if json {
                        query::json_line(e)
                    } else {
                        query::text_line(e)
                    };
                    if !write_or_done(writeln!(out, "{line}"))? {
                        return Ok(0);
                    }
                    after = e.row;
                }
                if !write_or_done(out.flush())? {
                    return Ok(0);
                }
                if events.is_empty() {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// `Ok(false)` when stdout's reader went away (`owlet-soc tail | head`).
fn write_or_done(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
