//! The scaled-out SOC for end-to-end tests: a real 3-node JetStream
//! cluster (R3) and a real PostgreSQL (owlet-soc-bus's testkit), receivers
//! (`owlet-soc serve` with `[sink] type = "nats"`), the real
//! `owlet-soc writer`, a [`Switch`] that moves an agent's connection from
//! one receiver to another, and the end-to-end exactly-once check.
//!
//! Everything an assertion reads comes from the servers themselves: the
//! agent's subject on the stream and the tenant's table in PostgreSQL.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use owlet_soc_bus::testkit::{NatsCluster, Postgres, assert_contiguous, subject_seqs};
use tokio::net::{TcpListener, TcpStream};

use crate::*;

/// Forwards each connection to `targets[current]`; [`Switch::switch`]
/// points new connections at the next target (round robin) and cuts the
/// open ones.
pub struct Switch {
    current: Arc<AtomicUsize>,
    cut: tokio::sync::watch::Sender<usize>,
    pub port: u16,
}

impl Switch {
    /// Must run inside a tokio runtime (it spawns the forwarding tasks).
    pub async fn start(targets: Vec<String>) -> Switch {
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
                let target = targets[index.load(Ordering::SeqCst) % targets.len()].clone();
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

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// New connections go to the next target; open ones are cut.
    pub fn switch(&self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }
}

/// Rewrites `config` (a `soc.toml`) for `[sink] type = "nats"` on
/// `servers`, listening on `listen` when given, with the `[sink]` keys of
/// `extra` (e.g. `duplicate_window`).
pub fn nats_sink(config: &Path, servers: &[String], listen: Option<u16>, extra: &[(&str, &str)]) {
    let mut table: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let mut sink = toml::Table::new();
    sink.insert("type".into(), "nats".into());
    sink.insert("servers".into(), servers.to_vec().into());
    for (key, value) in extra {
        sink.insert((*key).into(), (*value).into());
    }
    table.insert("sink".into(), sink.into());
    if let Some(port) = listen {
        table["server"]
            .as_table_mut()
            .unwrap()
            .insert("listen".into(), format!("127.0.0.1:{port}").into());
    }
    std::fs::write(config, toml::to_string(&table).unwrap()).unwrap();
}

/// `server.listen` of a `soc.toml`.
pub fn listen_of(config: &Path) -> String {
    let table: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    table["server"]["listen"].as_str().unwrap().to_string()
}

/// Starts `owlet-soc serve --config CONFIG` as `name` (its log appends to
/// `dir/NAME.err` across restarts) and waits until this run serves.
pub fn serve(config: &Path, name: &str, dir: &Path) -> Proc {
    let before = std::fs::read_to_string(dir.join(format!("{name}.err")))
        .unwrap_or_default()
        .matches(" serving")
        .count();
    let mut cmd = owlet_soc();
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("NO_COLOR", "1");
    let mut proc = Proc::spawn(name, cmd, dir);
    wait_until(&format!("{name} to serve"), DEADLINE, || {
        if let Some(status) = proc.try_wait() {
            panic!("{name} exited early with {status}:\n{}", proc.log());
        }
        proc.log().matches(" serving").count() > before
    });
    proc
}

/// Receivers 1 and 2 and the switch in front of them ([`Scale::two_receivers`]).
pub struct TwoReceivers {
    pub one: Proc,
    pub two: Proc,
    pub switch: Switch,
}

/// What [`Scale::one_receiver`] started (the agent is not started yet).
pub struct OneReceiver {
    pub receiver: Proc,
    pub writer: Proc,
    pub agent: Agent,
}

/// The servers of a scaled-out SOC and the SOC's CA (`soc.toml` rewritten
/// for the bus); receivers and writers are started by the test, which owns
/// their [`Proc`]s.
pub struct Scale {
    pub cluster: NatsCluster,
    pub pg: Postgres,
    /// The CA, `soc.toml` (receiver 1) and every process's log.
    pub soc: Soc,
    pub dir: PathBuf,
    pub writer_toml: PathBuf,
    admin: RefCell<Option<tokio_postgres::Client>>,
    // Last: the PostgreSQL client's connection task runs on it.
    pub rt: tokio::runtime::Runtime,
}

impl Scale {
    /// Starts the JetStream cluster and PostgreSQL; writes `soc.toml` for
    /// the bus (with the `[sink]` keys of `sink_extra`) and `writer.toml`.
    pub fn start(sink_extra: &[(&str, &str)]) -> Scale {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let cluster = NatsCluster::start(3);
        rt.block_on(cluster.wait_ready());
        let pg = Postgres::start();
        let admin = rt.block_on(pg.client("owlet"));
        let soc = Soc::init();
        let dir = soc.tmp.path().to_path_buf();
        nats_sink(&soc.config, &cluster.urls(), None, sink_extra);
        let writer_toml = dir.join("writer.toml");
        std::fs::write(
            &writer_toml,
            format!(
                "[nats]\nservers = {:?}\n\n[postgres]\nconnect = \"{}\"\n\n[writer]\nbatch = 200\n",
                cluster.urls(),
                pg.conninfo("owlet"),
            ),
        )
        .unwrap();
        Scale {
            cluster,
            pg,
            soc,
            dir,
            writer_toml,
            admin: RefCell::new(Some(admin)),
            rt,
        }
    }

    /// A copy of `soc.toml` for receiver `name`, on its own port.
    pub fn another_receiver(&self, name: &str) -> PathBuf {
        let config = self.soc.ca_dir.join(format!("{name}.toml"));
        std::fs::copy(&self.soc.config, &config).unwrap();
        let mut table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
        table["server"]
            .as_table_mut()
            .unwrap()
            .insert("listen".into(), format!("127.0.0.1:{}", free_port()).into());
        std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();
        config
    }

    /// Two receivers (`receiver-1` on `soc.toml`, `receiver-2` on a copy
    /// on its own port) behind a [`Switch`] that starts on receiver 1.
    pub fn two_receivers(&self) -> TwoReceivers {
        let second = self.another_receiver("soc2");
        let one = serve(&self.soc.config, "receiver-1", &self.dir);
        let two = serve(&second, "receiver-2", &self.dir);
        let switch = self.rt.block_on(Switch::start(vec![
            listen_of(&self.soc.config),
            listen_of(&second),
        ]));
        TwoReceivers { one, two, switch }
    }

    /// One receiver, a writer (with `writer_env`) and agent `acme/a`
    /// connected straight to the receiver, producing `total` events at
    /// `rate` a second.
    pub fn one_receiver(&self, rate: u64, total: u64, writer_env: &[(&str, &str)]) -> OneReceiver {
        let receiver = serve(&self.soc.config, "receiver", &self.dir);
        let writer = self.writer("writer", writer_env);
        let mut agent = self.agent("acme", "a", &self.soc.address());
        agent.synthetic(rate, total);
        OneReceiver {
            receiver,
            writer,
            agent,
        }
    }

    /// A client of the JetStream cluster.
    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        self.rt.block_on(async {
            let client = async_nats::connect(self.cluster.urls().as_slice())
                .await
                .unwrap();
            async_nats::jetstream::new(client)
        })
    }

    /// Starts `owlet-soc writer` as `name` with `env` added.
    pub fn writer(&self, name: &str, env: &[(&str, &str)]) -> Proc {
        let mut cmd = owlet_soc();
        cmd.args(["writer", "--config"])
            .arg(&self.writer_toml)
            .env("NO_COLOR", "1");
        for (key, value) in env {
            cmd.env(key, value);
        }
        Proc::spawn(name, cmd, &self.dir)
    }

    /// An agent of `tenant` issued by the SOC's CA, connecting to `address`.
    pub fn agent(&self, tenant: &str, agent: &str, address: &str) -> Agent {
        let mut agent = self.soc.issue(tenant, agent);
        agent.set("soc", "address", address);
        agent
    }

    /// The agent's seqs in PostgreSQL, ascending (empty while the table
    /// does not exist or the server is away: the connection is made again
    /// on the next call).
    pub fn stored(&self, tenant: &str, agent: &str) -> Vec<i64> {
        let sql = format!(
            "SELECT seq FROM {}.events WHERE agent = $1 AND seq IS NOT NULL ORDER BY seq",
            owlet_soc_bus::writer::schema_of(tenant)
        );
        self.query(&sql, &[&agent])
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// The writer's committed position in `tenant`'s stream and the
    /// highest stream sequence stored in the tenant's `events`: equal
    /// whenever no transaction is open, since they commit together.
    pub fn position_and_last_stored(&self, tenant: &str) -> (i64, i64) {
        let sql = format!(
            "SELECT (SELECT position FROM owlet_bus.cursors WHERE consumer = $1 AND tenant = $2), \
             (SELECT max(stream_seq) FROM {}.events)",
            owlet_soc_bus::writer::schema_of(tenant)
        );
        let rows = self.query(&sql, &[&owlet_soc_bus::writer::CURSOR_CONSUMER, &tenant]);
        let row = rows.first().expect("the position query answers");
        (row.get(0), row.get(1))
    }

    /// The cursor of SIEM output `output` in `tenant` (`owlet-soc
    /// outputs`) and the tenant's highest stored id: equal once the output
    /// caught up.
    pub fn output_position_and_last_id(&self, output: &str, tenant: &str) -> (i64, i64) {
        self.cursor_and_last_id(&format!("output:{output}"), tenant)
    }

    /// The position of reader `consumer` (`output:NAME`, `notify`) in
    /// `tenant` and the tenant's highest stored id.
    pub fn cursor_and_last_id(&self, consumer: &str, tenant: &str) -> (i64, i64) {
        let sql = format!(
            "SELECT coalesce((SELECT position FROM owlet_bus.cursors WHERE consumer = $1 AND tenant = $2), 0), \
             (SELECT coalesce(max(id), 0) FROM {}.events)",
            owlet_soc_bus::writer::schema_of(tenant)
        );
        let rows = self.query(&sql, &[&consumer, &tenant]);
        rows.first().map_or((0, 0), |row| (row.get(0), row.get(1)))
    }

    /// Rows of `sql` as the PostgreSQL superuser; none while the server
    /// is away (the connection is made again on the next call).
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        let mut admin = self.admin.borrow_mut();
        if admin.as_ref().is_none_or(|c| c.is_closed()) {
            *admin = self.rt.block_on(async {
                owlet_soc_bus::writer::connect_postgres(&self.pg.conninfo("owlet"))
                    .await
                    .ok()
            });
        }
        let Some(client) = admin.as_ref() else {
            return Vec::new();
        };
        self.rt
            .block_on(client.query(sql, params))
            .unwrap_or_default()
    }

    /// The first column (text) of every row of `sql`, as the superuser.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        self.query(sql, &[]).iter().map(|r| r.get(0)).collect()
    }

    /// How many of the agent's events PostgreSQL holds.
    pub fn stored_count(&self, tenant: &str, agent: &str) -> u64 {
        self.stored(tenant, agent).len() as u64
    }

    /// The `Owlet-Seq` of every message on the agent's subject.
    pub fn on_subject(&self, tenant: &str, agent: &str) -> Vec<u64> {
        let js = self.jetstream();
        self.rt.block_on(subject_seqs(&js, tenant, agent))
    }

    /// Lets the agent produce its total and drain its spool, then
    /// [`Scale::assert_exactly_once`].
    pub fn finish(&self, agent: &mut Agent, at_least: u64) -> Vec<u64> {
        agent.wait_synthetic_finished(Duration::from_secs(180));
        agent.drain_and_stop(Duration::from_secs(120));
        self.assert_exactly_once("acme", "a", at_least)
    }

    /// The end-to-end check, once the agent drained its spool: the agent's
    /// subject holds its events exactly once, contiguous from its first
    /// sequence number (an agent's numbers start anywhere, and carry its
    /// status events beside the synthetic ones), at least `at_least` of
    /// them; and PostgreSQL, once the writer caught up and a late duplicate
    /// had time to show, holds exactly what the subject holds. Returns the
    /// subject's seqs.
    pub fn assert_exactly_once(&self, tenant: &str, agent: &str, at_least: u64) -> Vec<u64> {
        let on_subject = self.on_subject(tenant, agent);
        assert!(
            on_subject.len() as u64 >= at_least.max(1),
            "{} events on the subject of {tenant}/{agent}, at least {at_least} sent",
            on_subject.len()
        );
        let first = on_subject[0] as i128;
        assert_contiguous("the agent's subject", &on_subject, first);
        wait_until("every event of the subject in PostgreSQL", DEADLINE, || {
            self.stored_count(tenant, agent) >= on_subject.len() as u64
        });
        sleep(Duration::from_secs(2)); // a late duplicate would show now
        let in_pg = self.stored(tenant, agent);
        assert_contiguous("PostgreSQL", &in_pg, first);
        assert_eq!(
            in_pg.len(),
            on_subject.len(),
            "PostgreSQL holds what the subject holds"
        );
        on_subject
    }
}

/// Panics unless events were still to be stored when `fault` hit (the
/// agent may have produced them all already; its spool holds the rest).
pub fn assert_mid_stream(stored_at_fault: u64, total: u64, fault: &str) {
    assert!(
        stored_at_fault < total,
        "all {total} events were stored before {fault} ({stored_at_fault}): the test proves little"
    );
}
