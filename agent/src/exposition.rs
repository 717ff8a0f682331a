//! Optional Prometheus text exposition (format 0.0.4) of `owlet health`, for
//! sites that already scrape their hosts.
//!
//! Off unless `control.prometheus_listen` is set, and then only on a
//! loopback address (configuration validation refuses anything else): the
//! agent still opens no port reachable from the network. It serves
//! `GET /metrics` and nothing else; requests are read with a size and time
//! limit, and at most [`MAX_CLIENTS`] are answered at once, so a stuck or
//! hostile local client cannot hold the agent.
//!
//! One source for figures: the page is rendered from the same health
//! answer `owlet health --json` prints (asked of the main loop through the
//! control channel), so the two never disagree.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::control::{self, Request};

/// Largest request head accepted.
const MAX_REQUEST: usize = 4096;
/// Time a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes answered at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 4;

/// Serves the exposition on `listener` until shutdown.
pub async fn serve(
    listener: TcpListener,
    requests: mpsc::Sender<Request>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => { warn!(error = %e, "metrics listener accept failed"); continue; }
            },
            _ = shutdown.changed() => break,
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &requests).await {
                debug!(error = %e, "metrics client went away");
            }
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, requests: &mpsc::Sender<Request>) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => {
            let (tx, rx) = oneshot::channel();
            let reply = control::ask(requests, Request::Health(tx), rx).await;
            match serde_json::from_str::<Value>(&reply) {
                Ok(health) if health.get("error").is_none() => ("200 OK", render(&health)),
                _ => ("503 Service Unavailable", format!("{reply}\n")),
            }
        }
        ("GET", _) => (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        ),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends an HTTP request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            return Err(std::io::Error::other("request head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The exposition page for one `owlet health --json` answer.
pub fn render(health: &Value) -> String {
    let mut page = Page::default();
    let version = health["version"].as_str().unwrap_or_default();
    page.gauge(
        "owlet_build_info",
        "Agent version (always 1).",
        &[("version", version)],
        1.0,
    );
    let verdict = match health["verdict"].as_str().unwrap_or_default() {
        "OK" => 0.0,
        "WARNING" => 1.0,
        "CRITICAL" => 2.0,
        _ => 3.0,
    };
    page.gauge(
        "owlet_health_status",
        "owlet health verdict as its Nagios exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        &[],
        verdict,
    );
    let m = &health["metrics"];
    let connected = if m["connection"].as_str() == Some("connected") {
        1.0
    } else {
        0.0
    };
    page.gauge(
        "owlet_soc_connected",
        "1 while the stream to the SOC is up.",
        &[],
        connected,
    );
    page.gauge(
        "owlet_soc_disconnected_seconds",
        "Seconds since the stream to the SOC was last up (0 while connected).",
        &[],
        number(&m["disconnected_seconds"]),
    );
    if let Some(age) = m["last_ack_age_seconds"].as_f64() {
        page.gauge(
            "owlet_soc_last_ack_age_seconds",
            "Seconds since the SOC last acknowledged events.",
            &[],
            age,
        );
    }
    page.gauge(
        "owlet_uptime_seconds",
        "Seconds since the agent started.",
        &[],
        number(&m["uptime_seconds"]),
    );
    page.counter(
        "owlet_events_accepted_total",
        "Events accepted into the spool.",
        &[],
        number(&m["events_accepted"]),
    );
    page.counter(
        "owlet_events_dropped_total",
        "Events lost (each loss is also reported to the SOC).",
        &[],
        number(&m["events_dropped"]),
    );
    page.counter(
        "owlet_soc_reconnects_total",
        "Connections opened to the SOC.",
        &[],
        number(&m["reconnects"]),
    );
    if let Some(errors) = m["errors"].as_object() {
        for (class, count) in errors {
            page.counter(
                "owlet_errors_total",
                "Counted errors, by class.",
                &[("class", class)],
                number(count),
            );
        }
    }
    for (name, help, key) in [
        (
            "owlet_spool_events",
            "Events waiting in the spool.",
            "spool_events",
        ),
        (
            "owlet_spool_bytes",
            "Disk space of the spool, bytes.",
            "spool_bytes",
        ),
        (
            "owlet_spool_max_bytes",
            "The spool's byte bound.",
            "spool_max_bytes",
        ),
        (
            "owlet_spool_oldest_age_seconds",
            "Age of the oldest unacknowledged event.",
            "spool_oldest_age_seconds",
        ),
    ] {
        page.gauge(name, help, &[], number(&health[key]));
    }
    if let Some(collectors) = health["collectors"].as_object() {
        for (name, report) in collectors {
            let running = if report["state"].as_str() == Some("running") {
                1.0
            } else {
                0.0
            };
            page.gauge(
                "owlet_collector_running",
                "1 while the collector runs (0: restarting or stopped).",
                &[("collector", name)],
                running,
            );
        }
        checks(
            &mut page,
            &collectors
                .get("checks")
                .map_or(Value::Null, |c| c["detail"].clone()),
        );
        capture(
            &mut page,
            &collectors
                .get("capture")
                .map_or(Value::Null, |c| c["detail"].clone()),
        );
    }
    page.finish()
}

/// One gauge per check: its state as a number.
fn checks(page: &mut Page, detail: &Value) {
    for check in detail.as_array().into_iter().flatten() {
        let id = check["id"].as_str().unwrap_or_default();
        let kind = check["type"].as_str().unwrap_or_default();
        let state = match check["state"].as_str().unwrap_or_default() {
            "STATE_UP" => 1.0,
            "STATE_DEGRADED" => 2.0,
            "STATE_DOWN" => 3.0,
            _ => 4.0,
        };
        page.gauge(
            "owlet_check_state",
            "Uptime check state: 1 up, 2 degraded, 3 down, 4 unknown.",
            &[("check", id), ("type", kind)],
            state,
        );
    }
}

/// Capture counters per interface.
fn capture(page: &mut Page, detail: &Value) {
    for iface in detail["interfaces"].as_array().into_iter().flatten() {
        let name = iface["interface"].as_str().unwrap_or_default();
        let labels = [("interface", name)];
        for (metric, help, key) in [
            ("owlet_capture_packets_total", "Frames captured.", "packets"),
            (
                "owlet_capture_bytes_total",
                "Frame bytes captured.",
                "bytes",
            ),
            (
                "owlet_capture_kernel_drops_total",
                "Frames the kernel dropped (ring full).",
                "kernel_drops",
            ),
            (
                "owlet_capture_ring_freezes_total",
                "Times the capture ring froze.",
                "ring_freezes",
            ),
            (
                "owlet_capture_flows_created_total",
                "Flows created.",
                "flows_created",
            ),
            (
                "owlet_capture_flows_evicted_total",
                "Flows evicted because the table was full.",
                "flows_evicted",
            ),
            (
                "owlet_capture_link_losses_total",
                "Times the capture interface's link was lost.",
                "link_losses",
            ),
        ] {
            page.counter(metric, help, &labels, number(&iface[key]));
        }
        page.gauge(
            "owlet_capture_flows_active",
            "Flows in the flow table.",
            &labels,
            number(&iface["flows_active"]),
        );
        page.gauge(
            "owlet_capture_link_up",
            "1 while the capture interface is up with carrier, 0 while it is down, without carrier or missing.",
            &labels,
            if iface["link"] == "up" { 1.0 } else { 0.0 },
        );
    }
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(0.0)
}

/// Metric families in first-seen order, each with its HELP and TYPE once.
#[derive(Default)]
struct Page {
    families: Vec<(&'static str, &'static str, &'static str, String)>,
}

impl Page {
    fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.sample(name, help, "gauge", labels, value);
    }

    fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.sample(name, help, "counter", labels, value);
    }

    fn sample(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let index = match self.families.iter().position(|f| f.0 == name) {
            Some(i) => i,
            None => {
                self.families.push((name, help, kind, String::new()));
                self.families.len() - 1
            }
        };
        let lines = &mut self.families[index].3;
        lines.push_str(name);
        if !labels.is_empty() {
            lines.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    lines.push(',');
                }
                let _ = write!(lines, "{key}=\"{}\"", escape(value));
            }
            lines.push('}');
        }
        let _ = writeln!(lines, " {value}");
    }

    fn finish(self) -> String {
        let mut page = String::new();
        for (name, help, kind, lines) in self.families {
            let _ = writeln!(page, "# HELP {name} {help}");
            let _ = writeln!(page, "# TYPE {name} {kind}");
            page.push_str(&lines);
        }
        page
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        serde_json::json!({
            "verdict": "WARNING",
            "reasons": ["1 check down: web"],
            "version": "0.1.0",
            "metrics": {
                "uptime_seconds": 12, "events_accepted": 40, "events_dropped": 0,
                "reconnects": 1, "connection": "connected", "disconnected_seconds": 0,
                "uplink_problem": null, "last_ack_age_seconds": 2,
                "errors": {"uplink_connect": 3}
            },
            "spool_events": 5, "spool_bytes": 1024, "spool_max_bytes": 1048576,
            "spool_oldest_age_seconds": 1, "spool_last_seq": 40,
            "collectors": {
                "checks": {"state": "running", "verdict": "WARNING", "reasons": [],
                    "detail": [{"id": "web \"main\"", "type": "http", "state": "STATE_DOWN"}]},
                "capture": {"state": "restarting", "verdict": "CRITICAL", "reasons": [],
                    "detail": {"interfaces": [{"interface": "eth1", "packets": 10, "bytes": 600,
                        "kernel_drops": 0, "ring_freezes": 0, "flows_active": 2,
                        "flows_created": 3, "flows_evicted": 0, "link": "no_carrier",
                        "link_losses": 2}]}}
            },
            "reload_rejected": null
        })
    }

    #[test]
    fn the_page_carries_health_checks_and_capture() {
        let page = render(&sample());
        for line in [
            "owlet_health_status 1",
            "owlet_soc_connected 1",
            "owlet_events_accepted_total 40",
            "owlet_errors_total{class=\"uplink_connect\"} 3",
            "owlet_spool_bytes 1024",
            "owlet_collector_running{collector=\"capture\"} 0",
            "owlet_collector_running{collector=\"checks\"} 1",
            "owlet_check_state{check=\"web \\\"main\\\"\",type=\"http\"} 3",
            "owlet_capture_packets_total{interface=\"eth1\"} 10",
            "owlet_capture_flows_active{interface=\"eth1\"} 2",
            "owlet_capture_link_up{interface=\"eth1\"} 0",
            "owlet_capture_link_losses_total{interface=\"eth1\"} 2",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "missing {line:?} in\n{page}"
            );
        }
    }

    #[test]
    fn each_family_has_its_help_and_type_once_before_its_samples() {
        let page = render(&sample());
        let mut seen = std::collections::HashSet::new();
        let mut current = "";
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_string()), "{name} declared twice");
                current = name;
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(current),
                    "{line} outside its family {current}"
                );
            }
        }
        assert!(seen.contains("owlet_collector_running"));
    }
}
