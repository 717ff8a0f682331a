//! Device-health presets (uptime, interfaces, cpu, memory): which OIDs each
//! asks for and how replies become metrics. Presets only read through a
//! [`Session`]; counters that need a previous run are turned into rates by
//! [`crate::RunMemory`].

use std::collections::BTreeMap;

use super::session::{Session, SnmpFail};
use super::{Oid, Value};

/// Built-in device-health queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Uptime,
    Interfaces,
    Cpu,
    Memory,
}

/// A `preset` that is not one of the built-in queries.
#[derive(Debug, thiserror::Error)]
#[error("\"{0}\" is not a preset; use one of uptime, interfaces, cpu, memory")]
pub struct UnknownPreset(pub String);

impl Preset {
    pub fn parse(s: &str) -> Result<Preset, UnknownPreset> {
        match s {
            "uptime" => Ok(Preset::Uptime),
            "interfaces" => Ok(Preset::Interfaces),
            "cpu" => Ok(Preset::Cpu),
            "memory" => Ok(Preset::Memory),
            _ => Err(UnknownPreset(s.to_string())),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Preset::Uptime => "uptime",
            Preset::Interfaces => "interfaces",
            Preset::Cpu => "cpu",
            Preset::Memory => "memory",
        }
    }
}

pub const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";
pub(super) const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";
pub(super) const IF_DESCR: &str = "1.3.6.1.2.1.2.2.1.2";
pub(super) const IF_OPER_STATUS: &str = "1.3.6.1.2.1.2.2.1.8";
pub(super) const IF_IN_DISCARDS: &str = "1.3.6.1.2.1.2.2.1.13";
pub(super) const IF_IN_ERRORS: &str = "1.3.6.1.2.1.2.2.1.14";
pub(super) const IF_OUT_DISCARDS: &str = "1.3.6.1.2.1.2.2.1.19";
pub(super) const IF_OUT_ERRORS: &str = "1.3.6.1.2.1.2.2.1.20";
pub(super) const IF_HC_IN_OCTETS: &str = "1.3.6.1.2.1.31.1.1.1.6";
pub(super) const IF_HC_OUT_OCTETS: &str = "1.3.6.1.2.1.31.1.1.1.10";
pub(super) const HR_PROCESSOR_LOAD: &str = "1.3.6.1.2.1.25.3.3.1.2";
pub(super) const SS_CPU_IDLE: &str = "1.3.6.1.4.1.2021.11.11.0";
pub(super) const LA_LOAD: [&str; 3] = [
    "1.3.6.1.4.1.2021.10.1.3.1",
    "1.3.6.1.4.1.2021.10.1.3.2",
    "1.3.6.1.4.1.2021.10.1.3.3",
];
/// ssCpuRawUser, ssCpuRawNice, ssCpuRawSystem, ssCpuRawIdle (UCD-SNMP-MIB):
/// [`crate::RunMemory`] turns their deltas into `cpu.busy_percent`.
pub(crate) const SS_CPU_RAW: [&str; 4] = [
    "1.3.6.1.4.1.2021.11.50.0",
    "1.3.6.1.4.1.2021.11.51.0",
    "1.3.6.1.4.1.2021.11.52.0",
    "1.3.6.1.4.1.2021.11.53.0",
];
pub(super) const MEM_TOTAL_REAL: &str = "1.3.6.1.4.1.2021.4.5.0";
pub(super) const MEM_AVAIL_REAL: &str = "1.3.6.1.4.1.2021.4.6.0";
pub(super) const MEM_BUFFER: &str = "1.3.6.1.4.1.2021.4.14.0";
pub(super) const MEM_CACHED: &str = "1.3.6.1.4.1.2021.4.15.0";
/// HOST-RESOURCES-MIB hrStorageTable columns, and the hrStorageRam type:
/// the memory preset's fallback when UCD-SNMP-MIB memory is absent.
pub(super) const HR_STORAGE_TYPE: &str = "1.3.6.1.2.1.25.2.3.1.2";
pub(super) const HR_STORAGE_UNITS: &str = "1.3.6.1.2.1.25.2.3.1.4";
pub(super) const HR_STORAGE_SIZE: &str = "1.3.6.1.2.1.25.2.3.1.5";
pub(super) const HR_STORAGE_USED: &str = "1.3.6.1.2.1.25.2.3.1.6";
pub(super) const HR_STORAGE_RAM: &str = "1.3.6.1.2.1.25.2.1.2";

/// Counter columns of the interfaces preset turned into per-second rates by
/// [`crate::RunMemory`]: (column OID, metric suffix, multiplier).
pub(crate) const RATE_COLUMNS: &[(&str, &str, f64)] = &[
    (IF_HC_IN_OCTETS, "in_bps", 8.0),
    (IF_HC_OUT_OCTETS, "out_bps", 8.0),
    (IF_IN_ERRORS, "in_errors_per_s", 1.0),
    (IF_OUT_ERRORS, "out_errors_per_s", 1.0),
    (IF_IN_DISCARDS, "in_discards_per_s", 1.0),
    (IF_OUT_DISCARDS, "out_discards_per_s", 1.0),
];

pub(super) fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap_or_default()
}

pub(super) async fn run_preset(
    p: Preset,
    s: &mut Session<'_>,
    metrics: &mut BTreeMap<String, f64>,
) -> Result<(Vec<(Oid, Value)>, bool), SnmpFail> {
    let mut out = Vec::new();
    let mut truncated = false;
    match p {
        Preset::Uptime => {
            let vbs = s.get(&[oid(SYS_UPTIME), oid(SYS_NAME)]).await?;
            match vbs.first() {
                Some((_, Value::TimeTicks(t))) => {
                    metrics.insert("uptime_seconds".into(), f64::from(*t) / 100.0);
                }
                _ => return Err(SnmpFail::Error("device did not return sysUpTime.0".into())),
            }
            out = vbs;
        }
        Preset::Interfaces => {
            // sysUpTime.0 lets RunMemory tell a reboot (counters reset) from
            // traffic: no rates are computed across a reboot.
            let vbs = s.get(&[oid(SYS_UPTIME)]).await?;
            if let Some((_, Value::TimeTicks(t))) = vbs.first() {
                metrics.insert("uptime_seconds".into(), f64::from(*t) / 100.0);
            }
            out.extend(vbs.into_iter().filter(|(_, v)| !v.is_exception()));
            let mut up = 0.0;
            let mut down = 0.0;
            for col in [
                IF_DESCR,
                IF_OPER_STATUS,
                IF_HC_IN_OCTETS,
                IF_HC_OUT_OCTETS,
                IF_IN_ERRORS,
                IF_OUT_ERRORS,
                IF_IN_DISCARDS,
                IF_OUT_DISCARDS,
            ] {
                let root = oid(col);
                let (vbs, cut) = s.walk(&root).await?;
                truncated |= cut;
                if col == IF_OPER_STATUS {
                    if vbs.is_empty() {
                        return Err(SnmpFail::Error(
                            "device has no ifOperStatus (IF-MIB not exposed)".into(),
                        ));
                    }
                    for (o, v) in &vbs {
                        if let (Some(idx), Some(st)) = (o.arcs().last(), v.as_u64()) {
                            metrics.insert(format!("if.{idx}.oper_status"), st as f64);
                            if st == 1 {
                                up += 1.0;
                            } else if st == 2 {
                                down += 1.0;
                            }
                        }
                    }
                }
                out.extend(vbs);
            }
            metrics.insert("interfaces.up".into(), up);
            metrics.insert("interfaces.down".into(), down);
        }
        Preset::Cpu => {
            let (loads, cut) = s.walk(&oid(HR_PROCESSOR_LOAD)).await?;
            truncated |= cut;
            let vals: Vec<f64> = loads
                .iter()
                .filter_map(|(_, v)| v.as_u64())
                .map(|v| v as f64)
                .collect();
            if !vals.is_empty() {
                metrics.insert(
                    "cpu.load_percent".into(),
                    vals.iter().sum::<f64>() / vals.len() as f64,
                );
                metrics.insert("cpu.count".into(), vals.len() as f64);
            }
            out.extend(loads);
            let mut ucd = vec![oid(SS_CPU_IDLE)];
            ucd.extend(LA_LOAD.iter().map(|o| oid(o)));
            ucd.extend(SS_CPU_RAW.iter().map(|o| oid(o)));
            let vbs = s.get(&ucd).await?;
            for (i, (o, v)) in vbs.into_iter().enumerate() {
                if v.is_exception() {
                    continue;
                }
                match i {
                    0 => {
                        if let Some(x) = v.as_u64() {
                            metrics.insert("cpu.idle_percent".into(), x as f64);
                        }
                    }
                    1..=3 => {
                        if let Ok(x) = v.render().trim().parse::<f64>() {
                            metrics.insert(format!("cpu.load{}", [1, 5, 15][i - 1]), x);
                        }
                    }
                    _ => {}
                }
                out.push((o, v));
            }
            if metrics.is_empty() {
                return Err(SnmpFail::Error("device exposes neither hrProcessorLoad (HOST-RESOURCES-MIB) nor CPU data in UCD-SNMP-MIB".into()));
            }
        }
        Preset::Memory => {
            let vbs = s
                .get(&[
                    oid(MEM_TOTAL_REAL),
                    oid(MEM_AVAIL_REAL),
                    oid(MEM_BUFFER),
                    oid(MEM_CACHED),
                ])
                .await?;
            let num = |i: usize| vbs.get(i).and_then(|(_, v)| v.as_u64()).map(|x| x as f64);
            let (Some(total), Some(avail)) = (num(0), num(1)) else {
                return hr_storage_memory(s, metrics).await;
            };
            let buffers = num(2).unwrap_or(0.0);
            let cached = num(3).unwrap_or(0.0);
            metrics.insert("mem.total_bytes".into(), total * 1024.0);
            metrics.insert("mem.available_bytes".into(), avail * 1024.0);
            if total > 0.0 {
                let used = (total - avail - buffers - cached).max(0.0);
                metrics.insert("mem.used_percent".into(), used / total * 100.0);
            }
            out = vbs.into_iter().filter(|(_, v)| !v.is_exception()).collect();
        }
    }
    Ok((out, truncated))
}

/// The memory preset from HOST-RESOURCES-MIB: the hrStorageTable rows of
/// type hrStorageRam (sizes in allocation units). Used memory there includes
/// buffers and cache on net-snmp, so `mem.used_percent` reads higher than
/// the UCD-based figure.
pub(super) async fn hr_storage_memory(
    s: &mut Session<'_>,
    metrics: &mut BTreeMap<String, f64>,
) -> Result<(Vec<(Oid, Value)>, bool), SnmpFail> {
    let missing = || {
        SnmpFail::Error(
            "device exposes neither memTotalReal/memAvailReal (UCD-SNMP-MIB) nor an \
             hrStorageRam entry (HOST-RESOURCES-MIB hrStorageTable)"
                .into(),
        )
    };
    let (types, truncated) = s.walk(&oid(HR_STORAGE_TYPE)).await?;
    let ram = oid(HR_STORAGE_RAM);
    let type_col = oid(HR_STORAGE_TYPE);
    let indices: Vec<u32> = types
        .iter()
        .filter(|(_, v)| matches!(v, Value::Oid(t) if *t == ram))
        .filter_map(|(o, _)| match o.arcs()[type_col.arcs().len()..] {
            [i] => Some(i),
            _ => None,
        })
        .take(16)
        .collect();
    if indices.is_empty() {
        return Err(missing());
    }
    let mut ask = Vec::with_capacity(indices.len() * 3);
    for i in &indices {
        for col in [HR_STORAGE_UNITS, HR_STORAGE_SIZE, HR_STORAGE_USED] {
            ask.push(oid(&format!("{col}.{i}")));
        }
    }
    let vbs = s.get(&ask).await?;
    let (mut total, mut used) = (0.0, 0.0);
    for row in vbs.chunks(3) {
        let n = |k: usize| row.get(k).and_then(|(_, v)| v.as_u64()).map(|x| x as f64);
        if let (Some(units), Some(size), Some(u)) = (n(0), n(1), n(2)) {
            total += size * units;
            used += u * units;
        }
    }
    if total <= 0.0 {
        return Err(missing());
    }
    metrics.insert("mem.total_bytes".into(), total);
    metrics.insert("mem.available_bytes".into(), (total - used).max(0.0));
    metrics.insert("mem.used_percent".into(), (used / total * 100.0).min(100.0));
    let mut out: Vec<(Oid, Value)> = types
        .into_iter()
        .filter(|(_, v)| matches!(v, Value::Oid(t) if *t == ram))
        .collect();
    out.extend(vbs.into_iter().filter(|(_, v)| !v.is_exception()));
    Ok((out, truncated))
}
