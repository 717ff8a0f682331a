//! Live capture benchmark driver (bench/capture/live.sh runs it inside a
//! namespace): `live_bench ring|pnet IFACE SECONDS [WORKERS]`.
//!
//! - `ring`: [`owlet_capture::live::Capture`] (TPACKET_V3 rings, fanout,
//!   one engine per worker);
//! - `pnet`: pnet's datalink channel (one `recvfrom` per packet) feeding one
//!   engine, the design card's original choice.
//!
//! Runs SECONDS, then prints one JSON line: packets processed, kernel drops
//! (ring mode), flows created.

use std::time::{Duration, Instant};

use owlet_capture::decode::LinkType;
use owlet_capture::engine::{Config, Engine};
use owlet_capture::live::{Capture, LiveConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: live_bench ring|pnet IFACE SECONDS [WORKERS]");
        std::process::exit(2);
    }
    let iface = args[2].clone();
    let secs: u64 = args[3].parse().unwrap_or(5);
    let workers: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(2);
    match args[1].as_str() {
        "ring" => {
            let cfg = LiveConfig {
                interfaces: vec![iface],
                workers,
                block_size: 1 << 20,
                block_count: 64,
                ..LiveConfig::default()
            };
            let cap = match Capture::start(cfg, |_| {}) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            println!("ready");
            std::thread::sleep(Duration::from_secs(secs));
            let s = cap.stop();
            println!(
                "{{\"mode\":\"ring\",\"packets\":{},\"kernel_packets\":{},\"kernel_drops\":{},\"freezes\":{},\"flows\":{}}}",
                s[0].packets,
                s[0].kernel_packets,
                s[0].kernel_drops,
                s[0].ring_freezes,
                s[0].flows_created
            );
        }
        "pnet" => {
            let Some(nic) = pnet_datalink::interfaces()
                .into_iter()
                .find(|n| n.name == iface)
            else {
                eprintln!("no interface {iface}");
                std::process::exit(1);
            };
            let cfg = pnet_datalink::Config {
                read_timeout: Some(Duration::from_millis(100)),
                read_buffer_size: 65536,
                ..pnet_datalink::Config::default()
            };
            let mut rx = match pnet_datalink::channel(&nic, cfg) {
                Ok(pnet_datalink::Channel::Ethernet(_, rx)) => rx,
                Ok(_) => {
                    eprintln!("unexpected channel type");
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            };
            let mut engine = Engine::new(LinkType::Ethernet, Config::default());
            println!("ready");
            let end = Instant::now() + Duration::from_secs(secs);
            let mut n = 0u64;
            while Instant::now() < end {
                if let Ok(p) = rx.next() {
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(0);
                    engine.process(p, p.len() as u32, ts);
                    n += 1;
                    engine.drain().for_each(drop);
                }
            }
            println!(
                "{{\"mode\":\"pnet\",\"packets\":{n},\"flows\":{}}}",
                engine.stats().flows_created
            );
        }
        m => {
            eprintln!("unknown mode {m}");
            std::process::exit(2);
        }
    }
}
