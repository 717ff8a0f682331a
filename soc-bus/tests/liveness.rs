//! Against a real 3-node JetStream cluster and a real PostgreSQL: silent
//! agents in the scaled-out SOC, judged by the writer from the heartbeats
//! on the agents' subjects, whichever receiver published them.

use std::time::Duration;

use bytes::Bytes;
use owlet_proto::v1::{AgentStatus, Event, event::Kind};
use owlet_soc_bus::liveness::LivenessConfig;
use owlet_soc_bus::testkit::{NatsCluster, Postgres};
use owlet_soc_bus::writer::WriterConfig;
use owlet_soc_bus::{Bus, BusConfig, Retention};
use prost::Message;

const SILENT_AFTER: Duration = Duration::from_secs(2);

fn heartbeat(seq: u64, stopping: bool) -> (u64, Bytes) {
    let event = Event {
        seq,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::AgentStatus(AgentStatus {
            stopping,
            ..Default::default()
        })),
    };
    (seq, Bytes::from(event.encode_to_vec()))
}

struct Setup {
    _cluster: NatsCluster,
    pg: Postgres,
    admin: tokio_postgres::Client,
    /// Two receivers' connections to the bus.
    receivers: [Bus; 2],
}

async fn setup() -> Setup {
    let cluster = NatsCluster::start(3);
    cluster.wait_ready().await;
    let pg = Postgres::start();
    let admin = pg.client("owlet").await;
    let one = Bus::connect(&BusConfig::new(cluster.urls())).await.unwrap();
    let two = Bus::connect(&BusConfig::new(cluster.urls())).await.unwrap();
    Setup {
        _cluster: cluster,
        pg,
        admin,
        receivers: [one, two],
    }
}

fn writer(setup: &Setup) -> tokio::task::JoinHandle<Result<(), owlet_soc_bus::BusError>> {
    let mut config = WriterConfig::new(setup.pg.conninfo("owlet"));
    config.liveness = LivenessConfig {
        silent_after: SILENT_AFTER,
        check_every: Duration::from_millis(200),
    };
    tokio::spawn(owlet_soc_bus::writer::run(
        setup.receivers[0].jetstream().clone(),
        config,
        std::future::pending(),
    ))
}

/// The SOC's liveness alerts of the tenant, oldest first: (agent, name).
async fn alerts(admin: &tokio_postgres::Client) -> Vec<(String, String)> {
    match admin
        .query(
            "SELECT agent, alert_name FROM tenant_acme.events WHERE kind = 'alert' AND seq IS NULL ORDER BY id",
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(_) => Vec::new(), // not created yet
    }
}

async fn wait_for_alerts(admin: &tokio_postgres::Client, n: usize) -> Vec<(String, String)> {
    let started = std::time::Instant::now();
    loop {
        let got = alerts(admin).await;
        if got.len() >= n || started.elapsed() > Duration::from_secs(30) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends a heartbeat each 500 ms for `beats` beats, alternating between the
/// two receivers, from `first` on.
async fn beat(setup: &Setup, first: u64, beats: u64) {
    for (i, seq) in (first..first + beats).enumerate() {
        let bus = &setup.receivers[i % 2];
        let mut log = bus
            .agent("acme", "fw-1", Retention::default())
            .await
            .unwrap();
        log.append(&[heartbeat(seq, false)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_moving_between_receivers_stays_alive_then_goes_silent_and_recovers() {
    let setup = setup().await;
    let writer = writer(&setup);
    // 6 s of heartbeats, every one through the other receiver: alive
    // throughout (the window is 2 s).
    beat(&setup, 1, 12).await;
    assert_eq!(alerts(&setup.admin).await, [], "no alert while it beats");
    // Quiet: silent once, however long it stays quiet.
    let got = wait_for_alerts(&setup.admin, 1).await;
    assert_eq!(got, [("fw-1".into(), "agent_silent".into())]);
    tokio::time::sleep(SILENT_AFTER * 2).await;
    assert_eq!(alerts(&setup.admin).await.len(), 1, "silent is said once");
    // A heartbeat again: recovered.
    beat(&setup, 13, 1).await;
    let got = wait_for_alerts(&setup.admin, 2).await;
    assert_eq!(got[1], ("fw-1".into(), "agent_recovered".into()));
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_that_said_goodbye_is_stopped_not_silent() {
    let setup = setup().await;
    let writer = writer(&setup);
    let mut log = setup.receivers[0]
        .agent("acme", "fw-1", Retention::default())
        .await
        .unwrap();
    log.append(&[heartbeat(1, false), heartbeat(2, true)])
        .await
        .unwrap();
    let got = wait_for_alerts(&setup.admin, 1).await;
    assert_eq!(got, [("fw-1".into(), "agent_stopped".into())]);
    writer.abort();
}

/// The writer away for longer than the window while the agent's
/// heartbeats go on: back, it reads them before it judges, so the agent is
/// not called silent.
#[tokio::test(flavor = "multi_thread")]
async fn a_writer_catching_up_does_not_call_a_beating_agent_silent() {
    let setup = setup().await;
    let first = writer(&setup);
    beat(&setup, 1, 4).await;
    first.abort();
    let _ = first.await;
    // Longer than the window without the writer, the agent beating on.
    beat(&setup, 5, 8).await;
    let second = writer(&setup);
    beat(&setup, 13, 6).await;
    assert_eq!(
        alerts(&setup.admin).await,
        [],
        "the agent beat all along: no alert"
    );
    second.abort();
}
