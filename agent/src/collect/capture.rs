//! Live packet capture (`owlet-capture`) as a collector: flow records,
//! one capture summary (top talkers, protocol mix, names, capture health)
//! per interface and interval, and scan / crypto-mining alerts, as events on
//! the bus.
//!
//! Guarantees:
//! * capture never waits on the bus: its worker threads hand events over
//!   with `try_send`; what does not fit is counted (`events_dropped`) and
//!   shown by `owlet health` — packet processing must not stall behind a
//!   slow disk;
//! * the agent's own connection to the SOC is filtered out in the kernel
//!   unless `capture.exclude_soc = false`;
//! * one capture per interface: an interface that does not exist (a wrong
//!   name, or a NIC not there yet) fails alone — the others capture on, a
//!   `capture_link_down` alert names it, `owlet health` warns naming it,
//!   and it is looked for again with backoff and captured once it appears;
//! * a link that goes down (or loses its carrier) is reported the same way
//!   (`capture_link_down`, then `capture_link_up`) and costs no CPU while
//!   down; capture resumes by itself when it is back;
//! * a missing capability, a filter that does not compile or an interface
//!   whose link type owlet cannot decode is a start error that names it;
//!   the supervisor reports it and retries, and the rest of the agent runs on;
//! * a worker thread that dies is a collector failure (restart with backoff);
//! * with `capture.ipfix_collector` set, every flow record is also exported
//!   as IPFIX over UDP; the export never blocks (a full queue drops and
//!   counts) and a collector that is down costs retries, not memory.
//!
//! Health rule: a capture interface that is missing, down or without
//! carrier, kernel drops, ring freezes, dropped events or IPFIX records
//! lost since start make the verdict WARNING (the capture is incomplete).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use owlet_capture::config::LiveConfigError;
use owlet_capture::ipfix::IpfixStats;
use owlet_capture::ipfix::{IpfixConfig, IpfixError, IpfixExporter};
use owlet_capture::live::{
    Capture as LiveCapture, CaptureError, InterfaceStats, LinkState, LiveConfig, StatsHandle,
};
use owlet_capture::{CaptureConfig, Output};
use owlet_proto::v1::{Event, event::Kind};

use super::{Collector, CollectorHealth, Failure, Reload, ReloadReport, StartError};
use crate::config::Config;
use crate::pipeline::bus::EventSender;
use crate::verdict::Verdict;

/// How often a running capture is checked for a dead worker.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why the capture collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureStartError {
    #[error("capture.ipfix_collector {0:?} is not IP:PORT")]
    IpfixAddress(String),
    #[error("IPFIX export to {collector}: {source}")]
    Ipfix {
        collector: String,
        source: IpfixError,
    },
    #[error(transparent)]
    LiveConfig(#[from] LiveConfigError),
    #[error("capture on {interface}: {source}")]
    Open {
        interface: String,
        source: CaptureError,
    },
}

pub struct Capture {
    section: CaptureConfig,
    soc_address: String,
    running: Vec<LiveCapture>,
    /// The IPFIX exporter while running, when `ipfix_collector` is set.
    ipfix: Option<Arc<IpfixExporter>>,
    dropped: Arc<AtomicU64>,
}

impl Capture {
    pub fn new(config: &Config) -> Self {
        Self {
            section: config.capture.clone(),
            soc_address: config.soc.address.clone(),
            running: Vec::new(),
            ipfix: None,
            dropped: Arc::default(),
        }
    }

    /// Whether the configuration asks for capture at all.
    pub fn wanted(config: &Config) -> bool {
        config.capture.enabled()
    }

    /// The live capture the service opens on `interface`
    /// ([`CaptureConfig::live_config`], which `owlet selftest` opens too).
    /// Its SOC name lookup may block for seconds: not on an async worker's
    /// own time (the supervisor starts collectors from the main loop).
    fn live_config(&self, interface: &str) -> Result<LiveConfig, LiveConfigError> {
        let build = || self.section.live_config(&self.soc_address, interface);
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(build)
        } else {
            build()
        }
    }
}

/// Turns engine outputs of one interface into events on the bus.
fn sink(
    interface: String,
    bus: EventSender,
    dropped: Arc<AtomicU64>,
    stats: Arc<std::sync::OnceLock<StatsHandle>>,
    ipfix: Option<Arc<IpfixExporter>>,
) -> impl Fn(Output) + Send + Sync + Clone + 'static {
    let reported_drops = Arc::new(AtomicU64::new(0));
    move |output: Output| {
        let kind = match output {
            Output::Flow(flow) => {
                // Never blocks: a full export queue drops and counts.
                if let Some(exporter) = &ipfix {
                    exporter.export(&flow);
                }
                Kind::FlowRecord(flow.to_proto(&interface))
            }
            Output::Summary(summary) => {
                let total = stats
                    .get()
                    .map(|h| h.snapshot().iter().map(|s| s.kernel_drops).sum())
                    .unwrap_or(0);
                let before = reported_drops.swap(total, Ordering::Relaxed);
                Kind::CaptureStats(summary.to_proto(total.saturating_sub(before)))
            }
            Output::Alert(alert) => Kind::Alert(alert.to_proto()),
            Output::Partial(..) => return,
        };
        let event = Event {
            seq: 0,
            time: Some(owlet_proto::now()),
            kind: Some(kind),
        };
        if bus.try_send(event).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Collector for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }

    fn start(&mut self, bus: EventSender) -> Result<Failure, StartError> {
        if let Some(collector) = &self.section.ipfix_collector {
            let addr = collector
                .parse()
                .map_err(|_| CaptureStartError::IpfixAddress(collector.clone()))?;
            let exporter = IpfixExporter::start(IpfixConfig::new(addr)).map_err(|source| {
                CaptureStartError::Ipfix {
                    collector: collector.clone(),
                    source,
                }
            })?;
            self.ipfix = Some(Arc::new(exporter));
        }
        let mut handles = Vec::new();
        for interface in self.section.interfaces.clone() {
            let config = self
                .live_config(&interface)
                .map_err(CaptureStartError::from)?;
            let stats = Arc::new(std::sync::OnceLock::new());
            let out = sink(
                interface.clone(),
                bus.clone(),
                self.dropped.clone(),
                stats.clone(),
                self.ipfix.clone(),
            );
            let capture = match LiveCapture::start(config, out) {
                Ok(capture) => capture,
                Err(source) => {
                    // Stop what already started before reporting.
                    self.running.drain(..).for_each(|c| drop(c.stop()));
                    self.ipfix = None;
                    return Err(CaptureStartError::Open { interface, source }.into());
                }
            };
            let _ = stats.set(capture.stats_handle());
            handles.push(capture.stats_handle());
            self.running.push(capture);
        }
        Ok(Box::pin(async move {
            loop {
                tokio::time::sleep(WATCH_EVERY).await;
                if let Some(failure) = handles.iter().find_map(StatsHandle::failure) {
                    return format!(
                        "capture worker {} on {} ended: {}",
                        failure.worker, failure.interface, failure.reason
                    );
                }
            }
        }))
    }

    fn reload(&mut self, config: &Config) -> Reload {
        if config.capture == self.section && config.soc.address == self.soc_address {
            return Reload::Applied(ReloadReport::default());
        }
        // New rings and sockets: the few packets that pass during the
        // restart are not seen (the capture summary's counters show it).
        self.section = config.capture.clone();
        self.soc_address = config.soc.address.clone();
        Reload::Restart(ReloadReport {
            changed: vec!["capture".into()],
            ..ReloadReport::default()
        })
    }

    fn stop(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let running = std::mem::take(&mut self.running);
        let ipfix = self.ipfix.take();
        Box::pin(async move {
            // Joining worker threads blocks: not on an async worker.
            let _ = tokio::task::spawn_blocking(move || {
                for capture in running {
                    capture.stop();
                }
                // The workers (and their sinks) are gone: the exporter's
                // last holder sends what it has queued and stops.
                if let Some(exporter) = ipfix.and_then(Arc::into_inner) {
                    exporter.shutdown();
                }
            })
            .await;
        })
    }

    fn health(&self) -> CollectorHealth {
        let stats: Vec<_> = self.running.iter().flat_map(LiveCapture::stats).collect();
        let ipfix = self.ipfix.as_ref().map(|e| e.stats());
        health_of(&stats, ipfix, self.dropped.load(Ordering::Relaxed))
    }
}

/// The capture's verdict from its counters (see the module's health rule).
fn health_of(stats: &[InterfaceStats], ipfix: Option<IpfixStats>, dropped: u64) -> CollectorHealth {
    let mut health = CollectorHealth::ok(serde_json::json!({
        "interfaces": stats,
        "events_dropped": dropped,
        "ipfix": ipfix,
    }));
    for s in stats {
        if !matches!(s.link, LinkState::Up | LinkState::Unknown) {
            health.verdict = Verdict::Warning;
            health.reasons.push(format!(
                "capture interface {}{}",
                s.link.explain(&s.interface),
                s.last_error
                    .as_deref()
                    .filter(|_| s.link == LinkState::Missing || s.link == LinkState::Down)
                    .map_or(String::new(), |e| format!(" (last error: {e})"))
            ));
        }
        if s.kernel_drops > 0 || s.ring_freezes > 0 {
            health.verdict = Verdict::Warning;
            health.reasons.push(format!(
                "capture on {}: {} packets dropped by the kernel, {} ring freezes since start (add capture.workers or narrow capture.filter)",
                s.interface, s.kernel_drops, s.ring_freezes
            ));
        }
    }
    if let Some(ipfix) = &ipfix
        && (ipfix.flows_dropped > 0 || ipfix.records_lost > 0)
    {
        health.verdict = Verdict::Warning;
        health.reasons.push(format!(
            "IPFIX export: {} flows dropped (queue full), {} records lost in sending{}",
            ipfix.flows_dropped,
            ipfix.records_lost,
            ipfix
                .last_error
                .as_deref()
                .map_or(String::new(), |e| format!("; last error: {e}"))
        ));
    }
    if dropped > 0 {
        health.verdict = Verdict::Warning;
        health.reasons.push(format!(
            "capture: {dropped} flow/summary events dropped because the bus was full (the spool disk is too slow)"
        ));
    }
    health
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, link: LinkState) -> InterfaceStats {
        InterfaceStats {
            interface: name.into(),
            link,
            ..InterfaceStats::default()
        }
    }

    #[test]
    fn a_capture_interface_without_link_makes_health_warn_naming_it() {
        let ok = health_of(&[iface("eth1", LinkState::Up)], None, 0);
        assert_eq!(ok.verdict, Verdict::Ok);
        assert!(ok.reasons.is_empty());
        for (link, words) in [
            (LinkState::Down, "eth2 is down"),
            (LinkState::NoCarrier, "eth2 has no carrier"),
            (LinkState::Missing, "eth2 does not exist on this host"),
        ] {
            let h = health_of(
                &[iface("eth1", LinkState::Up), iface("eth2", link)],
                None,
                0,
            );
            assert_eq!(h.verdict, Verdict::Warning, "{link}");
            assert_eq!(h.reasons.len(), 1, "{:?}", h.reasons);
            assert!(h.reasons[0].contains(words), "{}", h.reasons[0]);
            assert_eq!(h.detail["interfaces"][1]["link"], link.name());
        }
    }
}
