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
//!
//! Layout: [`ber`] encodes and decodes the wire format, [`usm`] and [`v3`]
//! do SNMPv3 security, `session` runs request / reply exchanges over one
//! socket (GET, GETBULK walks, v3 discovery), `presets` turns device-health
//! presets into queries and metrics; this module runs one check and bounds
//! what it reports.

pub mod ber;
mod presets;
mod session;
pub mod usm;
pub mod v3;

use std::collections::BTreeMap;
use std::time::Instant;

use owlet_proto::v1::{FailureClass, SnmpDetail, SnmpVarBind, check_result::Detail};
use tokio::net::UdpSocket;

pub use ber::{Oid, Value};
pub use usm::{AuthProto, PrivProto, UsmUser};

use crate::spec::{CheckSpec, SnmpQuery, SnmpSpec, SnmpVersion};
use crate::{Outcome, resolve};

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

use presets::*;
pub use presets::{Preset, SYS_UPTIME};
pub(crate) use presets::{RATE_COLUMNS, SS_CPU_RAW};
use session::*;

fn varbind(o: &Oid, v: &Value) -> SnmpVarBind {
    SnmpVarBind {
        oid: o.to_string(),
        value: v.render(),
        value_type: v.type_name().to_string(),
    }
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
    use ber::{PDU_REPORT, PDU_RESPONSE, Pdu};
    use std::time::Duration;

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
