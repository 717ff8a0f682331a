//! What a check remembers between runs: SNMP sysUpTime (reboot detection)
//! and interface counters (rates with counter-wrap handling; a counter that
//! goes down without a plausible 32-bit wrap is a discontinuity and yields no
//! rate for that interval, see [`counter_delta`]).
//!
//! Kept outside [`crate::run_check`] so a single run (the operator tool) and
//! the scheduler share the check code; the scheduler applies this after each
//! run. Memory is bounded by what one reply can hold (a walk is capped).
//! A detected reboot sets `reboot_detected` and prefixes the message; the
//! scheduler turns it into a `device_rebooted` warning alert.

use std::collections::HashMap;
use std::time::Instant;

use owlet_proto::v1::{CheckResult, State, check_result::Detail};

use crate::snmp::{Oid, RATE_COLUMNS, SS_CPU_RAW, SYS_UPTIME};

/// Per-check memory across runs.
#[derive(Debug, Default)]
pub struct RunMemory {
    uptime: Option<(Instant, u32)>,
    /// Last value and SNMP type of each counter.
    counters: HashMap<String, (u64, CounterKind)>,
    counters_at: Option<Instant>,
    cpu_raw: Option<[(u64, CounterKind); 4]>,
}

const TICKS_WRAP: f64 = 4_294_967_296.0;

/// The SNMP type of a sampled counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CounterKind {
    C32,
    C64,
    Other,
}

impl CounterKind {
    fn of(value_type: &str) -> Self {
        match value_type {
            "Counter32" => CounterKind::C32,
            "Counter64" => CounterKind::C64,
            _ => CounterKind::Other,
        }
    }
}

/// Increase of a counter between two samples, or `None` for a discontinuity
/// (no rate is reported for that interval).
///
/// - Counter64 never wraps in practice (2^64 octets is centuries at 100
///   Gbit/s), so a decrease is a reset (agent restart, interface re-created,
///   counter cleared): no sample, never a ~1e19 "rate".
/// - Counter32 wraps after 2^32. A decrease is taken as one wrap only when it
///   is plausible: both values fit in 32 bits and the implied increase is less
///   than half the counter range (RFC 2578 requires sampling faster than
///   that). Anything else is a discontinuity.
/// - Other types (Gauge32, ...) or a type change between samples: a
///   decrease / mismatch is a discontinuity; a 32-bit value above 2^32 - 1
///   is one too.
pub(crate) fn counter_delta(
    prev: u64,
    prev_kind: CounterKind,
    cur: u64,
    kind: CounterKind,
) -> Option<u64> {
    if prev_kind != kind {
        return None;
    }
    if cur >= prev {
        return Some(cur - prev);
    }
    if kind != CounterKind::C32 {
        return None;
    }
    let prev32 = u32::try_from(prev).ok()?;
    let cur32 = u32::try_from(cur).ok()?;
    let delta = cur32.wrapping_sub(prev32);
    (delta < 1 << 31).then_some(u64::from(delta))
}

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
        let raw: Vec<(u64, CounterKind)> = SS_CPU_RAW
            .iter()
            .filter_map(|o| snmp.varbinds.iter().find(|v| v.oid == *o))
            .filter_map(|v| Some((v.value.parse().ok()?, CounterKind::of(&v.value_type))))
            .collect();
        if let Ok(raw) = <[(u64, CounterKind); 4]>::try_from(raw) {
            if let Some(prev) = self.cpu_raw
                && !rebooted
            {
                // Any discontinuity (reset, implausible wrap): no sample.
                let d: Option<Vec<u64>> = raw
                    .iter()
                    .zip(prev)
                    .map(|(&(c, ck), (p, pk))| counter_delta(p, pk, c, ck))
                    .collect();
                if let Some(d) = d {
                    let total = d.iter().fold(0u64, |a, x| a.saturating_add(*x));
                    if total > 0 {
                        snmp.metrics.insert(
                            "cpu.busy_percent".into(),
                            100.0 * (1.0 - d[3] as f64 / total as f64),
                        );
                    }
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
            let kind = CounterKind::of(&vb.value_type);
            if let (Some(&(prev, prev_kind)), Some(secs)) = (self.counters.get(&vb.oid), elapsed)
                && secs > 0.0
                && !rebooted
                && let Some(delta) = counter_delta(prev, prev_kind, cur, kind)
            {
                let index: Vec<String> = oid.arcs()[col.arcs().len()..]
                    .iter()
                    .map(|a| a.to_string())
                    .collect();
                snmp.metrics.insert(
                    format!("if.{}.{name}", index.join(".")),
                    delta as f64 / secs * mult,
                );
            }
            fresh.insert(vb.oid.clone(), (cur, kind));
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
        // A Counter64 going down is a reset, not a wrap: no rate at all.
        assert!(
            !snmp(&b).metrics.contains_key("if.2.in_bps"),
            "{:?}",
            snmp(&b).metrics
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b2 = result(vec![
            (SYS_UPTIME, "50200", "TimeTicks"),
            ("1.3.6.1.2.1.31.1.1.1.6.2", "1400", "Counter64"),
        ]);
        m.apply(&mut b2);
        let rate = snmp(&b2).metrics["if.2.in_bps"];
        assert!(rate > 0.0 && rate.is_finite(), "{rate}");
        let mut c = result(vec![(SYS_UPTIME, "10", "TimeTicks")]);
        m.apply(&mut c);
        assert!(snmp(&c).reboot_detected);
    }

    #[test]
    fn counter_deltas() {
        use CounterKind::*;
        assert_eq!(counter_delta(10, C64, 25, C64), Some(15));
        // Counter64 reset: never a wrap.
        assert_eq!(counter_delta(u64::MAX - 5, C64, 3, C64), None);
        assert_eq!(counter_delta(1000, C64, 3, C64), None);
        // Counter32: plausible wrap near the top.
        assert_eq!(counter_delta(0xffff_fff0, C32, 0x10, C32), Some(0x20));
        // Counter32: implausible "wrap" (value fell by a little) is a reset.
        assert_eq!(counter_delta(1_000_000, C32, 10, C32), None);
        // 32-bit type with a value >= 2^32 (broken agent): no panic, no rate.
        assert_eq!(counter_delta(u64::MAX, C32, 5, C32), None);
        assert_eq!(counter_delta(1 << 40, C32, 5, C32), None);
        // Gauge going down, or a type change: discontinuity.
        assert_eq!(counter_delta(10, Other, 5, Other), None);
        assert_eq!(counter_delta(10, C32, 20, C64), None);
    }

    #[test]
    fn counter64_reset_and_bogus_counter32_never_panic_or_explode() {
        let mut m = RunMemory::default();
        let col = "1.3.6.1.2.1.2.2.1.14.7";
        let mut a = result(vec![(col, "18446744073709551000", "Counter32")]);
        m.apply(&mut a);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut b = result(vec![(col, "3", "Counter32")]);
        m.apply(&mut b);
        assert!(snmp(&b).metrics.is_empty(), "{:?}", snmp(&b).metrics);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut c = result(vec![(col, "4294967290", "Counter32")]);
        m.apply(&mut c);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let mut d = result(vec![(col, "4", "Counter32")]);
        m.apply(&mut d);
        let rate = snmp(&d).metrics["if.7.in_errors_per_s"];
        assert!(rate > 0.0 && rate < 1e6, "{rate}");
    }

    #[test]
    fn cpu_busy_skips_counter_resets() {
        let cpu = |v: [&'static str; 4]| {
            result(
                SS_CPU_RAW
                    .iter()
                    .zip(v)
                    .map(|(o, x)| (*o, x, "Counter32"))
                    .collect(),
            )
        };
        let mut m = RunMemory::default();
        m.apply(&mut cpu(["100", "0", "100", "800"]));
        let mut b = cpu(["200", "0", "200", "1400"]);
        m.apply(&mut b);
        let busy = snmp(&b).metrics["cpu.busy_percent"];
        assert!((busy - 25.0).abs() < 1e-9, "{busy}");
        // ssCpuRawIdle went back a little (counter reset): no sample.
        let mut c = cpu(["300", "0", "300", "5"]);
        m.apply(&mut c);
        assert!(!snmp(&c).metrics.contains_key("cpu.busy_percent"));
    }
}
