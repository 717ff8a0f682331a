//! Crypto-mining evidence on real traffic between network namespaces
//! (recorded by `netns_mining.sh` with tcpdump): a pool name that a resolver
//! answers with a shared address (a CDN's) marks the flows of the client
//! that got that answer, not every flow to the address; a Stratum login is
//! evidence on any address. What the pool name resolves to on the sensor
//! itself plays no part.
//! Needs root, iproute2 (bridge, veth), tcpdump, dnsmasq and python3
//! (dev/packages.txt).

use owlet_capture::engine::Config;

mod common;

#[test]
fn pool_evidence_comes_from_the_clients_own_traffic() {
    for t in ["ip", "tcpdump", "dnsmasq", "python3", "ss"] {
        common::tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = common::record("netns_mining.sh", dir.path());
    let shared = "10.215.0.9";
    // On the "sensor", the pool name resolves to the shared address.
    let resolved = std::fs::read_to_string(dir.path().join("sensor_resolved.txt")).unwrap();
    assert_eq!(resolved.trim(), shared);

    let cfg = Config {
        pool_names: vec!["xmr.pool.test".into()],
        ..Config::default()
    };
    let run = common::replay(&pcap, cfg);
    assert_eq!(run.report.stats.decode_errors, [0; 4]);
    assert_eq!(run.report.stats.pool_bindings, 1, "one answer, one address");

    // The negative case is not vacuous: B did talk to the shared address.
    let b_flow = run
        .flows
        .iter()
        .find(|f| f.src.to_string() == "10.215.0.3" && f.dst.to_string() == shared)
        .expect("client B's flow to the shared address is in the capture");
    assert!(
        b_flow.packets_in > 0 && b_flow.dst_port == 3333,
        "{b_flow:?}"
    );
    let clients: Vec<String> = run
        .summaries
        .iter()
        .flat_map(|s| s.mining.iter())
        .map(|m| m.client.to_string())
        .collect();
    assert!(!clients.contains(&"10.215.0.3".to_string()), "{clients:?}");

    // One alert per client with evidence, naming it in the message and
    // listing all of it in the `evidence` label.
    let mut found: Vec<(String, String, String)> = run
        .alerts
        .iter()
        .filter(|a| a.name == "crypto_mining")
        .map(|a| {
            let evidence = a.labels.iter().find(|(k, _)| k == "evidence").unwrap();
            (a.subject.clone(), a.message.clone(), evidence.1.clone())
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            (
                "10.215.0.1".to_string(),
                "10.215.0.1 talks to a crypto-mining pool: connection to 10.215.0.9:3333, \
                 which a DNS answer for xmr.pool.test gave it; \
                 DNS query for xmr.pool.test to 10.215.0.2:53"
                    .to_string(),
                "dns_answer xmr.pool.test 10.215.0.9:3333; dns xmr.pool.test 10.215.0.2:53"
                    .to_string()
            ),
            (
                "10.215.0.4".to_string(),
                "10.215.0.4 talks to a crypto-mining pool: Stratum login to 10.215.0.10:10128"
                    .to_string(),
                "stratum login 10.215.0.10:10128".to_string()
            ),
        ]
    );

    // The login's wallet and agent never leave the decoder.
    let json = serde_json::to_string(&run.flows).unwrap();
    assert!(json.contains(r#""stratum_methods":["login"]"#), "{json}");
    assert!(!json.contains("48edf") && !json.contains("XMRig"));
}
