//! The `owlet-soc` binary: see `owlet-soc --help` and the README.
#![forbid(unsafe_code)]

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use owlet_soc::cli::{CaCommand, Cli, Command, LayoutArg};
use owlet_soc::{config, demo, enroll, query, serve};

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
            layout,
        }) => {
            let identity = owlet_tls::Identity::new(tenant, agent)?;
            let layout = match layout {
                LayoutArg::System => enroll::Layout::System,
                LayoutArg::User => enroll::Layout::User,
            };
            let (state_dir, socket) = layout
                .paths(&out)
                .with_context(|| format!("cannot resolve {}", out.display()))?;
            let options = enroll::AgentConfigOptions {
                soc_address: &soc,
                state_dir: &state_dir,
                socket: &socket,
                status_interval: "30s",
            };
            let config = enroll::issue(&dir, &identity, &out, &options)?;
            println!(
                "Agent {identity}: certificate, key and {} written.",
                config.display()
            );
            match layout {
                enroll::Layout::System => println!(
                    "Copy {}/* to the sensor's /etc/owlet/ and run: owlet check-config /etc/owlet/owlet.toml",
                    out.display()
                ),
                enroll::Layout::User => println!(
                    "Run it in place: owlet check-config {0} && owlet run --config {0}\n\
                     (state in {1}, control socket {2})",
                    config.display(),
                    state_dir.display(),
                    socket.display()
                ),
            }
            Ok(0)
        }
        Command::Demo {
            agent_bin,
            duration,
            dir,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(demo::run(&agent_bin, duration, dir))
        }
        Command::Serve { config } => {
            let config = load(&config)?;
            owlet_logging::init(&config.log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let receiver = serve::Receiver::bind(config).await?;
                receiver.serve(serve::stop_signal()).await
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
                    "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10}  {:<24}  HOST",
                    "AGENT",
                    "STATE",
                    "VERSION",
                    "LAST SEEN",
                    "CLOCK ms",
                    "DUPLICATES",
                    "LAST SELF-TEST"
                );
                for r in rows {
                    println!(
                        "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10}  {:<24}  {}",
                        format!("{}/{}", r.tenant, r.agent_id),
                        r.state,
                        r.version,
                        r.last_seen,
                        r.clock_offset_ms,
                        r.duplicates_dropped,
                        r.last_selftest.as_deref().unwrap_or("never"),
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

/// `Ok(false)` when stdout's reader went away (`owlet-soc tail | head`).
fn write_or_done(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Arguments without help text, as "owlet-soc ca issue --tenant".
    fn undocumented(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        let path = format!("{path} {}", cmd.get_name());
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} --{}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(format!("{path} {} (subcommand)", sub.get_name()));
            }
            undocumented(sub, &path, missing);
        }
    }

    #[test]
    fn every_flag_of_every_subcommand_has_help() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        undocumented(&cmd, "", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
