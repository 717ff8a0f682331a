//! The `owlet-soc` command line definition, in the library so that tools
//! outside the binary (the package builder's man page and completion
//! generator, `packaging/docgen`) see the same arguments and help text as
//! `owlet-soc --help`. Parsing only: `main.rs` runs the commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{config, enroll};

#[derive(Debug, Parser)]
#[command(name = "owlet-soc", version, about = "owlet SOC receiver")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Certificate authority for agents (small deployments and tests).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Receive agents' streams.
    Serve {
        /// The SOC configuration (written by `owlet-soc ca init`).
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Known agents with their state, last contact and duplicates dropped.
    Agents {
        /// The SOC configuration; its [sink] names the database to read.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// One JSON array of agents instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print stored events as they arrive.
    Tail {
        /// The SOC configuration; its [sink] names the database to read.
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
    /// Everything on loopback: a throwaway CA, a SOC receiver in this
    /// process, and an agent (`--agent-bin`) as a child process, with the SOC's
    /// view live until Ctrl-C or --duration.
    Demo {
        /// The `owlet` agent binary to start (`PATH run --config FILE`).
        #[arg(long, value_name = "PATH")]
        agent_bin: PathBuf,
        /// Stop after this long (e.g. "30s", "2m"); default: until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Keep every file (CA, configs, database, agent log) in DIR instead
        /// of a temporary directory removed at the end.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Where an issued agent keeps its state and control socket.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// The packaged service: /var/lib/owlet and /run/owlet/owlet.sock.
    System,
    /// Under --out (state/, owlet.sock): runs as any user, several agents per
    /// host.
    User,
}

/// `agent.hw_profile` of an issued owlet.toml (the agent's hw-profiles/).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HwProfileArg {
    Small,
    Medium,
    Large,
    /// Detected by the agent on its box at every start.
    Auto,
}

impl HwProfileArg {
    /// The name as owlet.toml spells it.
    pub fn name(self) -> &'static str {
        match self {
            HwProfileArg::Small => "small",
            HwProfileArg::Medium => "medium",
            HwProfileArg::Large => "large",
            HwProfileArg::Auto => "auto",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the agent CA, the SOC server certificate and soc.toml in DIR.
    Init {
        /// Directory for the CA, the SOC certificate and soc.toml (created).
        #[arg(long)]
        dir: PathBuf,
        /// Names (DNS or IP) agents use to reach the SOC; repeatable.
        #[arg(long = "soc-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        soc_names: Vec<String>,
        /// Listen address written into soc.toml.
        #[arg(long, default_value = "127.0.0.1:4443")]
        listen: String,
    },
    /// Issue an agent certificate and a ready owlet.toml (with commented
    /// example checks) into OUT.
    Issue {
        #[command(flatten)]
        who: AgentArgs,
        /// New directory for the certificate, key and owlet.toml.
        #[arg(long)]
        out: PathBuf,
        /// SOC address written into owlet.toml. Its host must be a name the
        /// SOC's certificate carries; if not, and the certificate has only
        /// one name, server_name = that name is written; else give
        /// --server-name.
        #[arg(long, default_value = "localhost:4443")]
        soc: String,
        /// The name the agent checks in the SOC's certificate, when it is
        /// not the host of --soc (must be one the certificate carries).
        #[arg(long, value_name = "NAME")]
        server_name: Option<String>,
        /// Hardware profile written into owlet.toml: `small` fits the
        /// packaged unit's MemoryMax=128M; a bigger one (or auto) needs the
        /// memory drop-in (systemd/owlet.service.d/memory.conf.example).
        #[arg(long, value_enum, default_value = "small")]
        hw_profile: HwProfileArg,
        /// Paths of the agent's state and control socket: `system` for the
        /// packaged service, `user` to keep both under --out.
        #[arg(long, value_enum, default_value = "system")]
        layout: LayoutArg,
        /// Lifetime of the agent certificate in days: at most 825, more
        /// than 397 is warned about. Renew before it ends: `ca renew`.
        #[arg(long, default_value_t = enroll::AGENT_DAYS)]
        days: u32,
    },
    /// Issue a fresh key and certificate for an enrolled agent (same
    /// identity, new serial) into its directory; the agent takes them on
    /// `owlet reload`. The previous certificate stays valid until it
    /// expires unless --revoke-old.
    Renew {
        #[command(flatten)]
        who: AgentArgs,
        /// The agent's directory (its agent.pem / agent.key are replaced),
        /// or a new one to copy to the sensor.
        #[arg(long)]
        out: PathBuf,
        /// Lifetime of the new certificate in days (at most 825).
        #[arg(long, default_value_t = enroll::AGENT_DAYS)]
        days: u32,
        /// Also revoke every earlier certificate of this agent (reason
        /// superseded) and republish the CRL: do this once the agent runs
        /// with the new one.
        #[arg(long)]
        revoke_old: bool,
    },
    /// (Re)publish the CA's CRL (ca.crl) from its register of revoked
    /// certificates: for a CA directory made before owlet-soc wrote one.
    Crl {
        /// The CA directory made by `owlet-soc ca init`.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Revoke an agent's certificates and publish the CRL (ca.crl): a
    /// serving SOC refuses them from then on and ends their live streams.
    Revoke {
        #[command(flatten)]
        who: AgentArgs,
        /// Only the certificate with this serial (hex, as `owlet-soc agents`
        /// shows it); default: every valid certificate of the agent.
        #[arg(long, conflicts_with = "cert")]
        serial: Option<String>,
        /// Only the certificate in this file (also one issued before the CA
        /// kept its register of serials).
        #[arg(long, value_name = "PEM")]
        cert: Option<PathBuf>,
        /// Why, as written into the CRL.
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: owlet_ca::Reason,
    },
}

/// The CA directory and the agent a `ca` command is about.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The CA directory made by `owlet-soc ca init`.
    #[arg(long)]
    pub dir: PathBuf,
    /// Tenant (customer) the agent belongs to; part of its identity.
    #[arg(long)]
    pub tenant: String,
    /// Agent id, unique within the tenant; part of its identity.
    #[arg(long)]
    pub agent: String,
}

impl AgentArgs {
    /// The identity named by --tenant and --agent, validated.
    pub fn identity(&self) -> owlet_tls::Result<owlet_tls::Identity> {
        owlet_tls::Identity::new(&self.tenant, &self.agent)
    }
}
