//! owlet's flows against tshark's on real traffic between two network
//! namespaces (recorded by `netns_traffic.sh` with tcpdump).
//!
//! For every TCP and UDP conversation tshark lists (`-z conv,tcp`,
//! `-z conv,udp`), owlet's flow records give the same packets and frame
//! bytes per direction; DNS query names, the TLS SNI / ALPN and the HTTP
//! request equal tshark's fields; the scan and mining signatures fire.
//! Needs root, iproute2, tcpdump, tshark, dnsmasq, nmap, curl, openssl and
//! python3 (dev/packages.txt).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use owlet_capture::engine::{Config, FlowRecord, Output};
use owlet_capture::summary::{MiningVia, SummaryConfig};

mod common;

fn tshark(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(args)
        .output()
        .expect("tshark runs (apt-get install tshark; see dev/packages.txt)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (proto, "a:port", "b:port") -> [frames a->b, bytes a->b, frames b->a, bytes b->a]
type Convs = BTreeMap<(u8, String, String), [u64; 4]>;

fn tshark_convs(pcap: &Path) -> Convs {
    let text = tshark(pcap, &["-q", "-z", "conv,tcp", "-z", "conv,udp"]);
    let mut proto = 0;
    let mut m = Convs::new();
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = 6;
        } else if line.starts_with("UDP Conversations") {
            proto = 17;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || f[1] != "<->" {
            continue;
        }
        // A <-> B  frames(B->A) N bytes  frames(A->B) N bytes  total...
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        assert_eq!(
            f[5], "bytes",
            "tshark printed bytes in another unit: {line}"
        );
        assert_eq!(
            f[8], "bytes",
            "tshark printed bytes in another unit: {line}"
        );
        let (a, b) = (f[0].to_string(), f[2].to_string());
        let v = [n(6), n(7), n(3), n(4)];
        insert_canonical(&mut m, proto, a, b, v);
    }
    m
}

fn insert_canonical(m: &mut Convs, proto: u8, a: String, b: String, v: [u64; 4]) {
    let (k, v) = if a <= b {
        ((proto, a, b), v)
    } else {
        ((proto, b, a), [v[2], v[3], v[0], v[1]])
    };
    let e = m.entry(k).or_default();
    for i in 0..4 {
        e[i] += v[i];
    }
}

fn owlet_convs(flows: &[FlowRecord]) -> Convs {
    let mut m = Convs::new();
    for f in flows.iter().filter(|f| matches!(f.protocol, 6 | 17)) {
        let a = format!("{}:{}", f.src, f.src_port);
        let b = format!("{}:{}", f.dst, f.dst_port);
        insert_canonical(
            &mut m,
            f.protocol,
            a,
            b,
            [f.packets_out, f.bytes_out, f.packets_in, f.bytes_in],
        );
    }
    m
}

#[test]
fn flows_names_and_signatures_match_tshark_on_real_traffic() {
    for t in [
        "ip", "ethtool", "tcpdump", "tshark", "dnsmasq", "nmap", "curl", "openssl", "python3",
        "ping",
    ] {
        common::tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = common::record("netns_traffic.sh", dir.path());

    let cfg = Config {
        pool_names: vec!["minexmr.example".into()],
        summary: SummaryConfig {
            interface: "test".into(),
            top_n: 20,
            scan_min_targets: 50,
            ..SummaryConfig::default()
        },
        ..Config::default()
    };
    let common::Replayed {
        flows,
        summaries,
        alerts,
        report,
    } = common::replay(&pcap, cfg);
    assert!(!report.truncated_file);
    assert_eq!(
        report.stats.decode_errors, [0; 4],
        "real traffic decodes cleanly"
    );

    // Packets and bytes per direction, per conversation.
    let theirs = tshark_convs(&pcap);
    let mut ours = owlet_convs(&flows);
    // The one fragmented UDP datagram: tshark reassembles it and counts the
    // last fragment's frame; owlet counts every fragment into the flow
    // (as NetFlow does). Checked on its own below.
    let frag_key = ours
        .keys()
        .find(|k| k.2.ends_with(":9999"))
        .cloned()
        .expect("the fragmented UDP flow");
    let frag = ours.remove(&frag_key).unwrap();
    let mut theirs_nofrag = theirs.clone();
    theirs_nofrag.retain(|k, _| !k.2.ends_with(":9999"));
    assert!(
        theirs.len() > 200,
        "the scan alone has 200 conversations: {}",
        theirs.len()
    );
    let diff: Vec<_> = theirs_nofrag
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: tshark {v:?} owlet {:?}", ours.get(k)))
        .chain(
            ours.keys()
                .filter(|k| !theirs_nofrag.contains_key(*k))
                .map(|k| format!("{k:?}: only owlet")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "conversations differ:\n{}",
        diff.join("\n")
    );

    let frag_frames = tshark(
        &pcap,
        &[
            "-Y",
            "ip.proto==17 && (ip.flags.mf==1 || ip.frag_offset>0)",
            "-T",
            "fields",
            "-e",
            "frame.len",
        ],
    );
    let lens: Vec<u64> = frag_frames
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(lens.len() >= 3, "the datagram was fragmented: {lens:?}");
    assert_eq!(
        frag,
        [lens.len() as u64, lens.iter().sum(), 0, 0],
        "every fragment counted into the UDP flow"
    );
    assert_eq!(report.stats.fragments_unattributed, 0);
    assert!(report.stats.fragments_attributed >= 2);

    // DNS query names (queries only) equal tshark's.
    let mut t_names = BTreeMap::<String, u64>::new();
    for l in tshark(
        &pcap,
        &[
            "-Y",
            "dns.flags.response==0",
            "-T",
            "fields",
            "-e",
            "dns.qry.name",
        ],
    )
    .lines()
    {
        *t_names.entry(l.trim().to_string()).or_default() += 1;
    }
    let mut o_names = BTreeMap::<String, u64>::new();
    for s in &summaries {
        for n in &s.top_dns_names {
            *o_names.entry(n.name.clone()).or_default() += n.count;
        }
    }
    assert_eq!(o_names, t_names);
    // Answers: every A record tshark decodes is in some flow's answers.
    let t_answers: BTreeSet<String> =
        tshark(&pcap, &["-Y", "dns.a", "-T", "fields", "-e", "dns.a"])
            .lines()
            .flat_map(|l| {
                l.split(',')
                    .map(|a| format!("A {}", a.trim()))
                    .collect::<Vec<_>>()
            })
            .collect();
    let o_answers: BTreeSet<String> = flows
        .iter()
        .filter_map(|f| f.app.as_ref())
        .flat_map(|a| a.dns_answers.iter().cloned())
        .collect();
    assert!(!t_answers.is_empty());
    assert!(
        t_answers.is_subset(&o_answers),
        "tshark {t_answers:?} owlet {o_answers:?}"
    );

    // TLS: SNI and ALPN equal tshark's, and the ClientHello spanned two segments.
    let t_tls = tshark(
        &pcap,
        &[
            "-Y",
            "tls.handshake.type==1",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "tls.handshake.extensions_alpn_str",
            "-e",
            "tcp.segment.count",
        ],
    );
    let t_tls: Vec<&str> = t_tls.lines().collect();
    assert_eq!(t_tls.len(), 1, "one ClientHello: {t_tls:?}");
    let parts: Vec<&str> = t_tls[0].split('|').collect();
    assert!(
        parts[2].parse::<u32>().unwrap_or(1) >= 2,
        "ClientHello in one segment: MTU too big? {parts:?}"
    );
    let tls_flows: Vec<_> = flows
        .iter()
        .filter_map(|f| f.app.as_ref())
        .filter(|a| a.tls_sni.is_some())
        .collect();
    assert_eq!(tls_flows.len(), 1);
    assert_eq!(tls_flows[0].tls_sni.as_deref(), Some(parts[0]));
    assert_eq!(tls_flows[0].tls_alpn.join(","), parts[1]);

    // HTTP request: method, Host, path without the query string.
    let t_http = tshark(
        &pcap,
        &[
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "http.request.method",
            "-e",
            "http.host",
            "-e",
            "http.request.uri.path",
        ],
    );
    let t_http: Vec<&str> = t_http.trim().split('|').collect();
    let http = flows
        .iter()
        .filter_map(|f| f.app.as_ref())
        .find(|a| a.http_method.is_some())
        .expect("an HTTP flow");
    assert_eq!(
        [
            http.http_method.as_deref(),
            http.http_host.as_deref(),
            http.http_path.as_deref()
        ],
        [Some(t_http[0]), Some(t_http[1]), Some(t_http[2])]
    );

    // Stratum method names, and the mining alert (DNS name on the pool list,
    // the flows of the client the answer went to, Stratum).
    let stratum = flows
        .iter()
        .find(|f| f.dst_port == 3333)
        .and_then(|f| f.app.as_ref())
        .expect("stratum flow");
    assert_eq!(
        stratum.stratum_methods,
        vec!["mining.subscribe", "mining.authorize"]
    );
    let mining: Vec<_> = summaries.iter().flat_map(|s| s.mining.iter()).collect();
    assert!(
        mining
            .iter()
            .any(|m| m.via == MiningVia::Dns && m.what == "pool.minexmr.example")
    );
    assert!(mining.iter().any(|m| m.via == MiningVia::Stratum));
    // The answer for the pool name bound 10.213.0.2 to this client: its
    // Stratum flow there is evidence through the answer too; its HTTP and
    // TLS flows to the same address name servers of their own and are not.
    let by_answer: Vec<u16> = mining
        .iter()
        .filter(|m| m.via == MiningVia::DnsAnswer)
        .map(|m| m.port)
        .collect();
    assert!(by_answer.contains(&3333), "{mining:?}");
    assert!(
        !by_answer.contains(&8080) && !by_answer.contains(&8443),
        "{mining:?}"
    );
    assert!(
        alerts
            .iter()
            .any(|a| a.name == "crypto_mining" && a.subject == "10.213.0.1")
    );

    // The SYN scan: flagged, with the scanner as subject; nothing else is.
    let scans: Vec<_> = alerts
        .iter()
        .filter(|a| a.name == "scan_detected")
        .collect();
    assert_eq!(scans.len(), 1, "{alerts:?}");
    assert_eq!(scans[0].subject, "10.213.0.1");
    let sc = summaries
        .iter()
        .flat_map(|s| s.scanners.iter())
        .next()
        .unwrap();
    assert!(sc.ports >= 200 && sc.completed <= 10, "{sc:?}");

    // The same capture as pcapng (editcap): the same records, timestamps included.
    let ng = dir.path().join("traffic.pcapng");
    let st = Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&pcap)
        .arg(&ng)
        .status()
        .unwrap();
    assert!(st.success(), "editcap failed");
    let mut ng_flows = Vec::new();
    owlet_capture::pcap::replay(&ng, Config::default(), |o| {
        if let Output::Flow(f) = o {
            ng_flows.push(f);
        }
    })
    .unwrap();
    let strip = |v: &[FlowRecord]| -> Vec<(String, u64, u64, u64, u64)> {
        let mut v: Vec<_> = v
            .iter()
            .map(|f| {
                (
                    format!(
                        "{}:{}>{}:{}/{}",
                        f.src, f.src_port, f.dst, f.dst_port, f.protocol
                    ),
                    f.packets_out,
                    f.bytes_in,
                    f.first_ns,
                    f.last_ns,
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(strip(&ng_flows), strip(&flows));

    // ICMP: the echo flows carry type 8 and are counted.
    assert!(
        flows
            .iter()
            .any(|f| f.protocol == 1 && f.icmp == Some((8, 0)) && f.packets_out >= 3)
    );
}
