//! One SNMP session over a connected UDP socket: v2c community or v3 USM
//! (engine discovery, time window, auth and privacy), request / reply
//! matching with retries inside the run's deadline, GET and GETBULK walks.
//!
//! Guarantees: only replies that match the request (request-id / msgID) and
//! carry the security level the request asked for are accepted; anything
//! else is skipped or a classified failure, never a panic; no exchange runs
//! past the session's deadline.

use std::time::{Duration, Instant};

use owlet_proto::v1::FailureClass;
use tokio::net::UdpSocket;

use super::ber::{self, PDU_GET, PDU_GETBULK, PDU_REPORT, PDU_RESPONSE, Pdu};
use super::*;
use crate::Outcome;

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
    pub(super) fn into_outcome(self) -> Outcome {
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

pub(super) fn error_status_name(s: i64) -> &'static str {
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

pub(super) struct Engine {
    pub(super) id: Vec<u8>,
    pub(super) boots: u32,
    pub(super) time: u32,
    pub(super) at: Instant,
    pub(super) keys: usm::LocalKeys,
}

pub(super) enum Security<'a> {
    V2c(&'a [u8]),
    V3 {
        user: &'a UsmUser,
        engine: Option<Engine>,
    },
}

pub(super) struct Session<'a> {
    pub(super) sock: UdpSocket,
    pub(super) deadline: Instant,
    pub(super) attempt: Duration,
    pub(super) retries: u32,
    pub(super) security: Security<'a>,
    pub(super) hint: Hint,
}

#[derive(Clone, Copy)]
pub(super) enum Hint {
    None,
    V2c,
    V3Priv,
}

/// Sends `msg` and waits for a datagram `accept` recognises, retrying.
pub(super) async fn exchange<T>(
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
pub(super) fn reply_security(
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

pub(super) fn report_failure(p: &Pdu) -> (&'static str, u32) {
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
    pub(super) async fn request(
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

    pub(super) async fn discover(&mut self) -> Result<(), SnmpFail> {
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

    pub(super) async fn v3_request(&mut self, pdu: Pdu) -> Result<Pdu, SnmpFail> {
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

    pub(super) async fn get(&mut self, oids: &[Oid]) -> Result<Vec<(Oid, Value)>, SnmpFail> {
        Ok(self.request(PDU_GET, oids, 0, 0).await?.varbinds)
    }

    /// Walks a subtree with GETBULK. Returns the varbinds and whether the
    /// walk stopped at [`MAX_WALK_VARBINDS`].
    pub(super) async fn walk(&mut self, root: &Oid) -> Result<(Vec<(Oid, Value)>, bool), SnmpFail> {
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

    pub(super) async fn finish_walk(
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
