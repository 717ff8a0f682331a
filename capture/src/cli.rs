//! `owlet capture --pcap FILE [--json]`: read a capture file through the
//! flow pipeline and print flow records, interval summaries and alerts.
//!
//! The agent's main mounts [`CaptureArgs`] as the `capture` subcommand and
//! exits with [`run`]'s return value: 0 when the file was read (also when it
//! ends inside a packet: that is reported), 1 when it could not be read.
//! With `--json` every output is one JSON object per line, tagged
//! `{"flow": ...}`, `{"summary": ...}`, `{"alert": ...}`, and last
//! `{"report": ...}`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::{Config, FlowRecord, Output};
use crate::summary::{Summary, SummaryConfig, Talker, proto_name};

/// `owlet capture ...`
#[derive(clap::Args, Debug, Clone)]
pub struct CaptureArgs {
    /// pcap or pcapng file to read (e.g. written by `tcpdump -w FILE`).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Summary interval of capture time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub interval: Duration,
    /// Flows without packets for this long end.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub idle_timeout: Duration,
    /// Longer flows are reported in slices of this length.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub active_timeout: Duration,
    /// Most flows tracked at once (older ones are evicted, and counted).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_flows: usize,
    /// Entries per top list in summaries.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// HTTP paths are cut to this many bytes.
    #[arg(long, default_value_t = 64)]
    pub http_path_max: usize,
    /// A mining pool name (matches subdomains too); repeat for more.
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// A mining pool address; repeat for more.
    #[arg(long = "pool-addr", value_name = "IP")]
    pub pool_addrs: Vec<IpAddr>,
    /// Distinct destinations or ports a source must try to count as a scanner.
    #[arg(long, default_value_t = 50)]
    pub scan_min_targets: u64,
    /// Print only summaries and alerts, not every flow.
    #[arg(long)]
    pub summary_only: bool,
}

impl CaptureArgs {
    /// The engine configuration these arguments describe.
    pub fn config(&self) -> Config {
        Config {
            idle_timeout: self.idle_timeout,
            active_timeout: self.active_timeout,
            max_flows: self.max_flows,
            summary_interval: self.interval,
            http_path_max: self.http_path_max,
            pool_names: self.pools.clone(),
            pool_addrs: self.pool_addrs.clone(),
            summary: SummaryConfig {
                interface: self.pcap.display().to_string(),
                top_n: self.top,
                scan_min_targets: self.scan_min_targets,
                ..SummaryConfig::default()
            },
            ..Config::default()
        }
    }
}

/// Run `owlet capture`; returns the process exit status.
pub fn run(args: CaptureArgs) -> i32 {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let json = args.json;
    let summary_only = args.summary_only;
    let res = crate::pcap::replay(&args.pcap, args.config(), |o| {
        // A closed stdout (`| head`) is not an error worth reporting.
        let _ = print_output(&mut out, &o, json, summary_only);
    });
    match res {
        Ok(report) => {
            if json {
                let _ = writeln!(out, "{}", serde_json::json!({ "report": report }));
            } else {
                let _ = writeln!(
                    out,
                    "read {} packets ({} flow records){}",
                    report.packets,
                    report.stats.flow_records,
                    if report.truncated_file {
                        "; the file ends inside a packet"
                    } else {
                        ""
                    }
                );
            }
            let _ = out.flush();
            0
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("owlet capture: {e}");
            1
        }
    }
}

fn print_output(
    w: &mut impl Write,
    o: &Output,
    json: bool,
    summary_only: bool,
) -> std::io::Result<()> {
    match o {
        Output::Flow(f) if !summary_only => {
            if json {
                writeln!(w, "{}", serde_json::json!({ "flow": f }))
            } else {
                writeln!(w, "{}", flow_line(f))
            }
        }
        Output::Flow(_) | Output::Partial(..) => Ok(()),
        Output::Summary(s) => {
            if json {
                writeln!(w, "{}", serde_json::json!({ "summary": s }))
            } else {
                write!(w, "{}", summary_text(s))
            }
        }
        Output::Alert(a) => {
            if json {
                writeln!(w, "{}", serde_json::json!({ "alert": a }))
            } else {
                writeln!(w, "ALERT {} {}: {}", a.name, a.subject, a.message)
            }
        }
    }
}

/// One line per flow record.
pub fn flow_line(f: &FlowRecord) -> String {
    let ep = |a: IpAddr, p: u16| owlet_proto::endpoint(&a.to_string(), p.into(), f.protocol.into());
    let mut s = format!(
        "{} {} -> {} vlan {} out {}p/{}B in {}p/{}B {:?}",
        proto_name(f.protocol),
        ep(f.src, f.src_port),
        ep(f.dst, f.dst_port),
        f.vlan,
        f.packets_out,
        f.bytes_out,
        f.packets_in,
        f.bytes_in,
        f.end_reason
    );
    if let Some((t, c)) = f.icmp {
        s += &format!(" icmp {t}/{c}");
    }
    if let Some(a) = &f.app {
        if let Some(q) = &a.dns_query {
            s += &format!(" dns {q}");
        }
        if let Some(n) = &a.tls_sni {
            s += &format!(" sni {n}");
        }
        if let (Some(m), Some(p)) = (&a.http_method, &a.http_path) {
            s += &format!(" http {m} {}{p}", a.http_host.as_deref().unwrap_or(""));
        }
        for m in &a.stratum_methods {
            s += &format!(" stratum {m}");
        }
    }
    s
}

fn top(w: &mut String, title: &str, v: &[Talker]) {
    if v.is_empty() {
        return;
    }
    w.push_str(&format!("  {title}:\n"));
    for t in v {
        w.push_str(&format!(
            "    {:<45} {:>10} pkts {:>14} bytes\n",
            t.key, t.packets, t.bytes
        ));
    }
}

/// A summary as a readable block.
pub fn summary_text(s: &Summary) -> String {
    let mut w = format!(
        "summary {} [{} .. {}]: {} packets, {} bytes, {} new flows ({:.1}/s), {} active, {} evicted\n",
        s.interface,
        s.start_ns / 1_000_000_000,
        s.end_ns / 1_000_000_000,
        s.packets,
        s.bytes,
        s.new_flows,
        s.new_flows_per_second,
        s.active_flows,
        s.flows_evicted
    );
    if !s.decode_errors.is_empty() {
        w.push_str(&format!("  decode errors: {:?}\n", s.decode_errors));
    }
    top(&mut w, "protocols", &s.protocol_mix);
    top(&mut w, "top sources by bytes", &s.top_sources_by_bytes);
    top(
        &mut w,
        "top destinations by bytes",
        &s.top_destinations_by_bytes,
    );
    top(&mut w, "top ports by bytes", &s.top_ports_by_bytes);
    top(
        &mut w,
        "top conversations by bytes",
        &s.top_conversations_by_bytes,
    );
    top(&mut w, "top sources by packets", &s.top_sources_by_packets);
    if !s.top_dns_names.is_empty() {
        w.push_str("  top DNS names:\n");
        for n in &s.top_dns_names {
            w.push_str(&format!("    {:<45} {:>10}\n", n.name, n.count));
        }
    }
    for sc in &s.scanners {
        w.push_str(&format!(
            "  scan: {} tried {} ({} hosts, {} ports), {} completed\n",
            sc.source, sc.attempts, sc.destinations, sc.ports, sc.completed
        ));
    }
    for m in &s.mining {
        w.push_str(&format!(
            "  mining: {} -> {} via {:?} {}\n",
            m.client,
            owlet_proto::endpoint(&m.server.to_string(), m.port.into(), 6),
            m.via,
            m.what
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(src: &str, dst: &str, protocol: u8, ports: (u16, u16)) -> FlowRecord {
        FlowRecord::sample(src.parse().unwrap(), dst.parse().unwrap(), protocol, ports)
    }

    #[test]
    fn ipv6_endpoints_are_bracketed_and_icmp_has_no_port() {
        let l = flow_line(&record("fe80::3101", "ff02::1:2", 17, (546, 547)));
        assert!(
            l.starts_with("udp [fe80::3101]:546 -> [ff02::1:2]:547 "),
            "{l}"
        );
        let l = flow_line(&record("10.0.0.1", "10.0.0.2", 6, (40000, 443)));
        assert!(l.starts_with("tcp 10.0.0.1:40000 -> 10.0.0.2:443 "), "{l}");
        let l = flow_line(&record("fe80::3101", "ff02::1", 58, (0, 0)));
        assert!(l.contains(" fe80::3101 -> ff02::1 "), "{l}");
    }
}
