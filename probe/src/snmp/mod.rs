//! SNMP checks: v2c and v3 (USM authNoPriv / authPriv), GET, WALK (GETBULK)
//! and device-health presets.
//!
//! One UDP socket per run, connected to the target so only its datagrams are
//! read. Replies are matched by request-id (v2c) or msgID (v3); anything
//! malformed becomes a PROTOCOL failure, never a panic. v2c agents silently
//! drop requests with a wrong community, so for v2c a timeout's message says
//! to check the community too (there is no way to tell the two apart).
//! Secrets never appear in messages: only user names and protocol names do.
//!
//! Results are bounded: a walk stops at [`MAX_WALK_VARBINDS`], each rendered
//! value is cut at [`MAX_VALUE_BYTES`] and one run's varbinds and metrics
//! together stay within [`MAX_RESULT_BYTES`]; any cut says "(truncated ...)"
//! in the message.

pub mod ber;
pub mod usm;
pub mod v3;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use owlet_proto::v1::{FailureClass, SnmpDetail, SnmpVarBind, check_result::Detail};
use tokio::net::UdpSocket;

pub use ber::{Oid, Value};
pub use usm::{AuthProto, PrivProto, UsmUser};

use crate::spec::{CheckSpec, SnmpQuery, SnmpSpec, SnmpVersion};
use crate::{Outcome, resolve};
use ber::{PDU_GET, PDU_GETBULK, PDU_REPORT, PDU_RESPONSE, Pdu};

/// Most varbinds a walk collects before stopping (bounded memory).
pub const MAX_WALK_VARBINDS: usize = 10_000;
const BULK_REPETITIONS: i64 = 25;
/// Most bytes of rendered varbinds and metrics one run puts into its
/// `CheckResult`, far below the 4 MiB wire limit of one event.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;
/// Most bytes of one rendered value; longer ones are cut and marked.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Appended to a value cut at [`MAX_VALUE_BYTES`].
pub const TRUNCATED_MARK: &str = "...[truncated]";

/// Built-in device-health queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Uptime,
    Interfaces,
    Cpu,
    Memory,
}

impl Preset {
    pub fn parse(s: &str) -> Result<Preset, String> {
        match s {
            "uptime" => Ok(Preset::Uptime),
            "interfaces" => Ok(Preset::Interfaces),
            "cpu" => Ok(Preset::Cpu),
            "memory" => Ok(Preset::Memory),
            _ => Err(format!(
                "\"{s}\" is not a preset; use one of uptime, interfaces, cpu, memory"
            )),
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
const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";
const IF_DESCR: &str = "1.3.6.1.2.1.2.2.1.2";
const IF_OPER_STATUS: &str = "1.3.6.1.2.1.2.2.1.8";
const IF_IN_DISCARDS: &str = "1.3.6.1.2.1.2.2.1.13";
const IF_IN_ERRORS: &str = "1.3.6.1.2.1.2.2.1.14";
const IF_OUT_DISCARDS: &str = "1.3.6.1.2.1.2.2.1.19";
const IF_OUT_ERRORS: &str = "1.3.6.1.2.1.2.2.1.20";
const IF_HC_IN_OCTETS: &str = "1.3.6.1.2.1.31.1.1.1.6";
const IF_HC_OUT_OCTETS: &str = "1.3.6.1.2.1.31.1.1.1.10";
const HR_PROCESSOR_LOAD: &str = "1.3.6.1.2.1.25.3.3.1.2";
const SS_CPU_IDLE: &str = "1.3.6.1.4.1.2021.11.11.0";
const LA_LOAD: [&str; 3] = [
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
const MEM_TOTAL_REAL: &str = "1.3.6.1.4.1.2021.4.5.0";
const MEM_AVAIL_REAL: &str = "1.3.6.1.4.1.2021.4.6.0";
const MEM_BUFFER: &str = "1.3.6.1.4.1.2021.4.14.0";
const MEM_CACHED: &str = "1.3.6.1.4.1.2021.4.15.0";
/// HOST-RESOURCES-MIB hrStorageTable columns, and the hrStorageRam type:
/// the memory preset's fallback when UCD-SNMP-MIB memory is absent.
const HR_STORAGE_TYPE: &str = "1.3.6.1.2.1.25.2.3.1.2";
const HR_STORAGE_UNITS: &str = "1.3.6.1.2.1.25.2.3.1.4";
const HR_STORAGE_SIZE: &str = "1.3.6.1.2.1.25.2.3.1.5";
const HR_STORAGE_USED: &str = "1.3.6.1.2.1.25.2.3.1.6";
const HR_STORAGE_RAM: &str = "1.3.6.1.2.1.25.2.1.2";

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

fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap_or_default()
}

/// Why an SNMP exchange failed.
#[derive(Debug)]
pub(crate) enum SnmpFail {
    Timeout(String),
    Io(std::io::Error),
    Auth(String),
    Error(String),
    Protocol(String),
}

impl SnmpFail {
    fn into_outcome(self) -> Outcome {
        match self {
            SnmpFail::Timeout(m) => Outcome::down(FailureClass::Timeout, m),
            SnmpFail::Io(e) => {
                Outcome::failed(crate::classify_io(&e), format!("SNMP request failed: {e}"))
            }
            SnmpFail::Auth(m) => Outcome::down(FailureClass::SnmpAuth, m),
            SnmpFail::Error(m) => Outcome::down(FailureClass::SnmpError, m),
            SnmpFail::Protocol(m) => Outcome::down(FailureClass::Protocol, m),
        }
    }
}

fn error_status_name(s: i64) -> &'static str {
    match s {
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        7 => "wrongType",
        13 => "resourceUnavailable",
        16 => "authorizationError",
        _ => "error",
    }
}

struct Engine {
    id: Vec<u8>,
    boots: u32,
    time: u32,
    at: Instant,
    keys: usm::LocalKeys,
}

enum Security<'a> {
    V2c(&'a [u8]),
    V3 {
        user: &'a UsmUser,
        engine: Option<Engine>,
    },
}

struct Session<'a> {
    sock: UdpSocket,
    deadline: Instant,
    attempt: Duration,
    retries: u32,
    security: Security<'a>,
    hint: Hint,
}

#[derive(Clone, Copy)]
enum Hint {
    None,
    V2c,
    V3Priv,
}

/// Sends `msg` and waits for a datagram `accept` recognises, retrying.
async fn exchange<T>(
    s: &Session<'_>,
    msg: &[u8],
    mut accept: impl FnMut(&[u8]) -> Option<Result<T, SnmpFail>>,
) -> Result<T, SnmpFail> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..=s.retries {
        let now = Instant::now();
        if now >= s.deadline {
            break;
        }
        let until = (now + s.attempt).min(s.deadline);
        s.sock.send(msg).await.map_err(SnmpFail::Io)?;
        loop {
            match tokio::time::timeout_at(until.into(), s.sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(SnmpFail::Io(e)),
                Ok(Ok(n)) => {
                    if let Some(r) = accept(&buf[..n]) {
                        return r;
                    }
                }
            }
        }
    }
    Err(SnmpFail::Timeout(match s.hint {
        Hint::V2c => "no SNMP reply (v2c agents silently drop requests with a wrong community: check the community, the address and ACLs)".into(),
        Hint::V3Priv => "no SNMP reply (agents such as net-snmp silently drop requests they cannot decrypt: check the privacy key too)".into(),
        Hint::None => "no SNMP reply within the timeout".into(),
    }))
}

/// Security level a v3 reply must have. Only a Report may come back
/// unauthenticated (RFC 3414 3.1.2: e.g. unknown user or wrong digest); any
/// other PDU to an authenticated request must carry the auth flag (its HMAC
/// was verified before this is called), and to an encrypted request also
/// the priv flag with encrypted data. Anything less could be forged by
/// anyone on the path, so it is an SNMP auth failure, never accepted data.
fn reply_security(
    req_flags: u8,
    reply_flags: u8,
    encrypted: bool,
    tag: u8,
    user: &UsmUser,
) -> Result<(), SnmpFail> {
    if reply_flags & v3::FLAG_PRIV != 0 && reply_flags & v3::FLAG_AUTH == 0 {
        return Err(SnmpFail::Protocol(
            "reply has the privacy flag without the authentication flag".into(),
        ));
    }
    if (reply_flags & v3::FLAG_PRIV != 0) != encrypted {
        return Err(SnmpFail::Protocol(
            "reply's privacy flag does not match its data".into(),
        ));
    }
    if tag == PDU_REPORT {
        return Ok(());
    }
    if req_flags & v3::FLAG_AUTH != 0 && reply_flags & v3::FLAG_AUTH == 0 {
        return Err(SnmpFail::Auth(format!(
            "agent answered without {} authentication (a forged or misconfigured reply); check the agent's security level for user {:?}",
            user.auth.name(),
            user.user
        )));
    }
    if req_flags & v3::FLAG_PRIV != 0 && reply_flags & v3::FLAG_PRIV == 0 {
        return Err(SnmpFail::Auth(format!(
            "agent answered an encrypted request in cleartext; check the agent's privacy settings for user {:?}",
            user.user
        )));
    }
    Ok(())
}

fn report_failure(p: &Pdu) -> (&'static str, u32) {
    let usm_stats = oid("1.3.6.1.6.3.15.1.1");
    for (o, _) in &p.varbinds {
        if o.starts_with(&usm_stats) {
            let which = o.arcs().get(usm_stats.arcs().len()).copied().unwrap_or(0);
            return match which {
                1 => (
                    "the user does not support this security level (usmStatsUnsupportedSecLevels): check priv settings",
                    1,
                ),
                2 => ("not in time window", 2),
                3 => (
                    "unknown SNMPv3 user (usmStatsUnknownUserNames): check `user`",
                    3,
                ),
                4 => ("unknown engine ID", 4),
                5 => (
                    "wrong SNMPv3 authentication key or protocol (usmStatsWrongDigests)",
                    5,
                ),
                6 => (
                    "wrong SNMPv3 privacy key or protocol (usmStatsDecryptionErrors)",
                    6,
                ),
                _ => ("SNMPv3 report", 0),
            };
        }
    }
    ("unexpected SNMPv3 report", 0)
}

impl Session<'_> {
    async fn request(
        &mut self,
        tag: u8,
        oids: &[Oid],
        non_rep: i64,
        max_rep: i64,
    ) -> Result<Pdu, SnmpFail> {
        let request_id = rand::random::<i32>() & 0x7fff_ffff;
        let pdu = Pdu {
            tag,
            request_id,
            error_status: non_rep,
            error_index: max_rep,
            varbinds: oids.iter().map(|o| (o.clone(), Value::Null)).collect(),
        };
        let reply = match &self.security {
            Security::V2c(community) => {
                let msg = ber::encode_v2c(community, &pdu);
                exchange(self, &msg, |b| match ber::decode_v2c(b) {
                    Err(e) => Some(Err(SnmpFail::Protocol(e.to_string()))),
                    Ok((_, _, p)) if p.request_id == request_id && p.tag == PDU_RESPONSE => {
                        Some(Ok(p))
                    }
                    Ok(_) => None,
                })
                .await?
            }
            Security::V3 { .. } => self.v3_request(pdu).await?,
        };
        if reply.error_status != 0 {
            let name = error_status_name(reply.error_status);
            let at = usize::try_from(reply.error_index)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| reply.varbinds.get(i))
                .map(|(o, _)| format!(" at {o}"))
                .unwrap_or_default();
            let msg = format!("agent answered {name}{at}");
            return Err(if reply.error_status == 16 || reply.error_status == 6 {
                SnmpFail::Auth(msg)
            } else {
                SnmpFail::Error(msg)
            });
        }
        Ok(reply)
    }

    async fn discover(&mut self) -> Result<(), SnmpFail> {
        let Security::V3 { user, .. } = &self.security else {
            return Ok(());
        };
        let user = *user;
        let msg_id = i64::from(rand::random::<i32>() & 0x7fff_ffff);
        let probe = v3::Data::Plain(v3::ScopedPdu {
            context_engine_id: vec![],
            context_name: vec![],
            pdu: Pdu {
                tag: PDU_GET,
                request_id: rand::random::<i32>() & 0x7fff_ffff,
                error_status: 0,
                error_index: 0,
                varbinds: vec![],
            },
        });
        let (bytes, _) = v3::encode(
            msg_id,
            v3::FLAG_REPORTABLE,
            &v3::UsmParams::default(),
            &probe,
        );
        let m = exchange(self, &bytes, |b| match v3::decode_v3(b) {
            Err(e) => Some(Err(SnmpFail::Protocol(e.to_string()))),
            Ok(m) if m.msg_id == msg_id => Some(Ok(m)),
            Ok(_) => None,
        })
        .await?;
        if m.usm.engine_id.is_empty() || m.usm.engine_id.len() > 32 {
            return Err(SnmpFail::Protocol(
                "engine discovery returned no usable engine ID".into(),
            ));
        }
        let keys = user.localize(&m.usm.engine_id);
        self.security = Security::V3 {
            user,
            engine: Some(Engine {
                id: m.usm.engine_id,
                boots: m.usm.boots,
                time: m.usm.time,
                at: Instant::now(),
                keys,
            }),
        };
        Ok(())
    }

    async fn v3_request(&mut self, pdu: Pdu) -> Result<Pdu, SnmpFail> {
        for _round in 0..3 {
            if matches!(self.security, Security::V3 { engine: None, .. }) {
                self.discover().await?;
            }
            let Security::V3 {
                user,
                engine: Some(eng),
            } = &self.security
            else {
                return Err(SnmpFail::Protocol("SNMPv3 engine state missing".into()));
            };
            let user = *user;
            let time = eng
                .time
                .saturating_add(u32::try_from(eng.at.elapsed().as_secs()).unwrap_or(u32::MAX));
            let msg_id = i64::from(rand::random::<i32>() & 0x7fff_ffff);
            let scoped = v3::ScopedPdu {
                context_engine_id: eng.id.clone(),
                context_name: vec![],
                pdu: pdu.clone(),
            };
            let mut flags = v3::FLAG_AUTH | v3::FLAG_REPORTABLE;
            let (data, privacy) = match (&user.privacy, &eng.keys.privacy) {
                (Some(_), Some(pk)) => {
                    flags |= v3::FLAG_PRIV;
                    let salt = rand::random::<u64>().to_be_bytes();
                    let mut plain = v3::encode_scoped(&scoped);
                    if !usm::aes_encrypt(pk, eng.boots, time, &salt, &mut plain) {
                        return Err(SnmpFail::Protocol("privacy key unusable".into()));
                    }
                    (v3::Data::Encrypted(plain), salt.to_vec())
                }
                _ => (v3::Data::Plain(scoped), vec![]),
            };
            let params = v3::UsmParams {
                engine_id: eng.id.clone(),
                boots: eng.boots,
                time,
                user: user.user.as_bytes().to_vec(),
                auth: vec![0; user.auth.mac_len()],
                privacy,
            };
            let (mut bytes, range) = v3::encode(msg_id, flags, &params, &data);
            let mac = user.auth.hmac(&eng.keys.auth, &bytes);
            if let Some(slot) = bytes.get_mut(range) {
                slot.copy_from_slice(&mac);
            }
            let auth_key = eng.keys.auth.clone();
            let priv_key = eng.keys.privacy.clone();
            let (m, raw) = exchange(self, &bytes, |b| match v3::decode_v3(b) {
                Err(e) => Some(Err(SnmpFail::Protocol(e.to_string()))),
                Ok(m) if m.msg_id == msg_id => Some(Ok((m, b.to_vec()))),
                Ok(_) => None,
            })
            .await?;
            if m.flags & v3::FLAG_AUTH != 0 {
                let mut zeroed = raw.clone();
                if let Some(slot) = zeroed.get_mut(m.auth_range.clone()) {
                    slot.fill(0);
                }
                if user.auth.hmac(&auth_key, &zeroed) != m.usm.auth {
                    return Err(SnmpFail::Auth(format!(
                        "reply from the agent failed {} authentication: wrong auth key or protocol",
                        user.auth.name()
                    )));
                }
            }
            let encrypted = matches!(m.data, v3::Data::Encrypted(_));
            let scoped = match m.data {
                v3::Data::Plain(s) => s,
                v3::Data::Encrypted(mut enc) => {
                    let Some(pk) = &priv_key else {
                        return Err(SnmpFail::Protocol(
                            "agent sent an encrypted reply to an unencrypted request".into(),
                        ));
                    };
                    if !usm::aes_decrypt(pk, m.usm.boots, m.usm.time, &m.usm.privacy, &mut enc) {
                        return Err(SnmpFail::Auth(
                            "cannot decrypt the reply: wrong privacy key or protocol".into(),
                        ));
                    }
                    v3::decode_scoped(&enc).map_err(|_| {
                        SnmpFail::Auth(
                            "decrypted reply is garbage: wrong privacy key or protocol".into(),
                        )
                    })?
                }
            };
            reply_security(flags, m.flags, encrypted, scoped.pdu.tag, user)?;
            if scoped.pdu.tag == PDU_REPORT {
                let (what, kind) = report_failure(&scoped.pdu);
                match kind {
                    2 => {
                        if let Security::V3 {
                            engine: Some(e), ..
                        } = &mut self.security
                        {
                            e.boots = m.usm.boots;
                            e.time = m.usm.time;
                            e.at = Instant::now();
                        }
                        continue;
                    }
                    4 => {
                        if let Security::V3 { engine, .. } = &mut self.security {
                            *engine = None;
                        }
                        continue;
                    }
                    1 | 3 | 5 | 6 => return Err(SnmpFail::Auth(what.to_string())),
                    _ => return Err(SnmpFail::Error(what.to_string())),
                }
            }
            if scoped.pdu.tag != PDU_RESPONSE {
                return Err(SnmpFail::Protocol("reply is not a Response PDU".into()));
            }
            return Ok(scoped.pdu);
        }
        Err(SnmpFail::Auth(
            "agent keeps rejecting our engine time or ID (clock/engine boots problem)".into(),
        ))
    }

    async fn get(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpFail> {
        Ok(self.request(PDU_GET, oids, 0, 0).await?.varbinds)
    }

    /// Walks a subtree with GETBULK. Returns the varbinds and whether the
    /// walk stopped at [`MAX_WALK_VARBINDS`].
    async fn walk(&mut self, root: &Oid) -> Result<(Vec<(Oid, Value)>, bool), SnmpFail> {
        let mut out = Vec::new();
        let mut cur = root.clone();
        loop {
            let p = self
                .request(PDU_GETBULK, std::slice::from_ref(&cur), 0, BULK_REPETITIONS)
                .await?;
            if p.varbinds.is_empty() {
                break;
            }
            for (o, v) in p.varbinds {
                if !o.starts_with(root) || v == Value::EndOfMibView {
                    return self.finish_walk(root, out).await;
                }
                if o <= cur {
                    return Err(SnmpFail::Protocol(format!(
                        "agent returned OIDs out of order ({o} after {cur})"
                    )));
                }
                cur = o.clone();
                out.push((o, v));
                if out.len() >= MAX_WALK_VARBINDS {
                    return Ok((out, true));
                }
            }
        }
        self.finish_walk(root, out).await
    }

    async fn finish_walk(
        &mut self,
        root: &Oid,
        out: Vec<(Oid, Value)>,
    ) -> Result<(Vec<(Oid, Value)>, bool), SnmpFail> {
        if !out.is_empty() {
            return Ok((out, false));
        }
        // Like snmpwalk: a leaf OID has nothing below it; GET it instead.
        let vbs = self.get(std::slice::from_ref(root)).await?;
        Ok((
            vbs.into_iter().filter(|(_, v)| !v.is_exception()).collect(),
            false,
        ))
    }
}

fn varbind(o: &Oid, v: &Value) -> SnmpVarBind {
    SnmpVarBind {
        oid: o.to_string(),
        value: v.render(),
        value_type: v.type_name().to_string(),
    }
}

async fn run_preset(
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
async fn hr_storage_memory(
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

/// Runs one SNMP check.
pub(crate) async fn run(
    spec: &CheckSpec,
    s: &SnmpSpec,
    r: &mut owlet_proto::v1::CheckResult,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + spec.timeout;
    let mut detail = SnmpDetail {
        version: match s.version {
            SnmpVersion::V2c { .. } => "v2c".into(),
            SnmpVersion::V3(_) => "v3".into(),
        },
        preset: match &s.query {
            SnmpQuery::Preset(p) => p.name().into(),
            _ => String::new(),
        },
        ..Default::default()
    };
    let outcome = run_inner(s, deadline, r, &mut detail).await;
    r.detail = Some(Detail::Snmp(detail));
    outcome
}

async fn run_inner(
    s: &SnmpSpec,
    deadline: Instant,
    r: &mut owlet_proto::v1::CheckResult,
    detail: &mut SnmpDetail,
) -> Outcome {
    let addr = match resolve(&s.addr.host, s.addr.port, deadline).await {
        Ok(a) => a,
        Err(o) => return o,
    };
    r.resolved_address = addr.to_string();
    let bind: std::net::SocketAddr = if addr.is_ipv4() {
        ([0u8; 4], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::unknown(format!("cannot open a UDP socket: {e}"));
        }
    };
    if let Err(e) = sock.connect(addr).await {
        return Outcome::failed(crate::classify_io(&e), format!("cannot reach {addr}: {e}"));
    }
    let total = deadline.saturating_duration_since(Instant::now());
    let mut session = Session {
        sock,
        deadline,
        attempt: total / (s.retries + 1),
        retries: s.retries,
        security: match &s.version {
            SnmpVersion::V2c { community } => Security::V2c(community.expose().as_bytes()),
            SnmpVersion::V3(u) => Security::V3 {
                user: u,
                engine: None,
            },
        },
        hint: match &s.version {
            SnmpVersion::V2c { .. } => Hint::V2c,
            SnmpVersion::V3(u) if u.privacy.is_some() => Hint::V3Priv,
            SnmpVersion::V3(_) => Hint::None,
        },
    };
    let mut metrics = BTreeMap::new();
    let result = match &s.query {
        SnmpQuery::Get(oids) => session.get(oids).await.map(|v| (v, false)),
        SnmpQuery::Walk(root) => session.walk(root).await,
        SnmpQuery::Preset(p) => run_preset(*p, &mut session, &mut metrics).await,
    };
    let (vbs, truncated) = match result {
        Ok(v) => v,
        Err(f) => return f.into_outcome(),
    };
    let (varbinds, metrics, over_budget) = bounded(&vbs, metrics);
    detail.varbinds = varbinds;
    detail.metrics = metrics.into_iter().collect();
    if let SnmpQuery::Get(_) = &s.query
        && let Some((o, v)) = vbs.iter().find(|(_, v)| v.is_exception())
    {
        return Outcome::down(FailureClass::SnmpError, format!("{} for {o}", v.render()));
    }
    if vbs.is_empty() {
        return Outcome::down(
            FailureClass::SnmpError,
            "the agent returned nothing for the requested subtree".to_string(),
        );
    }
    let mut msg = format!("{} varbind(s)", vbs.len());
    if let Some(SnmpVarBind { value, .. }) = detail.varbinds.first()
        && vbs.len() == 1
    {
        msg = format!("{} = {value}", vbs[0].0);
    }
    if truncated {
        msg.push_str(&format!(
            " (truncated: a walk stopped at {MAX_WALK_VARBINDS} varbinds)"
        ));
    }
    if over_budget {
        msg.push_str(&format!(
            " (truncated: result limited to {} KiB, {} of {} varbind(s) kept)",
            MAX_RESULT_BYTES / 1024,
            detail.varbinds.len(),
            vbs.len()
        ));
    }
    Outcome::up(msg)
}

/// Renders varbinds and metrics within the per-run budget: each value at
/// most [`MAX_VALUE_BYTES`] (cut at a character boundary, with
/// [`TRUNCATED_MARK`]), everything together at most [`MAX_RESULT_BYTES`].
/// Returns whether anything was dropped or cut.
fn bounded(
    vbs: &[(Oid, Value)],
    metrics: BTreeMap<String, f64>,
) -> (Vec<SnmpVarBind>, Vec<(String, f64)>, bool) {
    let mut used = 0usize;
    let mut cut = false;
    let mut out = Vec::with_capacity(vbs.len().min(4096));
    let mut out_metrics = Vec::new();
    // Metrics first: they are small and what dashboards use.
    for (k, v) in metrics {
        let cost = k.len() + 16;
        if used + cost > MAX_RESULT_BYTES {
            cut = true;
            break;
        }
        used += cost;
        out_metrics.push((k, v));
    }
    for (o, v) in vbs {
        let mut vb = varbind(o, v);
        if vb.value.len() > MAX_VALUE_BYTES {
            let mut end = MAX_VALUE_BYTES;
            while !vb.value.is_char_boundary(end) {
                end -= 1;
            }
            vb.value.truncate(end);
            vb.value.push_str(TRUNCATED_MARK);
            cut = true;
        }
        let cost = vb.oid.len() + vb.value.len() + vb.value_type.len() + 8;
        if used + cost > MAX_RESULT_BYTES {
            cut = true;
            break;
        }
        used += cost;
        out.push(vb);
    }
    (out, out_metrics, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_bounded_per_value_and_per_run() {
        let long = Value::OctetString("é".repeat(4000).into_bytes());
        let (vbs, _, cut) = bounded(&[(oid("1.3.6.1.2.1.1.1.0"), long)], BTreeMap::new());
        assert!(cut);
        assert!(vbs[0].value.ends_with(TRUNCATED_MARK));
        assert!(vbs[0].value.len() <= MAX_VALUE_BYTES + TRUNCATED_MARK.len());

        let big: Vec<(Oid, Value)> = (0..MAX_WALK_VARBINDS as u32)
            .map(|i| {
                (
                    oid(&format!("1.3.6.1.4.1.9999.1.{i}")),
                    Value::OctetString(vec![b'x'; 900]),
                )
            })
            .collect();
        let metrics: BTreeMap<String, f64> = (0..50_000)
            .map(|i| (format!("if.{i}.oper_status"), 1.0))
            .collect();
        let (vbs, m, cut) = bounded(&big, metrics);
        assert!(cut);
        let total: usize = vbs
            .iter()
            .map(|v| v.oid.len() + v.value.len() + v.value_type.len())
            .sum::<usize>()
            + m.iter().map(|(k, _)| k.len() + 8).sum::<usize>();
        assert!(total <= MAX_RESULT_BYTES, "{total}");

        let small = vec![(oid("1.3.6.1.2.1.1.3.0"), Value::TimeTicks(5))];
        let (vbs, _, cut) = bounded(&small, BTreeMap::new());
        assert!(!cut);
        assert_eq!(vbs[0].value, "5");
    }

    fn v3_user() -> UsmUser {
        UsmUser::new(
            "probe".into(),
            AuthProto::Sha256,
            crate::Secret::new("authpass123"),
            None,
        )
    }

    #[test]
    fn only_reports_may_be_unauthenticated() {
        use v3::{FLAG_AUTH as A, FLAG_PRIV as P, FLAG_REPORTABLE as R};
        let u = v3_user();
        let ok = |rf, f, enc, tag| reply_security(rf, f, enc, tag, &u).is_ok();
        let auth =
            |rf, f, enc, tag| matches!(reply_security(rf, f, enc, tag, &u), Err(SnmpFail::Auth(_)));
        assert!(ok(A | R, A, false, PDU_RESPONSE));
        assert!(ok(A | P | R, A | P, true, PDU_RESPONSE));
        assert!(ok(A | R, 0, false, PDU_REPORT));
        assert!(ok(A | P | R, 0, false, PDU_REPORT));
        assert!(auth(A | R, 0, false, PDU_RESPONSE));
        assert!(auth(A | P | R, A, false, PDU_RESPONSE));
        assert!(auth(A | P | R, 0, false, PDU_RESPONSE));
        assert!(!ok(A | P | R, P, true, PDU_RESPONSE));
        assert!(!ok(A | P | R, A | P, false, PDU_RESPONSE));
    }

    /// A fake agent: answers discovery with its engine ID, then the GET with
    /// a Response that is authenticated only when `sign` is set.
    fn fake_agent(sign: bool) -> u16 {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let engine = b"\x80\x00\x1f\x88\x04owlet-test".to_vec();
            let keys = v3_user().localize(&engine);
            let mut buf = [0u8; 65536];
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for _ in 0..2 {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    return;
                };
                let m = v3::decode_v3(&buf[..n]).unwrap();
                let v3::Data::Plain(req) = m.data else {
                    panic!()
                };
                let mut usm = v3::UsmParams {
                    engine_id: engine.clone(),
                    boots: 1,
                    time: 100,
                    ..Default::default()
                };
                let (tag, flags, varbinds) = if m.usm.engine_id.is_empty() {
                    (
                        PDU_REPORT,
                        0,
                        vec![(oid("1.3.6.1.6.3.15.1.1.4.0"), Value::Counter32(1))],
                    )
                } else {
                    usm.user = b"probe".to_vec();
                    let flags = if sign {
                        usm.auth = vec![0; AuthProto::Sha256.mac_len()];
                        v3::FLAG_AUTH
                    } else {
                        0
                    };
                    (
                        PDU_RESPONSE,
                        flags,
                        vec![(oid(SYS_UPTIME), Value::TimeTicks(4242))],
                    )
                };
                let data = v3::Data::Plain(v3::ScopedPdu {
                    context_engine_id: engine.clone(),
                    context_name: vec![],
                    pdu: Pdu {
                        tag,
                        request_id: req.pdu.request_id,
                        error_status: 0,
                        error_index: 0,
                        varbinds,
                    },
                });
                let (mut bytes, range) = v3::encode(m.msg_id, flags, &usm, &data);
                if flags & v3::FLAG_AUTH != 0 {
                    let mac = AuthProto::Sha256.hmac(&keys.auth, &bytes);
                    bytes[range].copy_from_slice(&mac);
                }
                sock.send_to(&bytes, from).unwrap();
            }
        });
        port
    }

    async fn run_against(port: u16) -> owlet_proto::v1::CheckResult {
        let mut c = crate::CheckConfig::new(
            "v3",
            crate::CheckTypeName::Snmp,
            format!("127.0.0.1:{port}"),
        );
        c.version = Some("3".into());
        c.user = Some("probe".into());
        c.auth_proto = Some("sha256".into());
        c.auth_key = Some(crate::Secret::new("authpass123"));
        c.oids = Some(vec![SYS_UPTIME.into()]);
        c.timeout = Duration::from_secs(2);
        c.retries = Some(0);
        crate::run_check(&crate::CheckSpec::from_config(&c).unwrap()).await
    }

    #[tokio::test]
    async fn unauthenticated_v3_response_is_an_auth_failure() {
        use owlet_proto::v1::{FailureClass as F, State};
        let r = run_against(fake_agent(true)).await;
        assert_eq!(r.result, State::Up as i32, "{r:?}");
        assert!(r.message.contains("4242"), "{}", r.message);
        let r = run_against(fake_agent(false)).await;
        assert_eq!(
            (r.result, r.failure),
            (State::Down as i32, F::SnmpAuth as i32),
            "{r:?}"
        );
        assert!(r.message.contains("without"), "{}", r.message);
    }
}
