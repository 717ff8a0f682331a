//! Raw JetStream publish throughput (issue 17's benchmark, `bench/scale/run.sh`):
//! the physical limit of the receiver's publish path, without gRPC, TLS,
//! agents or owlet's own bookkeeping.
//!
//! `--publishers P` tasks (one per simulated agent, each its own subject
//! `owlet.<tenant>.<agent>` on the R3 tenant stream, one shared connection
//! like a receiver's) each publish `--events N` messages in batches of
//! `--batch B`, every message the size of a real event (a synthetic
//! `CheckResult` as `owlet-loadgen` makes, protobuf) and carrying the
//! receiver's headers: `Nats-Msg-Id` `<tenant>/<agent>/<seq>`, `Owlet-Seq`,
//! and `Nats-Expected-Last-Subject-Sequence`. A batch is done when
//! JetStream acked it; then the next one starts (an agent's next batch).
//!
//! Modes (how one batch is published):
//! * `sequential`: publish, await the ack, next (each message's expected
//!   last subject sequence is the previous ack's; the only safe way without
//!   atomic batches: pipelined publishes cannot know the sequence to expect);
//! * `atomic`: the batch as one JetStream atomic batch (nats-server 2.12+,
//!   `allow_atomic`): `Nats-Batch-Id` / `-Sequence` / `-Commit`, one ack per
//!   chunk of at most 1000 messages, the expected sequence on each chunk's
//!   first message.
//!
//! Prints one line: `mode events seconds events_per_s retries`.
//!
//! Usage: `raw_publish --servers nats://127.0.0.1:4222[,…] [--publishers 50]
//!   [--events 2000] [--batch 100] [--mode atomic] [--tenant rawbench]
//!   [--keep false]` (`--keep true` leaves the stream, for a writer to store)

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use owlet_soc_bus::{SEQ_HEADER, stream_name, subject};
use prost::Message as _;

const ATOMIC_CHUNK: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sequential,
    Atomic,
}

struct Args {
    servers: Vec<String>,
    publishers: usize,
    events: u64,
    batch: usize,
    mode: Mode,
    tenant: String,
    /// Keep the stream (the benchmark's catch-up phase stores it).
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        servers: vec!["nats://127.0.0.1:4222".into()],
        publishers: 50,
        events: 2000,
        batch: 100,
        mode: Mode::Atomic,
        tenant: "rawbench".into(),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--servers" => a.servers = value.split(',').map(str::to_string).collect(),
            "--publishers" => a.publishers = value.parse().expect("--publishers N"),
            "--events" => a.events = value.parse().expect("--events N"),
            "--batch" => a.batch = value.parse().expect("--batch N"),
            "--tenant" => a.tenant = value,
            "--keep" => a.keep = value.parse().expect("--keep true|false"),
            "--mode" => {
                a.mode = match value.as_str() {
                    "sequential" => Mode::Sequential,
                    "atomic" => Mode::Atomic,
                    other => panic!("--mode sequential|atomic, not {other}"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// An event as `owlet-loadgen` makes it (same size on the bus).
fn body(n: u64) -> Bytes {
    use owlet_proto::v1::{CheckResult, CheckType, Event, State, event::Kind};
    Event {
        seq: n,
        time: Some(owlet_proto::now()),
        kind: Some(Kind::CheckResult(CheckResult {
            check_id: "synthetic".into(),
            check_type: CheckType::Tcp as i32,
            target: "127.0.0.1:9".into(),
            result: State::Up as i32,
            state: State::Up as i32,
            message: n.to_string(),
            duration_us: 1234,
            ..Default::default()
        })),
    }
    .encode_to_vec()
    .into()
}

fn headers(id_prefix: &str, seq: u64, expect: Option<u64>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{id_prefix}{seq}").as_str(),
    );
    if let Some(last) = expect {
        h.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            last.to_string().as_str(),
        );
    }
    h.insert(SEQ_HEADER, seq.to_string().as_str());
    h
}

async fn publisher(
    client: async_nats::Client,
    js: jetstream::Context,
    tenant: String,
    agent: String,
    args: (u64, usize, Mode),
) -> (u64, u64) {
    let (events, batch, mode) = args;
    let subject = subject(&tenant, &agent);
    let id_prefix = format!("{tenant}/{agent}/");
    let mut last = 0u64; // the subject's last stream sequence
    let mut retries = 0u64;
    let mut batches = 0u64;
    let mut seq = 1u64;
    while seq <= events {
        let end = (seq + batch as u64 - 1).min(events);
        match mode {
            Mode::Sequential => {
                for s in seq..=end {
                    // Retried like the receiver retries (a clustered
                    // stream may answer "expected last sequence per subject
                    // temporarily not ready" while a proposal is pending).
                    last = loop {
                        let sent = js
                            .publish_with_headers(
                                subject.clone(),
                                headers(&id_prefix, s, Some(last)),
                                body(s),
                            )
                            .await;
                        match acked(sent).await {
                            Ok(seq) => break seq,
                            Err(e) => retry(&mut retries, e).await,
                        }
                    };
                }
            }
            Mode::Atomic => {
                let mut first = seq;
                while first <= end {
                    let last_in_chunk = (first + ATOMIC_CHUNK as u64 - 1).min(end);
                    last = loop {
                        batches += 1;
                        let id = format!("{agent}-{batches}");
                        let mut commit = None;
                        for s in first..=last_in_chunk {
                            let mut h = headers(&id_prefix, s, (s == first).then_some(last));
                            h.insert("Nats-Batch-Id", id.as_str());
                            h.insert("Nats-Batch-Sequence", (s - first + 1).to_string().as_str());
                            if s == last_in_chunk {
                                h.insert("Nats-Batch-Commit", "1");
                                commit = Some(
                                    js.publish_with_headers(subject.clone(), h, body(s)).await,
                                );
                            } else {
                                client
                                    .publish_with_headers(subject.clone(), h, body(s))
                                    .await
                                    .expect("publish");
                            }
                        }
                        match acked(commit.expect("a commit")).await {
                            Ok(seq) => break seq,
                            Err(e) => retry(&mut retries, e).await,
                        }
                    };
                    first = last_in_chunk + 1;
                }
            }
        }
        seq = end + 1;
    }
    (events, retries)
}

type Sent = Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>;

/// The stream sequence JetStream acknowledged.
async fn acked(sent: Sent) -> Result<u64, jetstream::context::PublishError> {
    Ok(sent?.await?.sequence)
}

/// After a refused or lost publish: wait as the receiver does, then again.
/// A wrong last sequence cannot happen with one writer per subject.
async fn retry(retries: &mut u64, e: jetstream::context::PublishError) {
    use jetstream::context::PublishErrorKind;
    assert!(
        e.kind() != PublishErrorKind::WrongLastSequence,
        "wrong last sequence with one writer: {e}"
    );
    *retries += 1;
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::main]
async fn main() {
    let args = args();
    let addrs: Vec<async_nats::ServerAddr> = args
        .servers
        .iter()
        .map(|s| s.parse().expect("server address"))
        .collect();
    let client = async_nats::connect(addrs).await.expect("connect");
    let js = jetstream::new(client.clone());
    let name = stream_name(&args.tenant);
    let _ = js.delete_stream(&name).await;
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("owlet.{}.>", owlet_soc_bus::token(&args.tenant))],
        num_replicas: 3,
        duplicate_window: Duration::from_secs(120),
        storage: stream::StorageType::File,
        allow_atomic_publish: args.mode == Mode::Atomic,
        ..Default::default()
    })
    .await
    .expect("create the stream");
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.publishers)
        .map(|i| {
            tokio::spawn(publisher(
                client.clone(),
                js.clone(),
                args.tenant.clone(),
                format!("raw-{i}"),
                (args.events, args.batch, args.mode),
            ))
        })
        .collect();
    let (mut total, mut retries) = (0, 0);
    for t in tasks {
        let (n, r) = t.await.expect("publisher");
        total += n;
        retries += r;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut stream = js.get_stream(&name).await.expect("stream");
    let info = stream.info().await.expect("info").state.messages;
    assert_eq!(info, total, "stream holds {info} of {total} messages");
    println!(
        "{:?} {total} {secs:.3} {:.0} {retries}",
        args.mode,
        total as f64 / secs
    );
    if !args.keep {
        let _ = js.delete_stream(&name).await;
    }
}
