//! The `owlet-soc` binary: see `owlet-soc --help` and the README.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use owlet_soc::cli::{CaCommand, Cli, Command, LayoutArg, TenantCommand};
use owlet_soc::portal_cli;
use owlet_soc::{analyst, cli, config, demo, enroll, notify, outputs, query, reports, serve, tail};
use owlet_tls::Identity;

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

fn load_notify(path: &std::path::Path) -> anyhow::Result<config::NotifyFile> {
    config::load_notify(path).map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))
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
            who,
            out,
            soc,
            server_name,
            hw_profile,
            layout,
            days,
        }) => {
            let identity = who.identity()?;
            if let Some(warning) = enroll::check_agent_days(days)? {
                eprintln!("{warning}");
            }
            let layout = match layout {
                LayoutArg::System => enroll::Layout::System,
                LayoutArg::User => enroll::Layout::User,
            };
            let (state_dir, socket) = layout
                .paths(&out)
                .with_context(|| format!("cannot resolve {}", out.display()))?;
            let options = enroll::AgentConfigOptions {
                written_by: enroll::ISSUE,
                soc_address: &soc,
                server_name: server_name.as_deref(),
                hw_profile: hw_profile.name(),
                state_dir: &state_dir,
                socket: &socket,
                status_interval: owlet_ca::agent_config::DEFAULT_STATUS_INTERVAL,
            };
            let issued = enroll::issue_for_days(&who.dir, &identity, &out, &options, days)?;
            if let Some(note) = &issued.server_name_note {
                eprintln!("note: {note}");
            }
            let config = issued.config;
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
        Command::Ca(CaCommand::Renew {
            who,
            out,
            days,
            revoke_old,
        }) => ca_renew(&who.dir, who.identity()?, &out, days, revoke_old),
        Command::Ca(CaCommand::Crl { dir }) => {
            let crl = owlet_ca::publish_crl(&dir)?;
            println!(
                "{} written; name it in soc.toml: [server] crl = \"{}\"",
                crl.display(),
                crl.display()
            );
            Ok(0)
        }
        Command::Ca(CaCommand::Revoke {
            who,
            serial,
            cert,
            reason,
        }) => {
            let selection = match (serial, cert) {
                (Some(serial), _) => owlet_ca::Selection::Serial(serial),
                (None, Some(cert)) => owlet_ca::Selection::CertFile(cert),
                (None, None) => owlet_ca::Selection::All,
            };
            let identity = who.identity()?;
            let done = owlet_ca::revoke(&who.dir, &identity, &selection, reason)?;
            let serials: Vec<&str> = done.revoked.iter().map(|c| c.serial.as_str()).collect();
            println!(
                "Revoked {} certificate{} of {identity}: {}",
                serials.len(),
                if serials.len() == 1 { "" } else { "s" },
                serials.join(", ")
            );
            println!(
                "{} lists {} revoked certificate{}. A serving owlet-soc whose server.crl is this file \
                 reads it within seconds (at once on SIGHUP), refuses these certificates and ends their streams.",
                done.crl.display(),
                done.listed,
                if done.listed == 1 { "" } else { "s" }
            );
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
        Command::Portal { config } => {
            let (settings, log) = owlet_soc::portal_config::settings(&config, load)?;
            owlet_logging::init(&log);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(owlet_soc::portal::run(settings, serve::stop_signal()))?;
            Ok(0)
        }
        Command::User(command) => portal_cli::user(command, load),
        Command::Writer { config, status } => {
            let config = config::load_writer(&config)
                .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
            let writer = config.writer().context("postgres.password_file")?;
            let runtime = tokio::runtime::Runtime::new()?;
            if status {
                let tenants = runtime.block_on(async {
                    let bus = owlet_soc_bus::Bus::connect(&config.bus()).await?;
                    let pg = owlet_soc_bus::writer::connect_postgres(&writer.postgres).await?;
                    owlet_soc_bus::status::tenants(bus.jetstream(), &pg).await
                })?;
                analyst::print_writer(&tenants);
                return Ok(0);
            }
            owlet_logging::init(&config.log);
            runtime.block_on(async {
                let bus = owlet_soc_bus::Bus::connect(&config.bus()).await?;
                tracing::info!(servers = %config.nats.servers.join(","), "owlet-soc writer {} running", env!("CARGO_PKG_VERSION"));
                owlet_soc_bus::writer::run(bus.jetstream().clone(), writer, serve::stop_signal()).await?;
                anyhow::Ok(())
            })?;
            Ok(0)
        }
        Command::Outputs { config, status } => {
            let config = config::load_outputs(&config)
                .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
            let conninfo = role_conninfo(&config.postgres)?;
            let runtime = tokio::runtime::Runtime::new()?;
            if status {
                let rows = runtime.block_on(owlet_soc_outputs::source::postgres::status(
                    &conninfo,
                    &config.outputs,
                ))?;
                analyst::print_outputs(&rows, "outputs.toml");
                return Ok(0);
            }
            owlet_logging::init(&config.log);
            runtime.block_on(outputs::run(conninfo, config.outputs, serve::stop_signal()))?;
            Ok(0)
        }
        Command::Reports { config, status } => {
            let config = config::load_reports(&config)
                .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
            let runtime = tokio::runtime::Runtime::new()?;
            if status {
                let conninfo = role_conninfo(&config.postgres)?;
                runtime.block_on(reports::status(&conninfo))?;
                return Ok(0);
            }
            let conninfo = start_role(&config.postgres, &config.log)?;
            runtime.block_on(reports::run(conninfo, config, serve::stop_signal()))?;
            Ok(0)
        }
        Command::Notify { config, status } => {
            let config = load_notify(&config)?;
            let runtime = tokio::runtime::Runtime::new()?;
            if status {
                let conninfo = role_conninfo(&config.postgres)?;
                runtime.block_on(notify::status(&conninfo))?;
                return Ok(0);
            }
            let conninfo = start_role(&config.postgres, &config.log)?;
            runtime.block_on(notify::run(conninfo, config, serve::stop_signal()))?;
            Ok(0)
        }
        Command::Agents { config, json } => analyst::agents(&load(&config)?, json),
        Command::Query {
            config,
            tenant,
            sql,
            tsv,
        } => analyst::sql(&load(&config)?, &tenant, &sql, tsv),
        Command::Export(args) => analyst::export(&load(&args.config)?, &args),
        Command::Notifications {
            config,
            notify_config,
            tenant,
            since,
            limit,
            json,
        } => {
            let query = analyst::history_query(since.as_deref(), limit)?;
            let (rows, zone) = match notify_config {
                Some(path) => {
                    let config = load_notify(&path)?;
                    let conninfo = role_conninfo(&config.postgres)?;
                    let runtime = tokio::runtime::Runtime::new()?;
                    let rows = runtime.block_on(notify::history(&conninfo, &tenant, &query))?;
                    (rows, config.notify.zone_of(&tenant))
                }
                None => {
                    let config = load(&config)?;
                    let rows = analyst::notifications(&config, &tenant, &query)?;
                    let zone = config.zone_of(&tenant).parse().unwrap_or(chrono_tz::UTC);
                    (rows, zone)
                }
            };
            analyst::print_notifications(&rows, &tenant, zone, json)
        }
        Command::Report {
            config,
            tenant,
            period,
            tz,
            json,
            format,
            lang,
            out,
        } => analyst::report(
            &load(&config)?,
            &analyst::ReportArgs {
                tenant: &tenant,
                period: &period,
                tz: tz.as_deref(),
                format: if json {
                    cli::ReportFormat::Json
                } else {
                    format.unwrap_or(cli::ReportFormat::Text)
                },
                lang,
                out: out.as_deref(),
            },
        ),
        Command::Tenant(TenantCommand::List { config }) => analyst::tenant_list(&load(&config)?),
        Command::Tenant(TenantCommand::Export {
            config,
            tenant,
            out,
        }) => analyst::tenant_export(&load(&config)?, &tenant, &out),
        Command::Tenant(TenantCommand::Delete {
            config,
            tenant,
            yes,
        }) => analyst::tenant_delete(&load(&config)?, &tenant, yes),
        Command::Status { config, json } => analyst::status(&load(&config)?, json),
        Command::Tail {
            config,
            tenant,
            agent,
            kinds,
            severities,
            since,
            until,
            no_follow,
            json,
            from_start,
        } => {
            let config = load(&config)?;
            let path = config.sqlite_path()?;
            let db = query::open_read_only(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let store = analyst::store(&config)?;
            let agents = query::agents(&db, &store)?;
            let now = std::time::SystemTime::now();
            let options = tail::TailOptions {
                tenant,
                agent,
                kinds,
                severities,
                since_us: since
                    .as_deref()
                    .map(|t| analyst::parse_time(t, now))
                    .transpose()?,
                until_us: until
                    .as_deref()
                    .map(|t| analyst::parse_time(t, now))
                    .transpose()?,
                from_start,
                follow: !no_follow && until.is_none(),
                json,
            };
            tail::run(&store, &agents, &options, &mut std::io::stdout().lock())
        }
    }
}

/// `owlet-soc ca renew`: the new pair, and what to do next.
fn ca_renew(
    dir: &std::path::Path,
    identity: Identity,
    out: &std::path::Path,
    days: u32,
    revoke_old: bool,
) -> anyhow::Result<i32> {
    if let Some(warning) = enroll::check_agent_days(days)? {
        eprintln!("{warning}");
    }
    let renewed = owlet_ca::renew(dir, &identity, out, days, revoke_old)?;
    let until = humantime::format_rfc3339_seconds(renewed.paths.not_after.into());
    println!(
        "Agent {identity}: new certificate {} (valid until {until}) and key written to {}{}.",
        renewed.paths.serial,
        out.display(),
        renewed
            .replaced
            .as_deref()
            .map_or(String::new(), |old| format!(", replacing {old}"))
    );
    if !renewed.revoked.is_empty() {
        let serials: Vec<&str> = renewed.revoked.iter().map(|c| c.serial.as_str()).collect();
        println!(
            "Revoked the earlier certificate(s) {} and republished the CRL.",
            serials.join(", ")
        );
    } else if let Some(old) = &renewed.replaced {
        println!(
            "The earlier certificate stays valid until it expires; once the agent runs with the new one: \
             owlet-soc ca revoke --dir {} --tenant {} --agent {} --serial {old} --reason superseded",
            dir.display(),
            identity.tenant,
            identity.agent_id
        );
    }
    println!(
        "On the sensor: put agent.pem and agent.key in place (if {} is not the agent's own directory) \
         and run `owlet reload`: the agent reconnects with the new certificate.",
        out.display()
    );
    Ok(0)
}

/// A PostgreSQL role's start: its connection string (the password read
/// from its file) and its logging.
fn start_role(
    postgres: &config::PostgresSection,
    log: &owlet_logging::LogSection,
) -> anyhow::Result<String> {
    let conninfo = role_conninfo(postgres)?;
    owlet_logging::init(log);
    Ok(conninfo)
}

/// A scaled-out role's connection string, its password read from
/// `password_file`.
fn role_conninfo(postgres: &config::PostgresSection) -> anyhow::Result<String> {
    postgres.conninfo().context("postgres.password_file")
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
