//! The SOC's disk fills up: it refuses batches with a reason an operator
//! can read (in its log and in the agent's health), the agent keeps
//! spooling, nothing already stored is damaged, and once space is free
//! storage resumes by itself: every event stored exactly once.
//!
//! Broken on purpose: with the store's disk-full classification off (so no
//! checkpoint frees the WAL after a failed append), the log never resumes
//! and this test fails waiting for every event.

use std::time::Duration;

use owlet_tests::*;

// About 200 bytes each in the tenant's log: more than the 8 MiB left
// beside the filler, less than the 16 MiB disk.
const TOTAL: u64 = 50_000;

#[test]
fn a_full_soc_disk_refuses_with_a_reason_and_resumes_by_itself() {
    let mut soc = Soc::init();
    let disk = soc.tmp.path().join("store");
    let _tmpfs = Tmpfs::mount(&disk, "16M");
    soc.store_in(&disk);
    // Space the test frees later: the operator's clean-up.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 8 << 20]).unwrap();
    soc.start();
    let mut agent = soc.issue("acme", "full");
    agent.synthetic(5000, TOTAL);
    agent.start();

    wait_until("the SOC refusing batches: disk full", DEADLINE, || {
        soc.log().contains("disk is full")
    });
    let health = agent.health_with_problem("soc_storage");
    assert!(
        health.to_string().contains("disk is full"),
        "the agent's health does not say why: {health}"
    );
    let db = soc.db();
    let stored = db.synthetic_count("acme", "full");
    assert!(
        stored < TOTAL as usize,
        "everything fit: the disk never filled"
    );
    // What is stored is intact: the tenant's file passes SQLite's check, and
    // the stored sequence has no hole.
    let check = rusqlite::Connection::open_with_flags(
        db.tenant_file("acme"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
    .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
    .unwrap();
    assert_eq!(check, "ok");
    assert_exactly_once_so_far(&db);

    // The operator frees space; nothing else is done.
    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "every synthetic event stored",
        Duration::from_secs(180),
        || db.synthetic_count("acme", "full") == TOTAL as usize,
    );
    assert_exactly_once_so_far(&db);
    agent.stop();
}

/// Each sequence number at most once, and the agent's events form one run
/// from its first (no hole behind the high-water mark).
fn assert_exactly_once_so_far(db: &Db) {
    let mut seqs: Vec<u64> = db
        .events_of("acme", "full")
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a sequence number was stored twice");
    if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
        assert_eq!(
            (last - first + 1) as usize,
            n,
            "a hole in the stored sequence"
        );
    }
}
