//! SNMP notifications: SNMPv2-Trap and InformRequest PDUs, v2c (community)
//! or v3 (USM: HMAC authentication, AES-128 privacy), on the BER and USM
//! code of `owlet-probe` (RFC 3414 / 3826 / 7860, tested there against
//! snmpd).
//!
//! ## The owlet notification OIDs
//!
//! owlet has no registered Private Enterprise Number yet. Its subtree sits
//! under **32473**, the enterprise number IANA reserves for documentation
//! (RFC 5612). **Replace [`ENTERPRISE`] with owlet's registered PEN before
//! any production use**; receivers' MIB filters key on it.
//!
//! ```text
//! 1.3.6.1.4.1.32473.1            owletSoc
//! 1.3.6.1.4.1.32473.1.0.1        owletIncident            NOTIFICATION-TYPE (snmpTrapOID.0)
//! 1.3.6.1.4.1.32473.1.1.1        owletTenant              OCTET STRING
//! 1.3.6.1.4.1.32473.1.1.2        owletNotificationId      INTEGER  (per tenant)
//! 1.3.6.1.4.1.32473.1.1.3        owletSeverity            INTEGER  info(1) warning(2) critical(3)
//! 1.3.6.1.4.1.32473.1.1.4        owletSubject             OCTET STRING (the mail subject)
//! 1.3.6.1.4.1.32473.1.1.5        owletTarget              OCTET STRING (host, address, path or URI)
//! 1.3.6.1.4.1.32473.1.1.6        owletDetected            OCTET STRING (what was detected)
//! 1.3.6.1.4.1.32473.1.1.7        owletDetectedAt          OCTET STRING (RFC 3339, tenant's offset)
//! 1.3.6.1.4.1.32473.1.1.8        owletEventCount          Gauge32
//! 1.3.6.1.4.1.32473.1.1.9        owletExpectedDamage      OCTET STRING
//! 1.3.6.1.4.1.32473.1.1.10       owletRecommendedResponse OCTET STRING
//! 1.3.6.1.4.1.32473.1.1.11       owletEventIds            OCTET STRING (space separated, bounded)
//! ```
//! The same in SMIv2: `soc-notify/mibs/OWLET-SOC-MIB.txt`, for receivers.
//! Target, detected, damage and response are those of the group's first
//! event; the count says how many the message covers. Strings are bounded
//! ([`MAX_TEXT`]) so a trap stays well inside one UDP datagram.
//!
//! A trap has no acknowledgement: it is recorded `sent`. An inform waits for
//! the receiver's Response; v3 informs first discover the receiver's engine
//! id, boots and time (RFC 3414 §4). v3 traps use this sender's engine id
//! (`engine_id`, default [`default_engine_id`]) with a boot counter kept in
//! `STATE_DIR/snmp-engine-boots` and bumped at each start, so a receiver's
//! timeliness check never sees time go backwards.

use std::path::Path;
use std::time::{Duration, Instant};

use owlet_probe::config::Secret;
use owlet_probe::snmp::ber::{self, Oid, Pdu, Value};
use owlet_probe::snmp::usm::{self, AuthProto, PrivProto, UsmUser};
use owlet_probe::snmp::v3::{self, Data, ScopedPdu, UsmParams};
use tokio::net::UdpSocket;

use super::{SendError, Sent};
use crate::config::{ChannelConfig, SnmpVersion};
use crate::error::{NotifyError, Result, read_secret};
use crate::message::rfc3339;
use crate::record::Outgoing;

/// The enterprise arc: 32473 is IANA's documentation PEN (RFC 5612), a
/// placeholder to replace with owlet's registered PEN.
pub const ENTERPRISE: &str = "1.3.6.1.4.1.32473";
/// owletSoc.
pub const OWLET_SOC: &str = "1.3.6.1.4.1.32473.1";
/// owletIncident, the value of snmpTrapOID.0.
pub const OWLET_INCIDENT: &str = "1.3.6.1.4.1.32473.1.0.1";
/// The objects' prefix: owletSoc.1.N.
pub const OWLET_OBJECTS: &str = "1.3.6.1.4.1.32473.1.1";
/// Longest string varbind, bytes.
pub const MAX_TEXT: usize = 512;

const SYS_UPTIME_0: &str = "1.3.6.1.2.1.1.3.0";
const SNMP_TRAP_OID_0: &str = "1.3.6.1.6.3.1.1.4.1.0";
const PDU_INFORM: u8 = 0xA6;
const PDU_TRAP: u8 = 0xA7;
const USM_STATS: &str = "1.3.6.1.6.3.15.1.1";

/// `80 00 7E D9 04 "owlet-soc"`: format 4 (text) under the placeholder PEN.
pub fn default_engine_id() -> Vec<u8> {
    let mut id = vec![0x80, 0x00, 0x7E, 0xD9, 0x04];
    id.extend_from_slice(b"owlet-soc");
    id
}

enum Security {
    Community(Vec<u8>),
    Usm { user: UsmUser, engine_id: Vec<u8> },
}

pub struct SnmpChannel {
    name: String,
    target: String,
    security: Security,
    inform: bool,
    timeout: Duration,
    boots: u32,
    started: Instant,
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_start_matches("0x").trim_start_matches("0X");
    if !s.len().is_multiple_of(2) || s.len() < 10 || s.len() > 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Reads, bumps and writes the boot counter (RFC 3414 snmpEngineBoots).
fn next_boots(state_dir: &Path) -> Result<u32> {
    let path = state_dir.join("snmp-engine-boots");
    let io = |source| NotifyError::SecretFile {
        what: "SNMP engine boot counter",
        path: path.clone(),
        source,
    };
    let old: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let boots = old.saturating_add(1).min(2_147_483_646);
    std::fs::create_dir_all(state_dir).map_err(io)?;
    std::fs::write(&path, format!("{boots}\n")).map_err(io)?;
    Ok(boots)
}

impl SnmpChannel {
    pub fn new(config: &ChannelConfig, state_dir: &Path) -> Result<Self> {
        let ChannelConfig::SnmpTrap {
            name,
            target,
            version,
            community_file,
            user,
            auth_protocol,
            auth_key_file,
            priv_protocol,
            priv_key_file,
            engine_id,
            inform,
            timeout,
            ..
        } = config
        else {
            unreachable!("SnmpChannel::new is only called with an snmp_trap channel")
        };
        let bad = |m: String| NotifyError::Channel {
            channel: name.clone(),
            message: m,
        };
        let security = match version {
            SnmpVersion::V2c => {
                let file = community_file
                    .as_ref()
                    .ok_or_else(|| bad("v2c needs community_file".into()))?;
                Security::Community(read_secret("SNMP community_file", file)?.into_bytes())
            }
            SnmpVersion::V3 => {
                let user = user.clone().ok_or_else(|| bad("v3 needs user".into()))?;
                let auth = AuthProto::parse(auth_protocol.as_deref().unwrap_or("sha256"))
                    .map_err(|e| bad(e.to_string()))?;
                let file = auth_key_file
                    .as_ref()
                    .ok_or_else(|| bad("v3 needs auth_key_file".into()))?;
                let auth_key = read_secret("SNMP auth_key_file", file)?;
                if auth_key.len() < 8 {
                    return Err(bad(format!(
                        "the key in {} is shorter than 8 characters, which USM refuses",
                        file.display()
                    )));
                }
                let privacy = match priv_key_file {
                    Some(f) => {
                        let proto = PrivProto::parse(priv_protocol.as_deref().unwrap_or("aes"))
                            .map_err(|e| bad(e.to_string()))?;
                        Some((proto, Secret::new(read_secret("SNMP priv_key_file", f)?)))
                    }
                    None => None,
                };
                let engine_id = match engine_id {
                    Some(hex) => parse_hex(hex).ok_or_else(|| {
                        bad(format!(
                            "engine_id \"{hex}\" is not 5 to 32 bytes of hex (e.g. \"0x80007ed904736f63\")"
                        ))
                    })?,
                    None => default_engine_id(),
                };
                Security::Usm {
                    user: UsmUser::new(user, auth, Secret::new(auth_key), privacy),
                    engine_id,
                }
            }
        };
        Ok(SnmpChannel {
            name: name.clone(),
            target: target.clone(),
            security,
            inform: *inform,
            timeout: *timeout,
            boots: next_boots(state_dir)?,
            started: Instant::now(),
        })
    }

    pub fn recipients(&self) -> String {
        format!(
            "{} ({})",
            self.target,
            match (&self.security, self.inform) {
                (Security::Community(_), false) => "v2c trap",
                (Security::Community(_), true) => "v2c inform",
                (Security::Usm { .. }, false) => "v3 trap",
                (Security::Usm { .. }, true) => "v3 inform",
            }
        )
    }

    /// The varbinds of `msg` (after sysUpTime.0 and snmpTrapOID.0).
    pub fn varbinds(msg: &Outgoing, uptime_ticks: u32) -> Vec<(Oid, Value)> {
        let oid = |s: &str| Oid::parse(s).unwrap_or_else(|_| Oid::from_arcs(&[0, 0]));
        let obj = |n: u32| oid(OWLET_OBJECTS).child(n);
        let text = |s: &str| {
            let mut end = s.len().min(MAX_TEXT);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::OctetString(s.as_bytes()[..end].to_vec())
        };
        let zone: chrono_tz::Tz = msg.zone.parse().unwrap_or(chrono_tz::UTC);
        let first = msg.incidents.first();
        let pick = |f: fn(&crate::message::Incident) -> &str| first.map_or("", f);
        let severity = match msg.severity.as_str() {
            "critical" => 3,
            "warning" => 2,
            _ => 1,
        };
        let ids: Vec<&str> = msg.incidents.iter().map(|i| i.event_id.as_str()).collect();
        vec![
            (oid(SYS_UPTIME_0), Value::TimeTicks(uptime_ticks)),
            (oid(SNMP_TRAP_OID_0), Value::Oid(oid(OWLET_INCIDENT))),
            (obj(1), text(&msg.tenant)),
            (obj(2), Value::Integer(msg.notification_id)),
            (obj(3), Value::Integer(severity)),
            (obj(4), text(&msg.subject)),
            (obj(5), text(pick(|i| &i.target))),
            (obj(6), text(pick(|i| &i.detected))),
            (obj(7), text(&rfc3339(msg.first_detected_us, zone))),
            (obj(8), Value::Gauge32(msg.incidents.len() as u32)),
            (obj(9), text(pick(|i| &i.damage))),
            (obj(10), text(pick(|i| &i.response))),
            (obj(11), text(&ids.join(" "))),
        ]
    }

    pub async fn send(&self, msg: &Outgoing) -> std::result::Result<Sent, SendError> {
        let socket = UdpSocket::bind(if self.target.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        })
        .await
        .map_err(|e| SendError::retry(format!("UDP socket: {e}")))?;
        socket
            .connect(&self.target)
            .await
            .map_err(|e| SendError::retry(format!("{}: {e}", self.target)))?;
        let ticks = (self.started.elapsed().as_millis() / 10) as u32;
        let request_id: i32 = rand::random::<i32>() & 0x7fff_ffff;
        let pdu = Pdu {
            tag: if self.inform { PDU_INFORM } else { PDU_TRAP },
            request_id,
            error_status: 0,
            error_index: 0,
            varbinds: Self::varbinds(msg, ticks),
        };
        let work = async {
            match &self.security {
                Security::Community(c) => {
                    let bytes = ber::encode_v2c(c, &pdu);
                    socket
                        .send(&bytes)
                        .await
                        .map_err(|e| SendError::retry(format!("send to {}: {e}", self.target)))?;
                    if !self.inform {
                        return Ok(Sent::Unacknowledged);
                    }
                    self.await_v2c_response(&socket, request_id).await
                }
                Security::Usm { user, engine_id } => {
                    if self.inform {
                        self.v3_inform(&socket, user, pdu).await
                    } else {
                        let time = self.started.elapsed().as_secs() as u32;
                        let msg_id = i64::from(rand::random::<u32>() >> 1);
                        let bytes = v3_message(
                            user,
                            engine_id,
                            self.boots,
                            time,
                            pdu,
                            rand::random(),
                            false,
                            msg_id,
                        )?;
                        socket.send(&bytes).await.map_err(|e| {
                            SendError::retry(format!("send to {}: {e}", self.target))
                        })?;
                        Ok(Sent::Unacknowledged)
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(format!(
                "{}: no response from {} within {:?} (check the receiver, its community or USM user)",
                self.name, self.target, self.timeout
            ))),
        }
    }

    async fn await_v2c_response(
        &self,
        socket: &UdpSocket,
        request_id: i32,
    ) -> std::result::Result<Sent, SendError> {
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| SendError::retry(format!("receive from {}: {e}", self.target)))?;
            // Anything malformed or for another request is ignored: the
            // timeout bounds the wait.
            if let Ok(p) = decode_v2c_pdu(&buf[..n])
                && p.tag == ber::PDU_RESPONSE
                && p.request_id == request_id
            {
                return Ok(Sent::Delivered);
            }
        }
    }

    async fn v3_inform(
        &self,
        socket: &UdpSocket,
        user: &UsmUser,
        pdu: Pdu,
    ) -> std::result::Result<Sent, SendError> {
        // Discovery (RFC 3414 §4): an unauthenticated, reportable request
        // with an empty engine id; the Report carries the receiver's engine
        // id, boots and time.
        let probe_id: i64 = i64::from(rand::random::<u32>() >> 1);
        let empty = UsmParams::default();
        let discovery = Data::Plain(ScopedPdu {
            context_engine_id: Vec::new(),
            context_name: Vec::new(),
            pdu: Pdu {
                tag: ber::PDU_GET,
                request_id: rand::random::<i32>() & 0x7fff_ffff,
                error_status: 0,
                error_index: 0,
                varbinds: Vec::new(),
            },
        });
        let (bytes, _) = v3::encode(probe_id, v3::FLAG_REPORTABLE, &empty, &discovery);
        socket
            .send(&bytes)
            .await
            .map_err(|e| SendError::retry(format!("send to {}: {e}", self.target)))?;
        let mut buf = vec![0u8; 65_536];
        let report = loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| SendError::retry(format!("receive from {}: {e}", self.target)))?;
            if let Ok(m) = v3::decode_v3(&buf[..n])
                && m.msg_id == probe_id
            {
                break m;
            }
        };
        if report.usm.engine_id.is_empty() {
            return Err(SendError::retry(format!(
                "{}: the receiver's discovery report has no engine id",
                self.target
            )));
        }
        let asked = Instant::now();
        let time = report
            .usm
            .time
            .saturating_add(asked.elapsed().as_secs() as u32);
        let msg_id: i64 = i64::from(rand::random::<u32>() >> 1);
        let request_id = pdu.request_id;
        let bytes = v3_message(
            user,
            &report.usm.engine_id,
            report.usm.boots,
            time,
            pdu,
            rand::random(),
            true,
            msg_id,
        )?;
        socket
            .send(&bytes)
            .await
            .map_err(|e| SendError::retry(format!("send to {}: {e}", self.target)))?;
        let keys = user.localize(&report.usm.engine_id);
        loop {
            let n = socket
                .recv(&mut buf)
                .await
                .map_err(|e| SendError::retry(format!("receive from {}: {e}", self.target)))?;
            let Ok(m) = v3::decode_v3(&buf[..n]) else {
                continue;
            };
            if m.msg_id != msg_id {
                continue;
            }
            let scoped = match m.data {
                Data::Plain(s) => s,
                Data::Encrypted(mut data) => {
                    let Some(key) = keys.privacy.as_ref() else {
                        continue;
                    };
                    if !usm::aes_decrypt(key, m.usm.boots, m.usm.time, &m.usm.privacy, &mut data) {
                        continue;
                    }
                    match v3::decode_scoped(&data) {
                        Ok(s) => s,
                        Err(_) => continue,
                    }
                }
            };
            if scoped.pdu.tag == ber::PDU_REPORT {
                let what = scoped
                    .pdu
                    .varbinds
                    .first()
                    .map(|(o, _)| report_name(&o.to_string()))
                    .unwrap_or("a report");
                return Err(SendError::retry(format!(
                    "{} refused the inform: {what} (check the USM user, protocols and keys)",
                    self.target
                )));
            }
            if scoped.pdu.tag == ber::PDU_RESPONSE && scoped.pdu.request_id == request_id {
                return Ok(Sent::Delivered);
            }
        }
    }
}

fn report_name(oid: &str) -> &'static str {
    match oid.strip_prefix(USM_STATS) {
        Some(".1.0") => "usmStatsUnsupportedSecLevels",
        Some(".2.0") => "usmStatsNotInTimeWindows",
        Some(".3.0") => "usmStatsUnknownUserNames",
        Some(".4.0") => "usmStatsUnknownEngineIDs",
        Some(".5.0") => "usmStatsWrongDigests",
        Some(".6.0") => "usmStatsDecryptionErrors",
        _ => "a report",
    }
}

fn decode_v2c_pdu(buf: &[u8]) -> std::result::Result<Pdu, ber::DecodeError> {
    ber::decode_v2c(buf).map(|(_, _, pdu)| pdu)
}

/// An authenticated (and, with a privacy key, encrypted) v3 message.
#[allow(clippy::too_many_arguments)]
fn v3_message(
    user: &UsmUser,
    engine_id: &[u8],
    boots: u32,
    time: u32,
    pdu: Pdu,
    salt: [u8; 8],
    reportable: bool,
    msg_id: i64,
) -> std::result::Result<Vec<u8>, SendError> {
    let keys = user.localize(engine_id);
    let scoped = ScopedPdu {
        context_engine_id: engine_id.to_vec(),
        context_name: Vec::new(),
        pdu,
    };
    let mut flags = v3::FLAG_AUTH;
    if reportable {
        flags |= v3::FLAG_REPORTABLE;
    }
    let (data, privacy) = match keys.privacy.as_ref() {
        Some(key) => {
            let mut plain = v3::encode_scoped(&scoped);
            if !usm::aes_encrypt(key, boots, time, &salt, &mut plain) {
                return Err(SendError::permanent("the privacy key is too short for AES"));
            }
            flags |= v3::FLAG_PRIV;
            (Data::Encrypted(plain), salt.to_vec())
        }
        None => (Data::Plain(scoped), Vec::new()),
    };
    let params = UsmParams {
        engine_id: engine_id.to_vec(),
        boots,
        time,
        user: user.user.as_bytes().to_vec(),
        auth: vec![0; user.auth.mac_len()],
        privacy,
    };
    let (mut bytes, range) = v3::encode(msg_id, flags, &params, &data);
    let mac = user.auth.hmac(&keys.auth, &bytes);
    bytes[range].copy_from_slice(&mac);
    Ok(bytes)
}
