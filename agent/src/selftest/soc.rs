//! The steps that talk to the SOC: `soc` (reachable, mTLS accepted), `clock`,
//! `test_event` and `failure_test`.
//!
//! One fresh connection with the agent's own certificate, through the
//! uplink's connector, with the uplink's hello; failures are explained by the
//! uplink's diagnosis (the same words `owlet health` and the log use). Test
//! events go as `SelfTest` messages: the SOC stores them as self-test records
//! outside the agent's sequence and answers each with a `SelfTestAck`, so the
//! running agent's sequence numbers and acknowledgements are never touched.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use owlet_proto::v1::{
    Alert, Event, FailureClass, SelfTest, Severity, State, event::Kind, soc_message,
};
use tokio::sync::mpsc;

use super::Step;
use crate::config::Config;
use crate::facts::HostFacts;
use crate::uplink::{self, Connector, Outbound, Session, Setting, UplinkError, diagnose};

/// `Alert.source` of every self-test event.
pub const SOURCE: &str = "selftest";

pub async fn run(config: &Config, tolerance: Duration, local_summary: &str) -> Vec<Step> {
    let setting = Setting::of(config);
    let skipped = |why: &str| {
        ["clock", "test_event", "failure_test"]
            .into_iter()
            .map(|step| Step::skip(step, why.to_string()))
            .collect::<Vec<_>>()
    };
    let connector = match Connector::new(config) {
        Ok(c) => c,
        Err(e) => {
            let mut steps = vec![failed("soc", &e, &setting)];
            steps.extend(skipped("needs a connection to the SOC"));
            return steps;
        }
    };
    let facts = HostFacts::read();
    // last_seq 0: the spool belongs to the running agent; the SOC uses the
    // hello's last_seq for nothing it stores.
    let hello = uplink::hello(
        &facts,
        config.agent.tenant.as_deref().unwrap_or_default(),
        config.agent.id.as_deref().unwrap_or_default(),
        &config.agent.hw_profile,
        0,
    );
    let sent_wall = SystemTime::now();
    let started = Instant::now();
    let session =
        match uplink::open_session(&connector, hello, uplink::encoding(config.soc.compression))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let mut steps = vec![failed("soc", &e, &setting)];
                steps.extend(skipped("needs a connection to the SOC"));
                return steps;
            }
        };
    let handshake = started.elapsed();
    let received_wall = SystemTime::now();
    let welcome = &session.welcome;
    let mut steps = vec![
        Step::pass(
            "soc",
            format!(
                "{}: TLS 1.3 with mutual authentication, accepted as {}/{} (owlet-soc {}), connect and welcome in {:.1} ms",
                config.soc.address,
                welcome.tenant,
                welcome.agent_id,
                welcome.soc_version,
                super::millis(handshake)
            ),
        )
        .with_round_trip(handshake),
    ];
    steps.push(clock(
        welcome.soc_time.as_ref(),
        sent_wall,
        received_wall,
        tolerance,
    ));
    let mut link = Link {
        session,
        timeout: connector.timeout(),
        next_id: 1,
    };
    steps.push(test_event(&mut link, &facts, local_summary, &setting).await);
    steps.push(failure_test(&mut link, &facts, &setting).await);
    link.close().await;
    steps
}

fn failed(step: &'static str, error: &UplinkError, setting: &Setting) -> Step {
    let d = diagnose(error, setting);
    let fix = if d.fix.is_empty() {
        "check owlet-soc's log and the network path to soc.address".to_string()
    } else {
        d.fix
    };
    Step::fail(step, format!("{} [{}]", d.problem, d.class), fix)
}

/// The SOC's clock against ours: the welcome's `soc_time` was taken between
/// sending the hello and receiving the welcome, so the offset is measured
/// from the middle of that interval, give or take half of it.
fn clock(
    soc_time: Option<&owlet_proto::Timestamp>,
    sent: SystemTime,
    received: SystemTime,
    tolerance: Duration,
) -> Step {
    let Some(soc_time) = soc_time else {
        return Step::fail(
            "clock",
            "the SOC's welcome carries no time",
            "upgrade owlet-soc",
        );
    };
    let micros = |t: SystemTime| owlet_proto::timestamp_micros(&owlet_proto::timestamp(t));
    let (sent, received) = (micros(sent), micros(received));
    let middle = sent + (received - sent) / 2;
    let offset_ms = (owlet_proto::timestamp_micros(soc_time) - middle) as f64 / 1000.0;
    let error_ms = (received - sent) as f64 / 2000.0;
    let tolerance_ms = tolerance.as_secs_f64() * 1000.0;
    let found = format!(
        "the SOC's clock is {offset_ms:+.1} ms from this sensor's (±{error_ms:.1} ms; tolerance {})",
        humantime::format_duration(tolerance)
    );
    if offset_ms.abs() - error_ms > tolerance_ms {
        Step::fail(
            "clock",
            found,
            "synchronise both clocks with NTP (`timedatectl set-ntp true`; `timedatectl timesync-status`): event times are compared across sensors",
        )
    } else {
        Step::pass("clock", found)
    }
}

/// The open stream and the next self-test id.
struct Link {
    session: Session,
    timeout: Duration,
    next_id: u64,
}

impl Link {
    /// Sends `alert` as a self-test event and waits for the SOC's
    /// acknowledgement; returns the round trip.
    async fn send(&mut self, alert: Alert) -> Result<Duration, UplinkError> {
        let id = self.next_id;
        self.next_id += 1;
        let test = SelfTest {
            id,
            event: Some(Event {
                seq: 0,
                time: Some(owlet_proto::now()),
                kind: Some(Kind::Alert(alert)),
            }),
        };
        let started = Instant::now();
        send(&self.session.outbound, Outbound::SelfTest(Box::new(test))).await?;
        let answer = tokio::time::timeout(self.timeout, self.session.inbound.message()).await;
        let rtt = started.elapsed();
        match answer {
            Err(_) => Err(UplinkError::Protocol(format!(
                "no acknowledgement of the test event within {}s",
                self.timeout.as_secs()
            ))),
            Ok(Err(status)) => Err(UplinkError::Refused(status)),
            Ok(Ok(None)) => Err(UplinkError::Closed),
            Ok(Ok(Some(msg))) => match msg.body {
                Some(soc_message::Body::SelfTestAck(ack)) if ack.id == id => Ok(rtt),
                other => Err(UplinkError::Protocol(format!(
                    "expected the acknowledgement of self-test {id}, got {other:?}"
                ))),
            },
        }
    }
}

impl Link {
    /// Ends the stream the way the SOC expects (our side first, then its
    /// answer to the end), so a self-test leaves no "stream ended with an
    /// error" in the SOC's log.
    async fn close(self) {
        let Session {
            outbound,
            mut inbound,
            ..
        } = self.session;
        drop(outbound);
        let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
        let _ = tokio::time::timeout(self.timeout, drain).await;
    }
}

async fn send(outbound: &mpsc::Sender<Outbound>, message: Outbound) -> Result<(), UplinkError> {
    outbound
        .send(message)
        .await
        .map_err(|_| UplinkError::Closed)
}

fn alert(name: &str, facts: &HostFacts) -> Alert {
    let mut labels = HashMap::new();
    labels.insert("hostname".to_string(), facts.hostname.clone());
    labels.insert(
        "agent_version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    Alert {
        source: SOURCE.into(),
        subject: facts.hostname.clone(),
        name: name.into(),
        labels,
        ..Default::default()
    }
}

/// The operation test: one self-test record at the SOC, acknowledged.
async fn test_event(
    link: &mut Link,
    facts: &HostFacts,
    local_summary: &str,
    setting: &Setting,
) -> Step {
    let alert = Alert {
        severity: Severity::Info as i32,
        old_state: State::Unknown as i32,
        new_state: State::Up as i32,
        message: format!("owlet selftest: operation test ({local_summary})"),
        ..alert("selftest_operation", facts)
    };
    match link.send(alert).await {
        Ok(rtt) => Step::pass(
            "test_event",
            format!(
                "stored and acknowledged by the SOC in {:.1} ms (a `selftest` record in `owlet-soc tail`)",
                super::millis(rtt)
            ),
        )
        .with_round_trip(rtt),
        Err(e) => failed("test_event", &e, setting),
    }
}

/// The failure test: a TCP check to a loopback port nothing listens on must
/// fail, and the alert it produces must be acknowledged by the SOC.
async fn failure_test(link: &mut Link, facts: &HostFacts, setting: &Setting) -> Step {
    let target = match closed_loopback_port() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(e) => {
            return Step::fail(
                "failure_test",
                format!("cannot find a closed loopback port: {e}"),
                "check that the loopback interface is up (`ip link set lo up`)",
            );
        }
    };
    let mut check =
        owlet_probe::CheckConfig::new("selftest-failure", owlet_probe::CheckTypeName::Tcp, &target);
    check.timeout = Duration::from_secs(2);
    let spec = match owlet_probe::CheckSpec::from_config(&check) {
        Ok(spec) => spec,
        Err(issues) => {
            return Step::fail(
                "failure_test",
                format!("the test check is invalid: {issues:?}"),
                "report this as a bug",
            );
        }
    };
    let result = owlet_probe::run_check(&spec).await;
    if result.result() != State::Down {
        return Step::fail(
            "failure_test",
            format!(
                "the deliberately failing check to {target} did not fail ({:?}: {})",
                result.result(),
                result.message
            ),
            "something answers on a loopback port that was just free: run the self-test again",
        );
    }
    let failure = result.failure();
    let alert = Alert {
        severity: Severity::Warning as i32,
        old_state: State::Up as i32,
        new_state: State::Down as i32,
        failure: failure as i32,
        message: format!(
            "owlet selftest: failure test, TCP check to {target} failed as intended ({})",
            result.message
        ),
        last_result: Some(result),
        ..alert("selftest_failure", facts)
    };
    match link.send(alert).await {
        Ok(rtt) => Step::pass(
            "failure_test",
            format!(
                "a TCP check to {target} failed as intended ({}); its alert was acknowledged by the SOC in {:.1} ms",
                failure_name(failure),
                super::millis(rtt)
            ),
        )
        .with_round_trip(rtt),
        Err(e) => failed("failure_test", &e, setting),
    }
}

fn failure_name(failure: FailureClass) -> String {
    failure
        .as_str_name()
        .trim_start_matches("FAILURE_CLASS_")
        .to_lowercase()
}

/// A loopback port that was free a moment ago (bound, then released).
fn closed_loopback_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftest::Status;

    #[test]
    fn the_clock_passes_within_the_tolerance_and_fails_beyond_it() {
        let sent = SystemTime::now();
        let received = sent + Duration::from_millis(20);
        let at = |offset_ms: i64| {
            let middle = sent + Duration::from_millis(10);
            let t = if offset_ms >= 0 {
                middle + Duration::from_millis(offset_ms as u64)
            } else {
                middle - Duration::from_millis(offset_ms.unsigned_abs())
            };
            owlet_proto::timestamp(t)
        };
        let tolerance = Duration::from_secs(2);
        for (offset_ms, status) in [
            (0, Status::Pass),
            (1_500, Status::Pass),
            (-1_500, Status::Pass),
            (2_500, Status::Fail),
            (-2_500, Status::Fail),
        ] {
            let step = clock(Some(&at(offset_ms)), sent, received, tolerance);
            assert_eq!(step.status, status, "{offset_ms} ms: {step:?}");
            if status == Status::Fail {
                assert!(step.fix.contains("NTP"), "{step:?}");
                assert!(
                    step.detail.contains(&format!("{offset_ms:+}.0 ms")),
                    "{step:?}"
                );
            }
        }
        let tight = clock(Some(&at(600)), sent, received, Duration::from_millis(500));
        assert_eq!(tight.status, Status::Fail, "{tight:?}");
        assert_eq!(clock(None, sent, received, tolerance).status, Status::Fail);
    }
}
