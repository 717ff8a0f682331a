//! Identity comes from the certificate only: an agent whose configuration
//! (and so its hello) claims another agent id or tenant cannot write there.

use std::time::Duration;

use owlet_tests::*;

fn spoof_refusals(soc: &Soc) -> usize {
    soc.log().matches("identity spoof refused").count()
}

fn assert_spoof_refused(soc: &Soc, claim_tenant: &str, claim_id: &str) {
    // Certificate for acme/a, claims from the configuration.
    let mut agent = soc.issue("acme", "a");
    let cert_id = "a";
    agent
        .set("agent", "tenant", claim_tenant)
        .set("agent", "id", claim_id);
    agent.synthetic(100, 200);
    let before = spoof_refusals(soc);
    agent.start();
    wait_until(
        "the SOC to refuse the spoofing hello twice",
        DEADLINE,
        || spoof_refusals(soc) >= before + 2,
    );
    sleep(Duration::from_secs(1));
    let health = agent.health().expect("agent health");
    assert_ne!(
        health["metrics"]["connection"], "connected",
        "spoofing agent is connected: {health}"
    );
    let db = soc.db();
    assert!(
        db.agent(claim_tenant, claim_id).is_none(),
        "agent row for the claimed {claim_tenant}/{claim_id}"
    );
    let stored: Vec<_> = db
        .events()
        .into_iter()
        .filter(|e| e.agent == cert_id || e.agent == claim_id)
        .collect();
    assert!(
        stored.is_empty(),
        "events stored for a spoofing agent: {stored:?}"
    );
    assert!(
        db.agents()
            .iter()
            .all(|a| a.tenant != claim_tenant || claim_tenant == "acme"),
        "rows under tenant {claim_tenant}: {:?}",
        db.agents()
    );
    assert!(agent.stop().success());
}

#[test]
fn agent_claiming_another_agent_id_is_refused() {
    let mut soc = Soc::init();
    soc.start();
    assert_spoof_refused(&soc, "acme", "b");
    assert_eq!(soc.db().count(), 0);
}

#[test]
fn agent_claiming_another_tenant_is_refused() {
    let mut soc = Soc::init();
    soc.start();
    assert_spoof_refused(&soc, "evil", "a");
    assert!(soc.db().agents().iter().all(|a| a.tenant != "evil"));
    assert_eq!(soc.db().count(), 0);
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
