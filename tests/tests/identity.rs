//! Identity comes from the certificate only (invariant 4): a hello that
//! claims another agent id or tenant cannot write there.
//!
//! The `owlet` agent itself refuses to start with claims its certificate
//! contradicts, so the SOC's own check is driven by a raw gRPC client here
//! (tonic over the agent's certificate, as a modified or foreign agent
//! would): the SOC must refuse the hello, log the spoof, and store nothing.

use std::sync::Arc;

use owlet_proto::v1::{
    AgentMessage, Hello, agent_message, soc_message, telemetry_client::TelemetryClient,
};
use owlet_tests::*;
use rustls::pki_types::ServerName;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

fn spoof_refusals(soc: &Soc) -> usize {
    soc.log().matches("identity spoof refused").count()
}

/// Opens a stream to the SOC with `agent`'s certificate and sends a hello
/// with the given claims; returns the SOC's answer to it: `Ok(tenant/agent)`
/// of the welcome, or the refusal.
fn hello(
    soc: &Soc,
    agent: &Agent,
    claim_tenant: &str,
    claim_id: &str,
) -> Result<String, tonic::Status> {
    let tls = owlet_tls::client_config(
        &soc.ca_dir.join("ca.pem"),
        &agent.dir.join("agent.pem"),
        &agent.dir.join("agent.key"),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let address = soc.address();
    let hello = Hello {
        protocol_version: owlet_proto::PROTOCOL_VERSION,
        agent_version: "spoof-test".into(),
        agent_time: Some(owlet_proto::now()),
        claimed_tenant: claim_tenant.into(),
        claimed_agent_id: claim_id.into(),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let channel = Endpoint::from_static("http://soc.owlet.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let connector = connector.clone();
                let address = address.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(&address).await?;
                    let name = ServerName::try_from("127.0.0.1").unwrap();
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
                }
            }))
            .await
            .expect("TLS connection to the SOC");
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })
        .await
        .unwrap();
        let mut inbound = TelemetryClient::new(channel)
            .stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        // Keep the request stream open until the answer arrives.
        let answer = inbound.message().await;
        drop(tx);
        match answer?.and_then(|m| m.body) {
            Some(soc_message::Body::Welcome(w)) => Ok(format!("{}/{}", w.tenant, w.agent_id)),
            other => panic!("the SOC answered a hello with {other:?}"),
        }
    })
}

fn assert_spoof_refused(claim_tenant: &str, claim_id: &str) {
    let mut soc = Soc::init();
    soc.start();
    // Certificate for acme/a.
    let agent = soc.issue("acme", "a");
    let before = spoof_refusals(&soc);
    let status = hello(&soc, &agent, claim_tenant, claim_id)
        .expect_err("the SOC welcomed a hello claiming another identity");
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "refusal of a spoofing hello: {status:?}"
    );
    wait_until("the SOC to log the spoof", DEADLINE, || {
        spoof_refusals(&soc) > before
    });
    let db = soc.db();
    assert!(
        db.agent(claim_tenant, claim_id).is_none(),
        "agent row for the claimed {claim_tenant}/{claim_id}: {:?}",
        db.agents()
    );
    assert!(
        db.agents()
            .iter()
            .all(|a| a.tenant != claim_tenant || claim_tenant == "acme"),
        "rows under tenant {claim_tenant}: {:?}",
        db.agents()
    );
    assert_eq!(db.count(), 0, "events stored for a spoofing hello");

    // Control: the same client with the certificate's own claims (or
    // none) is welcomed as the certificate says, so the refusal above was
    // the claim's doing.
    assert_eq!(hello(&soc, &agent, "acme", "a").unwrap(), "acme/a");
    assert_eq!(hello(&soc, &agent, "", "").unwrap(), "acme/a");
    assert!(
        db.agent(claim_tenant, claim_id).is_none(),
        "agent row for the claimed {claim_tenant}/{claim_id} after the control: {:?}",
        db.agents()
    );
}

#[test]
fn a_hello_claiming_another_agent_id_is_refused() {
    assert_spoof_refused("acme", "b");
}

#[test]
fn a_hello_claiming_another_tenant_is_refused() {
    assert_spoof_refused("evil", "a");
}

#[test]
fn the_agent_does_not_start_with_claims_its_certificate_contradicts() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.set("agent", "tenant", "evil");
    agent.write_config();
    let out = output(owlet().args(["run", "--config"]).arg(&agent.config_path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "owlet run started with a spoofing claim: {stderr}"
    );
    assert!(
        stderr.contains("evil") && stderr.contains("owlet://acme/a"),
        "the error does not name the claim and the certificate's identity: {stderr}"
    );
    assert!(soc.db().agents().is_empty(), "{:?}", soc.db().agents());
}

#[test]
fn agent_without_claims_stores_under_its_certificate_identity() {
    let mut soc = Soc::init();
    soc.start();
    let mut agent = soc.issue("acme", "a");
    agent.unset("agent", "tenant").unset("agent", "id");
    agent.synthetic(500, 300);
    agent.start();
    let db = soc.db();
    agent.wait_synthetic_finished(DEADLINE);
    agent.drain_and_stop(DEADLINE);
    let agents = db.agents();
    assert_eq!(agents.len(), 1, "agent rows: {agents:?}");
    assert_eq!(
        (agents[0].tenant.as_str(), agents[0].agent_id.as_str()),
        ("acme", "a")
    );
    assert!(
        db.events()
            .iter()
            .all(|e| e.tenant == "acme" && e.agent == "a")
    );
    assert_counters(&synthetic_counters(&db.events_of("acme", "a")), 0..300);
}
