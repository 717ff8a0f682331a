//! What a check remembers between runs: SNMP sysUpTime (reboot detection)
//! and interface counters (rates with counter-wrap handling).
//!
//! Kept outside [`crate::run_check`] so a single run (the operator tool) and
//! the scheduler share the check code; the scheduler applies this after each
//! run. Memory is bounded by what one reply can hold (a walk is capped).

use std::collections::HashMap;
use std::time::Instant;

use owlet_proto::v1::{CheckResult, State, check_result::Detail};

use crate::snmp::{Oid, RATE_COLUMNS, SS_CPU_RAW, SYS_UPTIME};

/// Per-check memory across runs.
#[derive(Debug, Default)]
pub struct RunMemory {
    uptime: Option<(Instant, u32)>,
    counters: HashMap<String, u64>,
    counters_at: Option<Instant>,
    cpu_raw: Option<[u64; 4]>,
}

const TICKS_WRAP: f64 = 4_294_967_296.0;

impl RunMemory {
    /// Adds derived values (rates, reboot detection) to a fresh result.
    pub fn apply(&mut self, r: &mut CheckResult) {
        let Some(Detail::Snmp(snmp)) = &mut r.detail else {
            return;
        };
        if r.result != State::Up as i32 && r.result != State::Degraded as i32 {
            return;
        }
        let now = Instant::now();
        let mut rebooted = false;
        if let Some(vb) = snmp
            .varbinds
            .iter()
            .find(|v| v.oid == SYS_UPTIME && v.value_type == "TimeTicks")
            && let Ok(ticks) = vb.value.parse::<u32>()
        {
            if let Some((at, prev)) = self.uptime
                && ticks < prev
            {
                // A genuine 32-bit wrap (after ~497 days) lands near prev + elapsed.
                let expected = f64::from(prev) + now.duration_since(at).as_secs_f64() * 100.0;
                let wrapped = expected >= TICKS_WRAP
                    && (expected - TICKS_WRAP - f64::from(ticks)).abs() < 60_000.0;
                if !wrapped {
                    rebooted = true;
                    snmp.reboot_detected = true;
                    r.message = format!(
                        "device rebooted (sysUpTime went back from {}s to {}s); {}",
                        prev / 100,
                        ticks / 100,
                        r.message
                    );
                }
            }
            self.uptime = Some((now, ticks));
        }
        let raw: Vec<u64> = SS_CPU_RAW
            .iter()
            .filter_map(|o| snmp.varbinds.iter().find(|v| v.oid == *o))
            .filter_map(|v| v.value.parse().ok())
            .collect();
        if let Ok(raw) = <[u64; 4]>::try_from(raw) {
            if let Some(prev) = self.cpu_raw
                && !rebooted
            {
                let d: Vec<u64> = raw
                    .iter()
                    .zip(prev)
                    .map(|(c, p)| c.wrapping_sub(p) & 0xffff_ffff)
                    .collect();
                let total: u64 = d.iter().sum();
                if total > 0 {
                    snmp.metrics.insert(
                        "cpu.busy_percent".into(),
                        100.0 * (1.0 - d[3] as f64 / total as f64),
                    );
                }
            }
            self.cpu_raw = Some(raw);
        }
        let columns: Vec<(Oid, &str, f64)> = RATE_COLUMNS
            .iter()
            .filter_map(|(o, name, mult)| Oid::parse(o).ok().map(|o| (o, *name, *mult)))
            .collect();
        let elapsed = self
            .counters_at
            .map(|t| now.duration_since(t).as_secs_f64());
        let mut fresh = HashMap::new();
        for vb in &snmp.varbinds {
            let Ok(oid) = Oid::parse(&vb.oid) else {
                continue;
            };
            let Some((col, name, mult)) = columns.iter().find(|(c, _, _)| oid.starts_with(c))
            else {
                continue;
            };
            let Ok(cur) = vb.value.parse::<u64>() else {
                continue;
            };
            let wrap: u128 = if vb.value_type == "Counter64" {
                1 << 64
            } else {
                1 << 32
            };
            if let (Some(prev), Some(secs)) = (self.counters.get(&vb.oid), elapsed)
                && secs > 0.0
                && !rebooted
            {
                let delta = if cur >= *prev {
                    u128::from(cur - prev)
                } else {
                    wrap - u128::from(*prev) + u128::from(cur)
                };
                let index: Vec<String> = oid.arcs()[col.arcs().len()..]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                snmp.metrics.insert(
                    format!("if.{}.{name}", index.join(".")),
                    delta as f64 / secs * mult,
                );
            }
            fresh.insert(vb.oid.clone(), cur);
        }
        if !fresh.is_empty() {
            self.counters = fresh;
            self.counters_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use owlet_proto::v1::{SnmpDetail, SnmpVarBind};

    fn result(vbs: Vec<(&str, &str, &str)>) -> CheckResult {
        CheckResult {
            result: State::Up as i32,
            detail: Some(Detail::Snmp(SnmpDetail {
                varbinds: vbs
                    .into_iter()
                    .map(|(o, v, t)| SnmpVarBind {
                        oid: o.into(),
                        value: v.into(),
                        value_type: t.into(),
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn snmp(r: &CheckResult) -> &SnmpDetail {
        match &r.detail {
            Some(Detail::Snmp(s)) => s,
            _ => panic!(),
        }
    }

    #[test]
    fn reboot_and_rates() {
        let mut m = RunMemory::default();
        let mut a = result(vec![
            (SYS_UPTIME, "50000", "TimeTicks"),
            (
                "1.3.6.1.2.1.31.1.1.1.6.2",
                "18446744073709551000",
                "Counter64",
            ),
        ]);
        m.apply(&mut a);
        assert!(!snmp(&a).reboot_detected);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = result(vec![
            (SYS_UPTIME, "50100", "TimeTicks"),
            ("1.3.6.1.2.1.31.1.1.1.6.2", "400", "Counter64"),
        ]);
        m.apply(&mut b);
        assert!(!snmp(&b).reboot_detected);
        let rate = snmp(&b).metrics["if.2.in_bps"];
        assert!(rate > 0.0 && rate.is_finite(), "{rate}");
        let mut c = result(vec![(SYS_UPTIME, "10", "TimeTicks")]);
        m.apply(&mut c);
        assert!(snmp(&c).reboot_detected);
    }
}
