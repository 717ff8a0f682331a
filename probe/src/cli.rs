//! `owlet probe`: run one check now and print the result.
//!
//! The agent's main mounts [`ProbeArgs`] as the `probe` subcommand and exits
//! with [`run`]'s return value (Nagios convention: 0 up, 1 degraded, 2 down,
//! 3 unknown or usage error). Arguments become a [`CheckConfig`] that goes
//! through the same validation and [`crate::run_check`] as configured checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use owlet_proto::v1::{CheckResult, State, check_result::Detail};

use crate::config::{CheckConfig, CheckTypeName, Secret};
use crate::spec::{CheckSpec, unescape};

/// `owlet probe ...`
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub command: ProbeCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum ProbeCommand {
    /// ICMP echo (ping) a host.
    Icmp(IcmpArgs),
    /// Connect to a TCP port, optionally TLS and a banner check.
    Tcp(TcpArgs),
    /// Fetch a URL.
    Http(HttpArgs),
    /// Query an SNMP agent (v2c with --community, v3 with --user).
    Snmp(SnmpArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Give up after this long (e.g. 5s, 1500ms).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub timeout: Duration,
    /// Print the result as one JSON object (the CheckResult event payload).
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct IcmpArgs {
    /// Host name or IP address.
    pub host: String,
    /// Echo requests to send.
    #[arg(long, default_value_t = 3)]
    pub count: u32,
    /// Spacing between echo requests.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub echo_interval: Option<Duration>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args, Debug)]
pub struct TcpArgs {
    /// HOST:PORT (IPv6 as [ADDR]:PORT).
    pub target: String,
    /// Make a TLS handshake after connecting (reports certificate expiry).
    #[arg(long)]
    pub tls: bool,
    /// Text to send after connecting (\r \n \t \xNN escapes allowed).
    #[arg(long)]
    pub send: Option<String>,
    /// Text the server must send (e.g. "SSH-2.0", "220").
    #[arg(long)]
    pub expect: Option<String>,
    /// PEM CA file to trust instead of the system roots (with --tls).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Do not verify the certificate (with --tls). Reported in the result.
    #[arg(long)]
    pub insecure: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args)]
pub struct HttpArgs {
    /// http:// or https:// URL.
    pub url: String,
    /// Acceptable status codes, comma separated (default: any 2xx/3xx).
    #[arg(long, value_delimiter = ',')]
    pub expect_status: Vec<u16>,
    /// Text the body must contain.
    #[arg(long)]
    pub contains: Option<String>,
    /// Regular expression the body must match.
    #[arg(long)]
    pub regex: Option<String>,
    /// HTTP proxy URL (https targets are tunnelled with CONNECT).
    #[arg(long)]
    pub proxy: Option<String>,
    /// PEM CA file to trust instead of the system roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Do not verify the certificate. Reported in the result.
    #[arg(long)]
    pub insecure: bool,
    /// Request method.
    #[arg(long)]
    pub method: Option<String>,
    /// Extra request header "Name: value" (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Do not follow redirects.
    #[arg(long)]
    pub no_follow: bool,
    /// Read at most this many body bytes.
    #[arg(long)]
    pub max_body_bytes: Option<u64>,
    /// "1.1", "2" or "auto".
    #[arg(long)]
    pub http_version: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args)]
pub struct SnmpArgs {
    /// HOST or HOST:PORT (default port 161).
    pub target: String,
    /// v2c community.
    #[arg(long, value_parser = secret)]
    pub community: Option<Secret>,
    /// v3 user name.
    #[arg(long)]
    pub user: Option<String>,
    /// v3 auth protocol: sha256 (recommended), sha224, sha384, sha512, sha, md5.
    #[arg(long)]
    pub auth_proto: Option<String>,
    /// v3 authentication passphrase.
    #[arg(long, value_parser = secret)]
    pub auth_key: Option<Secret>,
    /// v3 privacy protocol: aes.
    #[arg(long)]
    pub priv_proto: Option<String>,
    /// v3 privacy passphrase.
    #[arg(long, value_parser = secret)]
    pub priv_key: Option<Secret>,
    /// OID to GET, numeric (repeatable).
    #[arg(long = "oid")]
    pub oids: Vec<String>,
    /// Subtree to walk (GETBULK).
    #[arg(long, conflicts_with = "oids")]
    pub walk: Option<String>,
    /// uptime, interfaces, cpu or memory.
    #[arg(long, conflicts_with_all = ["oids", "walk"])]
    pub preset: Option<String>,
    /// Retransmissions after the first request.
    #[arg(long)]
    pub retries: Option<u32>,
    #[command(flatten)]
    pub common: CommonArgs,
}

// `--header` values may be credentials: `Debug` shows the names only.
crate::redact::redacted_debug!(HttpArgs {
    url, expect_status, contains, regex, proxy, ca, insecure, method,
    no_follow, max_body_bytes, http_version, common,
} redact { headers });

// Community and keys are [`Secret`]s: their `Debug` shows nothing of them.
crate::redact::redacted_debug!(SnmpArgs {
    target, community, user, auth_proto, auth_key, priv_proto, priv_key,
    oids, walk, preset, retries, common,
} redact {});

fn secret(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret::new(s))
}

fn base(t: CheckTypeName, target: &str, c: &CommonArgs) -> CheckConfig {
    let mut cfg = CheckConfig::new("owlet-probe-cli", t, target);
    cfg.timeout = c.timeout;
    cfg.interval = c.timeout;
    cfg
}

/// Turns command-line arguments into a check config.
pub fn to_config(args: &ProbeArgs) -> (CheckConfig, bool) {
    match &args.command {
        ProbeCommand::Icmp(a) => {
            let mut c = base(CheckTypeName::Icmp, &a.host, &a.common);
            c.count = Some(a.count);
            c.echo_interval = a.echo_interval;
            (c, a.common.json)
        }
        ProbeCommand::Tcp(a) => {
            let mut c = base(CheckTypeName::Tcp, &a.target, &a.common);
            if a.tls {
                c.tls = Some(true);
                c.ca = a.ca.clone();
                c.insecure_skip_verify = a.insecure.then_some(true);
            } else if a.ca.is_some() || a.insecure {
                c.ca = a.ca.clone();
                c.insecure_skip_verify = a.insecure.then_some(true);
            }
            c.send = a
                .send
                .as_ref()
                .map(|s| String::from_utf8_lossy(&unescape(s)).into_owned());
            c.expect = a
                .expect
                .as_ref()
                .map(|s| String::from_utf8_lossy(&unescape(s)).into_owned());
            (c, a.common.json)
        }
        ProbeCommand::Http(a) => {
            let mut c = base(CheckTypeName::Http, &a.url, &a.common);
            c.expect_status = (!a.expect_status.is_empty()).then(|| a.expect_status.clone());
            c.contains = a.contains.clone();
            c.regex = a.regex.clone();
            c.proxy = a.proxy.clone();
            c.ca = a.ca.clone();
            c.insecure_skip_verify = a.insecure.then_some(true);
            c.method = a.method.clone();
            if !a.headers.is_empty() {
                let mut m = BTreeMap::new();
                for h in &a.headers {
                    let (k, v) = h.split_once(':').unwrap_or((h.as_str(), ""));
                    m.insert(k.trim().to_string(), v.trim().to_string());
                }
                c.headers = Some(m);
            }
            c.follow_redirects = a.no_follow.then_some(false);
            c.max_body_bytes = a.max_body_bytes;
            c.http_version = a.http_version.clone();
            (c, a.common.json)
        }
        ProbeCommand::Snmp(a) => {
            let mut c = base(CheckTypeName::Snmp, &a.target, &a.common);
            let v3 = a.user.is_some() || a.auth_key.is_some() || a.auth_proto.is_some();
            c.version = Some(if v3 { "3".into() } else { "2c".into() });
            c.community = a.community.clone();
            c.user = a.user.clone();
            c.auth_proto = a.auth_proto.clone();
            c.auth_key = a.auth_key.clone();
            c.priv_proto = a.priv_proto.clone();
            c.priv_key = a.priv_key.clone();
            c.oids = (!a.oids.is_empty()).then(|| a.oids.clone());
            c.walk = a.walk.clone();
            c.preset = a.preset.clone();
            c.retries = a.retries;
            (c, a.common.json)
        }
    }
}

/// Runs the check and prints the result; returns the process exit code.
pub async fn run(args: ProbeArgs) -> i32 {
    let (cfg, json) = to_config(&args);
    let spec = match CheckSpec::from_config(&cfg) {
        Ok(s) => s,
        Err(errs) => {
            for e in errs {
                let key = match e.field {
                    "target" => "target".to_string(),
                    f => format!("--{}", f.replace('_', "-")),
                };
                eprintln!("owlet probe: {key}: {}", e.message);
            }
            return 3;
        }
    };
    let result = crate::run_check(&spec).await;
    if json {
        match serde_json::to_string(&result) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("owlet probe: cannot render JSON: {e}");
                return 3;
            }
        }
    } else {
        print!("{}", render(&result));
    }
    crate::exit_code(State::try_from(result.result).unwrap_or(State::Unknown))
}

/// Human-readable rendering of a result.
pub fn render(r: &CheckResult) -> String {
    use std::fmt::Write;
    let state = match State::try_from(r.result).unwrap_or(State::Unknown) {
        State::Up => "UP",
        State::Down => "DOWN",
        State::Degraded => "DEGRADED",
        _ => "UNKNOWN",
    };
    let failure = owlet_proto::v1::FailureClass::try_from(r.failure)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("FAILURE_CLASS_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let mut s = String::new();
    let _ = write!(s, "{state}: {}", r.message);
    if failure != "unspecified" && !failure.is_empty() {
        let _ = write!(s, " [{failure}]");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  target    {}", r.target);
    if !r.resolved_address.is_empty() {
        let _ = writeln!(s, "  address   {}", r.resolved_address);
    }
    let _ = writeln!(s, "  duration  {:.1} ms", r.duration_us as f64 / 1000.0);
    let msf = |us: u64| us as f64 / 1000.0;
    match &r.detail {
        Some(Detail::Icmp(d)) => {
            let _ = writeln!(
                s,
                "  echoes    {}/{} received, {:.1}% loss\n  rtt       min {:.3} / avg {:.3} / max {:.3} ms, jitter {:.3} ms",
                d.received,
                d.sent,
                d.loss_percent,
                msf(d.rtt_min_us),
                msf(d.rtt_avg_us),
                msf(d.rtt_max_us),
                msf(d.jitter_us)
            );
        }
        Some(Detail::Tcp(d)) => {
            let _ = writeln!(s, "  connect   {:.3} ms", msf(d.connect_us));
            if d.tls_handshake_us > 0 {
                let _ = writeln!(s, "  tls       {:.3} ms", msf(d.tls_handshake_us));
            }
            if let Some(days) = d.cert_days_left {
                let _ = writeln!(s, "  cert      expires in {days} day(s)");
            }
            if !d.banner.is_empty() {
                let _ = writeln!(s, "  banner    {:?}", d.banner);
            }
        }
        Some(Detail::Http(d)) => {
            let _ = writeln!(s, "  status    {} {}", d.status_code, d.http_version);
            let _ = writeln!(
                s,
                "  timings   dns {:.3} / connect {:.3} / tls {:.3} / first byte {:.3} / total {:.3} ms",
                msf(d.dns_us),
                msf(d.connect_us),
                msf(d.tls_us),
                msf(d.first_byte_us),
                msf(d.total_us)
            );
            let _ = writeln!(s, "  body      {} bytes", d.body_bytes);
            if d.redirects > 0 {
                let _ = writeln!(s, "  redirects {} -> {}", d.redirects, d.final_url);
            }
            if let Some(days) = d.cert_days_left {
                let _ = writeln!(s, "  cert      expires in {days} day(s)");
            }
            if d.tls_verify_skipped {
                let _ = writeln!(s, "  WARNING   TLS certificate verification was DISABLED");
            }
        }
        Some(Detail::Snmp(d)) => {
            let _ = writeln!(
                s,
                "  version   {}{}",
                d.version,
                if d.preset.is_empty() {
                    String::new()
                } else {
                    format!(", preset {}", d.preset)
                }
            );
            for vb in &d.varbinds {
                let _ = writeln!(s, "  {} = {}: {}", vb.oid, vb.value_type, vb.value);
            }
            let mut metrics: Vec<_> = d.metrics.iter().collect();
            metrics.sort_by(|a, b| a.0.cmp(b.0));
            for (k, v) in metrics {
                let _ = writeln!(s, "  metric    {k} = {v}");
            }
        }
        None => {}
    }
    s
}
