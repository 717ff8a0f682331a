//! The scaled-out SOC end to end: two stateless receivers (`owlet-soc serve`
//! with `[sink] type = "nats"`) on a real 3-node JetStream cluster (R3), the
//! real `owlet-soc writer` into a real PostgreSQL, and a real agent whose
//! connection is cut mid-stream and resumes on the other receiver, while
//! the first one stays up (stale). Every event must be on the agent's
//! subject exactly once, in order, and in PostgreSQL exactly once: no
//! duplicate, no gap. The writer is killed -9 mid-stream and restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use owlet_soc_bus::testkit::{NatsCluster, Postgres, assert_contiguous, stored_seqs, subject_seqs};
use owlet_tests::*;
use tokio::net::{TcpListener, TcpStream};

/// Forwards each connection to `targets[current]`; `switch` points new
/// connections at the next target and cuts the open ones.
struct Switch {
    current: Arc<AtomicUsize>,
    cut: tokio::sync::watch::Sender<usize>,
    port: u16,
}

impl Switch {
    async fn start(targets: Vec<String>) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let current = Arc::new(AtomicUsize::new(0));
        let (cut, _) = tokio::sync::watch::channel(0);
        let (index, cuts) = (Arc::clone(&current), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let target = targets[index.load(Ordering::SeqCst)].clone();
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Switch { current, cut, port }
    }

    fn switch(&self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }
}

fn nats_sink(config: &std::path::Path, servers: &[String], listen: Option<u16>) {
    let mut table: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let mut sink = toml::Table::new();
    sink.insert("type".into(), "nats".into());
    sink.insert("servers".into(), servers.to_vec().into());
    table.insert("sink".into(), sink.into());
    if let Some(port) = listen {
        table["server"]
            .as_table_mut()
            .unwrap()
            .insert("listen".into(), format!("127.0.0.1:{port}").into());
    }
    std::fs::write(config, toml::to_string(&table).unwrap()).unwrap();
}

fn serve(config: &std::path::Path, name: &str, dir: &std::path::Path) -> Proc {
    let mut cmd = owlet_soc();
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(name, cmd, dir);
    wait_until(&format!("{name} to serve"), DEADLINE, || {
        if let Some(status) = proc.try_wait() {
            panic!("{name} exited early with {status}:\n{}", proc.log());
        }
        proc.log().contains(" serving")
    });
    proc
}

#[test]
fn an_agent_moved_between_two_receivers_mid_stream_is_stored_exactly_once() {
    const RATE: u64 = 2_000;
    const N: u64 = 12_000;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = NatsCluster::start(3);
    rt.block_on(cluster.wait_ready());
    let pg = Postgres::start();
    let admin = rt.block_on(pg.client("owlet"));

    let soc = Soc::init();
    let dir = soc.tmp.path().to_path_buf();
    nats_sink(&soc.config, &cluster.urls(), None);
    let second = soc.ca_dir.join("soc2.toml");
    std::fs::copy(&soc.config, &second).unwrap();
    nats_sink(&second, &cluster.urls(), Some(free_port()));
    let one = serve(&soc.config, "receiver-1", &dir);
    let two = serve(&second, "receiver-2", &dir);
    let targets = [&soc.config, &second].map(|c| {
        let table: toml::Table = std::fs::read_to_string(c).unwrap().parse().unwrap();
        table["server"]["listen"].as_str().unwrap().to_string()
    });
    let switch = rt.block_on(Switch::start(targets.to_vec()));

    let writer_toml = dir.join("writer.toml");
    std::fs::write(
        &writer_toml,
        format!(
            "[nats]\nservers = {:?}\n\n[postgres]\nconnect = \"{}\"\n\n[writer]\nack_wait = \"2s\"\nbatch = 200\n",
            cluster.urls(),
            pg.conninfo("owlet")
        ),
    )
    .unwrap();
    let start_writer = || {
        let mut cmd = owlet_soc();
        cmd.args(["writer", "--config"])
            .arg(&writer_toml)
            .env("NO_COLOR", "1");
        Proc::spawn("writer", cmd, &dir)
    };
    let mut writer = start_writer();

    let mut agent = soc.issue("acme", "a");
    agent.set("soc", "address", format!("127.0.0.1:{}", switch.port));
    agent.synthetic(RATE, N);
    agent.start();
    let stored = || rt.block_on(stored_seqs(&admin, "acme", "a")).len() as u64;
    wait_until("the first events in PostgreSQL", DEADLINE, || {
        stored() > 1_000
    });
    // The agent's connection moves from receiver 1 to receiver 2 mid-stream.
    let before_switch = stored();
    switch.switch();
    wait_until("the agent on receiver 2", DEADLINE, || {
        two.log().contains("agent connected")
    });
    // The writer dies between whatever it was doing, and comes back.
    wait_until("more events stored", DEADLINE, || stored() > 4_000);
    writer.kill9();
    let at_kill = stored();
    sleep(Duration::from_millis(500));
    writer = start_writer();
    // Mid-stream means events still to be stored (the agent may have
    // produced them all already; its spool holds the rest).
    assert!(
        before_switch < N && at_kill < N,
        "all {N} events were stored before the handover ({before_switch}) or the writer kill ({at_kill}): the test proves little"
    );
    agent.wait_synthetic_finished(Duration::from_secs(180));
    agent.drain_and_stop(Duration::from_secs(120));

    let js = rt.block_on(async {
        let client = async_nats::connect(cluster.urls().as_slice())
            .await
            .unwrap();
        async_nats::jetstream::new(client)
    });
    // The agent's sequence numbers start anywhere and carry its status
    // events beside the N synthetic ones: contiguous from the first.
    let on_subject = rt.block_on(subject_seqs(&js, "acme", "a"));
    let first = on_subject[0] as i128;
    assert_contiguous("the agent's subject", &on_subject, first);
    assert!(
        on_subject.len() as u64 >= N,
        "{} events on the subject, {N} sent",
        on_subject.len()
    );
    wait_until("every event in PostgreSQL", DEADLINE, || {
        stored() >= on_subject.len() as u64
    });
    sleep(Duration::from_secs(3)); // a redelivery (ack_wait 2s) would show now
    let in_pg = rt.block_on(stored_seqs(&admin, "acme", "a"));
    assert_contiguous("PostgreSQL", &in_pg, first);
    assert_eq!(
        in_pg.len(),
        on_subject.len(),
        "PostgreSQL holds what the subject holds"
    );
    assert!(
        one.log().contains("agent connected"),
        "receiver 1 never had the agent"
    );
    drop((one, two, writer));
}
