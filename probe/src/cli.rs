//! `owlet probe`: run one check now and print the result.
//!
//! The agent's main mounts [`ProbeArgs`] as the `probe` subcommand and exits
//! with [`run`]'s return value. Arguments become a [`CheckConfig`] that goes
//! through the same validation and [`crate::run_check`] as configured checks.
//!
//! Output follows the Nagios plugin convention, so check_http / check_tcp
//! users can swap it in: the first line is `SERVICE STATUS - message |
//! perfdata` (`HTTP OK - HTTP 200 in 12.0ms | time=0.012000s;0.5;1;0
//! size=612B;;;0`), detail rows follow (only rows with a measured value).
//! Exit codes: 0 OK, 1 WARNING (DEGRADED, or latency over `--warning`), 2
//! CRITICAL (DOWN, or latency over `--critical`), 3 UNKNOWN (the check could
//! not run, or a usage error). Errors name the command-line flag, not the
//! config key.

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
    /// Latency above this is WARNING (exit 1): seconds ("0.5") or a duration
    /// ("500ms"). Latency: ICMP average round trip, HTTP total, else the run.
    #[arg(long, short = 'w', value_parser = threshold)]
    pub warning: Option<Duration>,
    /// Latency above this is CRITICAL (exit 2); same forms as --warning.
    #[arg(long, short = 'c', value_parser = threshold)]
    pub critical: Option<Duration>,
}

/// A latency threshold: plain seconds as Nagios plugins take them ("0.5"),
/// or a duration ("500ms").
fn threshold(s: &str) -> Result<Duration, BadThreshold> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| BadThreshold(s.to_string()));
    }
    humantime::parse_duration(s).map_err(|_| BadThreshold(s.to_string()))
}

/// A `--warning` / `--critical` that is not a latency.
#[derive(Debug, thiserror::Error)]
#[error("\"{0}\" is not a latency; use seconds (0.5) or a duration (500ms)")]
pub struct BadThreshold(String);

/// An `--expect-status` item that is not a code, a class or a range.
#[derive(Debug, thiserror::Error)]
#[error("\"{0}\" is not a status code (200), a class (2xx) or a range (301-399) within 100-599")]
pub struct BadStatusRange(String);

/// One `--expect-status` item: a code (`200`), a class (`2xx`) or a range
/// (`301-399`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub lo: u16,
    pub hi: u16,
}

fn status_range(s: &str) -> Result<StatusRange, BadStatusRange> {
    let t = s.trim();
    let bad = || BadStatusRange(t.to_string());
    let code = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let r = if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
        let d = class.parse::<u16>().map_err(|_| bad())?;
        StatusRange {
            lo: d * 100,
            hi: d * 100 + 99,
        }
    } else if let Some((a, b)) = t.split_once('-') {
        StatusRange {
            lo: code(a).ok_or_else(bad)?,
            hi: code(b).ok_or_else(bad)?,
        }
    } else {
        let c = code(t).ok_or_else(bad)?;
        StatusRange { lo: c, hi: c }
    };
    if r.lo > r.hi || !(100..=599).contains(&r.lo) || !(100..=599).contains(&r.hi) {
        return Err(bad());
    }
    Ok(r)
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
    /// Acceptable statuses, comma separated: codes, classes and ranges, e.g.
    /// "2xx" or "200,301-399" (default: any 2xx/3xx).
    #[arg(long, value_delimiter = ',', value_parser = status_range)]
    pub expect_status: Vec<StatusRange>,
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
            c.expect_status = (!a.expect_status.is_empty()).then(|| {
                let mut codes: Vec<u16> =
                    a.expect_status.iter().flat_map(|r| r.lo..=r.hi).collect();
                codes.sort_unstable();
                codes.dedup();
                codes
            });
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
    let out = execute(&args).await;
    // A closed stdout (`owlet probe ... | head -0`) is not an error worth a panic.
    use std::io::Write;
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    out.code
}

/// What `owlet probe` prints and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs the check; returns what [`run`] prints and its exit code.
pub async fn execute(args: &ProbeArgs) -> Output {
    let (cfg, json) = to_config(args);
    let common = common(args);
    let spec = match CheckSpec::from_config(&cfg) {
        Ok(s) => s,
        Err(errs) => {
            let stderr = errs
                .iter()
                .map(|e| {
                    format!(
                        "owlet probe: {}: {}\n",
                        flag_name(args, e.field),
                        flag_message(&e.message)
                    )
                })
                .collect();
            return Output {
                stdout: String::new(),
                stderr,
                code: 3,
            };
        }
    };
    let result = crate::run_check(&spec).await;
    let verdict = Verdict::of(&result, common.warning, common.critical);
    if json {
        return match serde_json::to_string(&result) {
            Ok(s) => Output {
                stdout: format!("{s}\n"),
                stderr: String::new(),
                code: verdict.code,
            },
            Err(e) => Output {
                stdout: String::new(),
                stderr: format!("owlet probe: cannot render JSON: {e}\n"),
                code: 3,
            },
        };
    }
    Output {
        stdout: render_with(&result, &verdict, common.warning, common.critical),
        stderr: String::new(),
        code: verdict.code,
    }
}

fn common(args: &ProbeArgs) -> &CommonArgs {
    match &args.command {
        ProbeCommand::Icmp(a) => &a.common,
        ProbeCommand::Tcp(a) => &a.common,
        ProbeCommand::Http(a) => &a.common,
        ProbeCommand::Snmp(a) => &a.common,
    }
}

/// The command-line name of a config key, as the user typed it.
fn flag_name(args: &ProbeArgs, field: &str) -> String {
    match field {
        "target" => match args.command {
            ProbeCommand::Icmp(_) => "<HOST>".into(),
            ProbeCommand::Http(_) => "<URL>".into(),
            _ => "<TARGET>".into(),
        },
        "interval" | "timeout" => "--timeout".into(),
        other => config_flag(other).unwrap_or_else(|| format!("--{}", other.replace('_', "-"))),
    }
}

/// Flags whose name differs from the config key.
fn config_flag(key: &str) -> Option<String> {
    Some(
        match key {
            "insecure_skip_verify" => "--insecure",
            "headers" => "--header",
            "follow_redirects" | "max_redirects" => "--no-follow",
            "oids" => "--oid",
            _ => return None,
        }
        .into(),
    )
}

/// Rewrites config keys quoted in a validation message (`` `ca` ``,
/// `` `tls = true` ``) as the flags that set them.
fn flag_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let quoted = &rest[open + 1..open + 1 + len];
        out.push_str(&rest[..open]);
        let (key, value) = match quoted.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (quoted.trim(), None),
        };
        let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        if is_key {
            let flag = config_flag(key).unwrap_or_else(|| format!("--{}", key.replace('_', "-")));
            match value {
                Some("true") | None => out.push_str(&flag),
                Some(v) => {
                    out.push_str(&flag);
                    out.push(' ');
                    out.push_str(v);
                }
            }
        } else {
            out.push('`');
            out.push_str(quoted);
            out.push('`');
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The Nagios status of a result, after latency thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    code: i32,
    word: &'static str,
    /// Why a threshold changed the status, if one did.
    note: Option<String>,
}

impl Verdict {
    fn of(r: &CheckResult, warning: Option<Duration>, critical: Option<Duration>) -> Verdict {
        let state = State::try_from(r.result).unwrap_or(State::Unknown);
        let mut code = crate::exit_code(state);
        let mut note = None;
        if matches!(state, State::Up | State::Degraded)
            && let Some(lat) = latency(r)
        {
            let over = |t: Option<Duration>| t.filter(|t| lat > *t);
            if let Some(c) = over(critical) {
                code = 2;
                note = Some(format!(
                    "latency {} over the critical threshold {}",
                    secs(lat),
                    secs(c)
                ));
            } else if let Some(w) = over(warning)
                && code < 1
            {
                code = 1;
                note = Some(format!(
                    "latency {} over the warning threshold {}",
                    secs(lat),
                    secs(w)
                ));
            }
        }
        let word = match code {
            0 => "OK",
            1 => "WARNING",
            2 => "CRITICAL",
            _ => "UNKNOWN",
        };
        Verdict { code, word, note }
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", trim_float(d.as_secs_f64()))
}

/// `0.5`, `1`, `0.012345` (no trailing zeros, as perfdata thresholds).
fn trim_float(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The latency thresholds apply to: ICMP average round trip (none when no
/// echo came back), HTTP total time, otherwise the run's duration.
fn latency(r: &CheckResult) -> Option<Duration> {
    match &r.detail {
        Some(Detail::Icmp(d)) => (d.received > 0).then(|| Duration::from_micros(d.rtt_avg_us)),
        Some(Detail::Http(d)) if d.total_us > 0 => Some(Duration::from_micros(d.total_us)),
        _ => Some(Duration::from_micros(r.duration_us)),
    }
}

/// Human-readable rendering of a result (no thresholds).
pub fn render(r: &CheckResult) -> String {
    let v = Verdict::of(r, None, None);
    render_with(r, &v, None, None)
}

fn render_with(
    r: &CheckResult,
    v: &Verdict,
    warning: Option<Duration>,
    critical: Option<Duration>,
) -> String {
    use std::fmt::Write;
    let service = match owlet_proto::v1::CheckType::try_from(r.check_type) {
        Ok(owlet_proto::v1::CheckType::Icmp) => "PING",
        Ok(owlet_proto::v1::CheckType::Tcp) => "TCP",
        Ok(owlet_proto::v1::CheckType::Http) => "HTTP",
        Ok(owlet_proto::v1::CheckType::Snmp) => "SNMP",
        _ => "CHECK",
    };
    let failure = owlet_proto::v1::FailureClass::try_from(r.failure)
        .map(|f| {
            f.as_str_name()
                .trim_start_matches("FAILURE_CLASS_")
                .to_lowercase()
        })
        .unwrap_or_default();
    let mut s = String::new();
    // Nagios keeps the first line; `|` would start the perfdata early.
    let message = r.message.replace(['|', '\n'], " ");
    let _ = write!(s, "{service} {} - {message}", v.word);
    if failure != "unspecified" && !failure.is_empty() {
        let _ = write!(s, " [{failure}]");
    }
    if let Some(note) = &v.note {
        let _ = write!(s, "; {note}");
    }
    let _ = writeln!(s, " | {}", perfdata(r, warning, critical));
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
                "  echoes    {}/{} received, {:.1}% loss",
                d.received, d.sent, d.loss_percent
            );
            if d.received > 0 {
                let _ = writeln!(
                    s,
                    "  rtt       min {:.3} / avg {:.3} / max {:.3} ms, jitter {:.3} ms",
                    msf(d.rtt_min_us),
                    msf(d.rtt_avg_us),
                    msf(d.rtt_max_us),
                    msf(d.jitter_us)
                );
            }
        }
        Some(Detail::Tcp(d)) => {
            if d.connect_us > 0 {
                let _ = writeln!(s, "  connect   {:.3} ms", msf(d.connect_us));
            }
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
            if d.status_code > 0 {
                let _ = writeln!(s, "  status    {} {}", d.status_code, d.http_version);
            }
            let phases: Vec<String> = [
                ("dns", d.dns_us),
                ("connect", d.connect_us),
                ("tls", d.tls_us),
                ("first byte", d.first_byte_us),
                ("total", d.total_us),
            ]
            .iter()
            .filter(|(_, us)| *us > 0)
            .map(|(name, us)| format!("{name} {:.3}", msf(*us)))
            .collect();
            if !phases.is_empty() {
                let _ = writeln!(s, "  timings   {} ms", phases.join(" / "));
            }
            if d.status_code > 0 {
                let _ = writeln!(s, "  body      {} bytes", d.body_bytes);
            }
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
            if !d.version.is_empty() {
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
            }
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

/// Nagios performance data: `label=value[unit];warn;crit;min[;max]`.
fn perfdata(r: &CheckResult, warning: Option<Duration>, critical: Option<Duration>) -> String {
    let th = |t: Option<Duration>, scale: f64| {
        t.map(|d| trim_float(d.as_secs_f64() * scale))
            .unwrap_or_default()
    };
    let mut items = Vec::new();
    match &r.detail {
        Some(Detail::Icmp(d)) => {
            if d.received > 0 {
                items.push(format!(
                    "rta={}ms;{};{};0",
                    trim_float(d.rtt_avg_us as f64 / 1000.0),
                    th(warning, 1000.0),
                    th(critical, 1000.0)
                ));
            }
            items.push(format!("pl={}%;;;0;100", trim_float(d.loss_percent)));
        }
        Some(Detail::Http(d)) => {
            let t = if d.total_us > 0 {
                d.total_us
            } else {
                r.duration_us
            };
            items.push(format!(
                "time={}s;{};{};0",
                trim_float(t as f64 / 1e6),
                th(warning, 1.0),
                th(critical, 1.0)
            ));
            items.push(format!("size={}B;;;0", d.body_bytes));
        }
        detail => {
            items.push(format!(
                "time={}s;{};{};0",
                trim_float(r.duration_us as f64 / 1e6),
                th(warning, 1.0),
                th(critical, 1.0)
            ));
            if let Some(Detail::Snmp(d)) = detail {
                let mut metrics: Vec<_> = d.metrics.iter().collect();
                metrics.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in metrics {
                    items.push(format!("'{}'={v}", k.replace('\'', "")));
                }
            }
        }
    }
    items.join(" ")
}
