//! `owlet health` and `owlet reload`: clients of the control socket.

use std::path::PathBuf;

use crate::control;
use crate::status::Verdict;

/// Prints the agent's health; the exit status is the Nagios verdict, 3
/// (UNKNOWN) when the agent cannot be reached.
pub async fn health(socket: PathBuf, json: bool) -> anyhow::Result<i32> {
    let reply = match control::request(&socket, "health").await {
        Ok(reply) => reply,
        Err(e) => {
            println!(
                "OWLET UNKNOWN - cannot reach the agent at {}: {e} (is `owlet run` up?)",
                socket.display()
            );
            return Ok(Verdict::Unknown.exit_code());
        }
    };
    let value: serde_json::Value = serde_json::from_str(&reply)?;
    let verdict = match value["verdict"].as_str() {
        Some("OK") => Verdict::Ok,
        Some("WARNING") => Verdict::Warning,
        Some("CRITICAL") => Verdict::Critical,
        _ => Verdict::Unknown,
    };
    if json {
        println!("{reply}");
    } else {
        let reasons: Vec<&str> = value["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        let summary = if reasons.is_empty() {
            "all good".to_string()
        } else {
            reasons.join("; ")
        };
        let m = &value["metrics"];
        println!(
            "OWLET {} - {summary} | connection={} spool_events={} spool_bytes={}B accepted={}c dropped={}c",
            value["verdict"].as_str().unwrap_or("UNKNOWN"),
            m["connection"].as_str().unwrap_or("?"),
            value["spool_events"],
            value["spool_bytes"],
            m["events_accepted"],
            m["events_dropped"],
        );
    }
    Ok(verdict.exit_code())
}

pub async fn reload(socket: PathBuf) -> anyhow::Result<i32> {
    let reply = control::request(&socket, "reload")
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the agent at {}: {e}", socket.display()))?;
    println!("{reply}");
    Ok(0)
}
