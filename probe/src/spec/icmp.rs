//! The ICMP builder: host, echo count and spacing, loss threshold, socket mode.

use std::time::Duration;

use super::parse_host;
use crate::config::{CheckConfig, FieldIssue, IcmpSocketMode, MAX_DURATION};

#[derive(Debug, Clone)]
pub struct IcmpSpec {
    pub host: String,
    pub count: u32,
    pub echo_interval: Duration,
    pub loss_degraded_percent: f64,
    pub socket: IcmpSocketMode,
}

pub(super) fn build_icmp(c: &CheckConfig, errs: &mut Vec<FieldIssue>) -> Option<IcmpSpec> {
    let host = parse_host(&c.target)
        .map_err(|e| errs.push(FieldIssue::new("target", e.to_string())))
        .ok();
    let count = c.count.unwrap_or(3);
    if count == 0 || count > 1000 {
        errs.push(FieldIssue::new(
            "count",
            "must be between 1 and 1000 echo requests per run",
        ));
    }
    let echo_interval = c.echo_interval.unwrap_or(Duration::from_millis(100));
    let spread = echo_interval.checked_mul(count.saturating_sub(1));
    if echo_interval > MAX_DURATION {
        errs.push(FieldIssue::new(
            "echo_interval",
            format!(
                "{} is too long; it must fit (count - 1) times in `timeout`",
                humantime::format_duration(echo_interval)
            ),
        ));
    } else if count > 1 && spread.is_none_or(|s| s >= c.timeout) {
        errs.push(FieldIssue::new(
            "count",
            format!(
                "{count} echoes {} apart do not fit in timeout {}; lower `count` or `echo_interval`, or raise `timeout`",
                humantime::format_duration(echo_interval),
                humantime::format_duration(c.timeout)
            ),
        ));
    }
    let loss = c.loss_degraded_percent.unwrap_or(20.0);
    if !(0.0..=100.0).contains(&loss) {
        errs.push(FieldIssue::new(
            "loss_degraded_percent",
            "must be between 0 and 100",
        ));
    }
    Some(IcmpSpec {
        host: host?,
        count,
        echo_interval,
        loss_degraded_percent: loss,
        socket: c.socket.unwrap_or_default(),
    })
}
