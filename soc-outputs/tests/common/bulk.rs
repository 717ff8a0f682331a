//! A test server implementing the documented Elasticsearch `_bulk` API
//! (NDJSON action/document pairs, `create` answering 201 for a new `_id`
//! and 409 for an existing one, per-item statuses, `errors`, an
//! `Authorization` check), and an `elasticsearch` output pointed at it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use owlet_soc_outputs::{OutputConfig, OutputType};
use serde_json::{Value, json};

use super::{Handler, TestCa, json_response, token_file};

#[derive(Default)]
pub struct Index {
    /// (index, _id) → document.
    pub docs: HashMap<(String, String), Value>,
    /// `_id`s in the order they were created.
    pub created: Vec<String>,
    /// Every create action received (resends included).
    pub attempts: usize,
    /// `_id`s to refuse once with 429 (a busy cluster).
    pub reject_once: HashSet<String>,
    pub bad_requests: Vec<String>,
    /// `_id`s refused every time (a mapping error).
    pub reject_always: HashSet<String>,
    /// A request holding this `_id` gets no answer (a hung node).
    pub stall_on: Option<String>,
    pub stalled: bool,
}

pub type Shared = Arc<Mutex<Index>>;

pub fn bulk_handler(index: Shared) -> Handler {
    Arc::new(move |req| {
        let index = index.clone();
        Box::pin(async move {
            let body = String::from_utf8(req.body().to_vec()).unwrap();
            let stall = {
                let mut ix = index.lock().unwrap();
                let hit = ix
                    .stall_on
                    .as_ref()
                    .is_some_and(|id| body.contains(&format!("\"_id\":\"{id}\"")));
                ix.stalled |= hit;
                hit
            };
            if stall {
                // Never answers; the client gives up or goes away.
                std::future::pending::<()>().await;
            }
            let mut ix = index.lock().unwrap();
            if req.uri().path() != "/_bulk" || req.method() != "POST" {
                return json_response(404, json!({"error": "no handler"}));
            }
            if req.headers().get("authorization").map(|v| v.as_bytes()) != Some(b"ApiKey s3cret") {
                return json_response(
                    401,
                    json!({"error": {"type": "security_exception", "reason": "missing authentication credentials"}, "status": 401}),
                );
            }
            if req.headers().get("content-type").map(|v| v.as_bytes())
                != Some(b"application/x-ndjson")
            {
                ix.bad_requests.push("content-type".into());
            }
            if !body.ends_with('\n') {
                // The documented rule: the final line must end with a newline.
                return json_response(
                    400,
                    json!({"error": {"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]"}, "status": 400}),
                );
            }
            let lines: Vec<&str> = body.lines().collect();
            let mut items = Vec::new();
            let mut errors = false;
            for pair in lines.chunks(2) {
                let action: Value = serde_json::from_str(pair[0]).unwrap();
                let doc: Value = serde_json::from_str(pair[1]).unwrap();
                let create = &action["create"];
                let (name, id) = (
                    create["_index"].as_str().unwrap().to_string(),
                    create["_id"].as_str().unwrap().to_string(),
                );
                assert_eq!(doc["event"]["id"], id.as_str(), "_id is the event id");
                ix.attempts += 1;
                let item = if ix.reject_always.contains(&id) {
                    errors = true;
                    json!({"_index": name, "_id": id, "status": 400, "error": {"type": "document_parsing_exception", "reason": "[1:2] failed to parse field [source.ip] of type [ip]"}})
                } else if ix.reject_once.remove(&id) {
                    errors = true;
                    json!({"_index": name, "_id": id, "status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}})
                } else if let Entry::Vacant(slot) = ix.docs.entry((name.clone(), id.clone())) {
                    slot.insert(doc);
                    ix.created.push(id.clone());
                    let seq_no = ix.created.len() - 1;
                    json!({"_index": name, "_id": id, "_version": 1, "result": "created", "status": 201, "_seq_no": seq_no, "_primary_term": 1})
                } else {
                    errors = true;
                    json!({"_index": name, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": format!("[{id}]: version conflict, document already exists (current version [1])")}})
                };
                items.push(json!({"create": item}));
            }
            json_response(200, json!({"took": 3, "errors": errors, "items": items}))
        })
    })
}

pub fn config(
    server_url: &str,
    ca: &TestCa,
    dir: &std::path::Path,
    tenants: &[&str],
) -> OutputConfig {
    let mut c = OutputConfig::new("es", OutputType::Elasticsearch, tenants);
    c.url = Some(server_url.to_string());
    c.ca_file = Some(ca.ca.clone());
    c.token_file = Some(token_file(dir, "s3cret"));
    c.batch_size = 50;
    c.poll = Duration::from_millis(100);
    c.retry_min = Duration::from_millis(200);
    c.retry_max = Duration::from_secs(2);
    c
}
