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
    /// The scaled-out SOC's store writer: commits the tenants' JetStream
    /// streams to PostgreSQL, exactly once (see owlet-soc-bus).
    Writer {
        /// The writer configuration ([nats], [postgres], [writer]).
        #[arg(long, short)]
        config: PathBuf,
        /// Print, per tenant, the stream's end, the stored position and
        /// the lag, whether a writer holds the tenant, the days and bytes
        /// PostgreSQL keeps and the agents (silent ones too), and exit.
        #[arg(long)]
        status: bool,
    },
    /// The scaled-out SOC's SIEM outputs: sends the tenants' events from
    /// PostgreSQL to each `[[output]]`, at least once; several processes
    /// split the (output, tenant) pairs, the others stand by.
    Outputs {
        /// The outputs configuration ([postgres], [[output]], [log]).
        #[arg(long, short)]
        config: PathBuf,
        /// Print each output's position, lag, delivered and errors per
        /// tenant (from PostgreSQL) and exit.
        #[arg(long)]
        status: bool,
    },
    /// The scaled-out SOC's hourly rollups and periodic reports: keeps
    /// each tenant's rollups in PostgreSQL (exactly once; several
    /// processes split the tenants, the others stand by) and writes the
    /// due weekly / monthly reports into its `reports` table.
    Reports {
        /// The reports configuration ([postgres], [reports], [tenants.NAME], [log]).
        #[arg(long, short)]
        config: PathBuf,
        /// Print, per tenant, the rollups' position, lag, holder and last
        /// error and the reports kept (from PostgreSQL), and exit.
        #[arg(long)]
        status: bool,
    },
    /// The scaled-out SOC's incident notifications: reads the tenants'
    /// events from PostgreSQL and notifies by `[notify]`'s rules, the
    /// record in PostgreSQL; several processes split the tenants, the
    /// others stand by.
    Notify {
        /// The notify configuration ([postgres], [paths], [tenants.*],
        /// [notify], [log]).
        #[arg(long, short)]
        config: PathBuf,
        /// Print, per tenant, the notifier's position, lag, holder and
        /// last error and the record's open, waiting and failed
        /// notifications (from PostgreSQL), and exit.
        #[arg(long)]
        status: bool,
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
    /// Print stored events, filtered, as they arrive (and history with
    /// --since or --from-start).
    Tail {
        /// The SOC configuration; its [sink] names the database to read.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this agent: TENANT/AGENT or AGENT.
        #[arg(long)]
        agent: Option<String>,
        /// Only these kinds (repeatable): check_result, alert, host_metrics,
        /// flow_record, file_change, agent_status, data_loss, capture_stats.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Only alerts and file changes of these severities (repeatable):
        /// info, warning, critical.
        #[arg(long = "severity", value_name = "SEVERITY")]
        severities: Vec<String>,
        /// Start with events since this time: RFC 3339 ("2026-12-01T09:00:00+09:00")
        /// or an age ("2h", "7days").
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events before this time (RFC 3339 or an age); implies
        /// --no-follow.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Print what is stored and exit instead of waiting for more.
        #[arg(long)]
        no_follow: bool,
        /// JSON lines (proto3 JSON mapping for the event).
        #[arg(long)]
        json: bool,
        /// Start from the first stored event instead of new ones.
        #[arg(long)]
        from_start: bool,
    },
    /// Run read-only SQL over one tenant's event store (the `events` view and
    /// the tables of SCHEMA.md); other tenants are out of reach.
    Query {
        /// The SOC configuration; its [sink] names the database to read.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The tenant whose store the query reads.
        #[arg(long)]
        tenant: String,
        /// The SQL, e.g. "SELECT kind, COUNT(*) FROM events GROUP BY kind".
        sql: String,
        /// Tab-separated values with a header line instead of a table.
        #[arg(long)]
        tsv: bool,
    },
    /// A tenant's weekly or monthly report: availability per check, alerts
    /// and incidents, configuration changes, top talkers, names, host and
    /// sensor health ("nothing found" said for each empty section).
    Report {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// A month ("2026-11") or an ISO week ("2026-W48"), in the tenant's zone.
        #[arg(long)]
        period: String,
        /// Time zone of the report (IANA name or UTC); default: the
        /// tenant's zone from soc.toml, else UTC.
        #[arg(long, value_name = "ZONE")]
        tz: Option<String>,
        /// JSON (raw numbers, for graphs) instead of text; the same as
        /// `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text (default), json (raw numbers), html (a self-contained page)
        /// or pdf (printed by headless Chromium; needs --out).
        #[arg(long, value_enum)]
        format: Option<ReportFormat>,
        /// Language of the html and pdf forms: en or ja.
        #[arg(long, default_value = "en", value_parser = parse_lang)]
        lang: owlet_soc_report::Lang,
        /// Write to this file instead of stdout (written whole or not at all).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// A tenant's notifications: what was sent to whom through which
    /// channel, its attempts, and the time from detection to delivery.
    Notifications {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The scaled-out SOC's notify.toml instead: the record in
        /// PostgreSQL.
        #[arg(long, value_name = "FILE")]
        notify_config: Option<PathBuf>,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only notifications detected since this time (RFC 3339 or an age).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stream one tenant's events as NDJSON, CSV or ECS JSON (constant
    /// memory, no row cap).
    Export(ExportArgs),
    /// Tenants: list with storage and retention, export, delete (the end of
    /// a contract).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Storage per tenant, retention deletions, outputs' lag and errors.
    Status {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the web portal (HTTPS) for analysts and customers: its own
    /// process, reading the store read-only ([portal] in soc.toml), or in
    /// the scaled-out SOC the writer's PostgreSQL (a portal.toml with
    /// [postgres], [portal] and [paths]).
    Portal {
        /// The SOC configuration (soc.toml), or the scaled-out SOC's portal.toml.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Portal users: add, list, reset a password, disable.
    #[command(subcommand)]
    User(UserCommand),
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

/// `owlet-soc user`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a portal user; prints a one-time password and the TOTP
    /// otpauth URI (required for MSSP roles).
    Add {
        /// The SOC configuration; the portal's database is beside [sink] path.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// User name (letters, digits, . _ - @).
        #[arg(long)]
        name: String,
        /// mssp-admin (all tenants), mssp-analyst (its tenants),
        /// customer-admin or customer-viewer (one tenant).
        #[arg(long)]
        role: String,
        /// A tenant of the user (repeatable; none for mssp-admin).
        #[arg(long = "tenant", value_name = "TENANT")]
        tenants: Vec<String>,
        /// Language of the pages: en or ja.
        #[arg(long, default_value = "en")]
        lang: String,
        /// IANA time zone times are shown in (e.g. Asia/Tokyo).
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// Require TOTP of a customer role too (always on for MSSP roles).
        #[arg(long)]
        totp: bool,
    },
    /// List portal users with their roles and tenants.
    List {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Give a user a new one-time password (ends its sessions).
    Passwd {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The user.
        #[arg(long)]
        name: String,
    },
    /// Disable a user (ends its sessions); --enable undoes it.
    Disable {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The user.
        #[arg(long)]
        name: String,
        /// Enable the user again instead.
        #[arg(long)]
        enable: bool,
    },
}

/// `owlet-soc export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The SOC configuration; its [sink] names the database to read.
    #[arg(long, short, default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// The tenant to export.
    #[arg(long)]
    pub tenant: String,
    /// Events at or after this time: RFC 3339 or an age ("30days").
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Events before this time: RFC 3339 or an age.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only these kinds (repeatable).
    #[arg(long = "kind", value_name = "KIND")]
    pub kinds: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: ExportFormat,
    /// Time zone of the times written (IANA name, e.g. Asia/Tokyo, or UTC);
    /// default: the tenant's zone from soc.toml, else UTC.
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `owlet-soc report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Aligned tables for the terminal.
    Text,
    /// The figures as raw numbers (bytes, counts, percent).
    Json,
    /// A self-contained HTML page (style inline, no script).
    Html,
    /// The HTML page printed to PDF by headless Chromium (Debian packages
    /// chromium and fonts-noto-cjk).
    Pdf,
}

fn parse_lang(s: &str) -> Result<owlet_soc_report::Lang, String> {
    owlet_soc_report::Lang::parse(s)
}

/// `owlet-soc export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line: identity, times, and the event (proto3 JSON).
    Ndjson,
    /// One row per event: the typed columns of SCHEMA.md.
    Csv,
    /// One Elastic Common Schema document per line.
    Ecs,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Tenants with their agents, events, storage and retention.
    List {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Copy a tenant's whole store (a consistent snapshot of its database)
    /// and an NDJSON export of every event into DIR, with checksums.
    Export {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// New directory for the export.
        #[arg(long)]
        out: PathBuf,
    },
    /// Delete a tenant's store and its consumers' positions. Stop the
    /// receiver's traffic for it first (revoke its agents).
    Delete {
        /// The SOC configuration.
        #[arg(long, short, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Really delete (there is no undo).
        #[arg(long)]
        yes: bool,
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
