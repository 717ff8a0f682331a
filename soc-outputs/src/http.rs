//! The HTTP outputs: Elasticsearch/OpenSearch `_bulk`, Splunk HEC, and
//! the signed webhook.
//!
//! They send ECS documents (`owlet_soc_ecs::document`) and say `Ok` only
//! when the destination confirmed every event of the batch:
//! * `_bulk` with the `create` action and `_id` = the event id: an item
//!   that is created (2xx) or already there (409, a resend) is confirmed;
//!   any other item error fails the batch, which is sent again whole (the
//!   items already created answer 409 then);
//! * HEC: `code` 0; with indexer acknowledgement, also `true` for the
//!   batch's `ackId` from `/services/collector/ack` within `ack_timeout`
//!   (else the batch is sent again);
//! * webhook: a 2xx for every event's POST.
//!
//! Response bodies are read up to a bound: a destination cannot make the
//! SOC buffer without limit.

use std::time::{Duration, Instant};

use owlet_soc_ecs::document;
use owlet_soc_store::StoredEvent;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{OutputConfig, OutputError, tls};

/// Most response bytes read (a `_bulk` answer for 10,000 items is a few MB).
const MAX_RESPONSE: usize = 32 << 20;

fn client(config: &OutputConfig) -> Result<reqwest::Client, OutputError> {
    let tls = tls::client_config(config, &[b"http/1.1"])?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .build()
        .map_err(|e| OutputError::Config {
            output: config.name.clone(),
            message: format!("HTTP client: {e}"),
        })
}

fn auth_header(
    config: &OutputConfig,
    default_scheme: &str,
) -> Result<Option<HeaderValue>, OutputError> {
    let Some(path) = &config.token_file else {
        return Ok(None);
    };
    let token = config.read_token(path)?;
    let scheme = config.auth_scheme.as_deref().unwrap_or(default_scheme);
    let mut value =
        HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| OutputError::Config {
            output: config.name.clone(),
            message: format!(
                "token_file {}: the token holds characters an HTTP header cannot carry",
                path.display()
            ),
        })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// `url` without a trailing `/` (validated: present for HTTP outputs).
fn base_url(config: &OutputConfig) -> &str {
    config
        .url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/')
}

/// The status and (bounded) body of a response, or why there is none.
async fn send(request: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// A reqwest error with its causes (connection refused, certificate…).
fn describe(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

pub(crate) struct Elastic {
    client: reqwest::Client,
    bulk_url: String,
    index: String,
    auth: Option<HeaderValue>,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

impl Elastic {
    pub(crate) fn new(config: &OutputConfig) -> Result<Self, OutputError> {
        let base = base_url(config);
        Ok(Self {
            client: client(config)?,
            bulk_url: format!("{base}/_bulk"),
            index: config
                .index
                .clone()
                .unwrap_or_else(|| "owlet-{tenant}".into()),
            auth: auth_header(config, "ApiKey")?,
        })
    }

    /// The NDJSON body: a `create` line with the event id, then the document.
    fn body(&self, tenant: &str, events: &[StoredEvent]) -> Vec<u8> {
        // Index names are lower case in Elasticsearch.
        let index = self.index.replace("{tenant}", tenant).to_lowercase();
        let mut body = Vec::with_capacity(events.len() * 1024);
        for e in events {
            let action = json!({"create": {"_index": index, "_id": e.event_id()}});
            for line in [action, document(e)] {
                // Serialising a Value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut body, &line);
                body.push(b'\n');
            }
        }
        body
    }

    pub(crate) async fn deliver(
        &mut self,
        tenant: &str,
        events: &[StoredEvent],
    ) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.bulk_url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(self.body(tenant, events));
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let (status, body) = send(request).await?;
        if !status.is_success() {
            return Err(format!("_bulk: HTTP {status}: {}", excerpt(&body)));
        }
        let parsed: BulkResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("_bulk: unreadable response ({e}): {}", excerpt(&body)))?;
        if parsed.items.len() != events.len() {
            return Err(format!(
                "_bulk: {} items answered for {} sent",
                parsed.items.len(),
                events.len()
            ));
        }
        let mut failed = 0;
        let mut first = None;
        for (item, event) in parsed.items.iter().zip(events) {
            let Some(result) = item.values().next() else {
                failed += 1;
                continue;
            };
            // 409: a document with this _id exists: sent before, confirmed.
            if (200..300).contains(&result.status) || result.status == 409 {
                continue;
            }
            failed += 1;
            if first.is_none() {
                let why = result.error.as_ref().map_or_else(String::new, |e| {
                    format!(
                        " {}: {}",
                        e["type"].as_str().unwrap_or("error"),
                        e["reason"].as_str().unwrap_or("")
                    )
                });
                first = Some(format!("{} {}{why}", event.event_id(), result.status));
            }
        }
        match first {
            None if failed == 0 => Ok(()),
            first => Err(format!(
                "_bulk: {failed} of {} items failed (first: {})",
                events.len(),
                first.unwrap_or_default()
            )),
        }
    }
}

pub(crate) struct Hec {
    client: reqwest::Client,
    event_url: String,
    ack_url: String,
    auth: Option<HeaderValue>,
    channel: String,
    ack: bool,
    ack_timeout: Duration,
    ack_poll: Duration,
    index: Option<String>,
    sourcetype: String,
}

#[derive(Deserialize)]
struct HecResponse {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: i64,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
}

/// A random channel id in the GUID form HEC wants (one per output run).
fn channel_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Hec {
    pub(crate) fn new(config: &OutputConfig) -> Result<Self, OutputError> {
        let base = base_url(config);
        Ok(Self {
            client: client(config)?,
            event_url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack"),
            auth: auth_header(config, "Splunk")?,
            channel: channel_id(),
            ack: config.ack,
            ack_timeout: config.ack_timeout.unwrap_or(Duration::from_secs(120)),
            ack_poll: config.ack_poll.unwrap_or(Duration::from_secs(1)),
            index: config.index.clone(),
            sourcetype: config
                .sourcetype
                .clone()
                .unwrap_or_else(|| "owlet:ecs".into()),
        })
    }

    fn post(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(url)
            .header("X-Splunk-Request-Channel", &self.channel)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request
    }

    /// HEC's batch format: event objects one after another.
    fn body(&self, events: &[StoredEvent]) -> Vec<u8> {
        let mut body = Vec::with_capacity(events.len() * 1024);
        for e in events {
            let mut wrapper = json!({
                // Seconds with milliseconds: exact in an f64, as HEC wants.
                "time": (e.time_us / 1000) as f64 / 1000.0,
                "host": e.agent,
                "source": format!("owlet:{}", e.tenant),
                "sourcetype": self.sourcetype,
                "fields": {"tenant": e.tenant, "event_id": e.event_id()},
                "event": document(e),
            });
            if let Some(index) = &self.index {
                wrapper["index"] = json!(index);
            }
            let _ = serde_json::to_writer(&mut body, &wrapper);
            body.push(b'\n');
        }
        body
    }

    pub(crate) async fn deliver(&mut self, events: &[StoredEvent]) -> Result<(), String> {
        let (status, body) = send(self.post(&self.event_url, self.body(events))).await?;
        let parsed: Option<HecResponse> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            return Err(match parsed {
                Some(r) => format!("HEC: HTTP {status}: code {} {}", r.code, r.text),
                None => format!("HEC: HTTP {status}: {}", excerpt(&body)),
            });
        }
        let parsed =
            parsed.ok_or_else(|| format!("HEC: unreadable response: {}", excerpt(&body)))?;
        if parsed.code != 0 {
            return Err(format!("HEC: code {} {}", parsed.code, parsed.text));
        }
        if !self.ack {
            return Ok(());
        }
        let id = parsed.ack_id.ok_or(
            "HEC: ack = true but the answer had no ackId: enable indexer acknowledgement on the token, or set ack = false",
        )?;
        self.wait_for_ack(id).await
    }

    /// Polls `/services/collector/ack` until `id` is indexed or the
    /// timeout passes (then the batch is sent again: at least once).
    async fn wait_for_ack(&self, id: u64) -> Result<(), String> {
        let started = Instant::now();
        loop {
            tokio::time::sleep(self.ack_poll).await;
            let body = serde_json::to_vec(&json!({"acks": [id]})).unwrap_or_default();
            let (status, answer) = send(self.post(&self.ack_url, body)).await?;
            if !status.is_success() {
                return Err(format!("HEC ack: HTTP {status}: {}", excerpt(&answer)));
            }
            let acks: Value = serde_json::from_slice(&answer)
                .map_err(|_| format!("HEC ack: unreadable answer: {}", excerpt(&answer)))?;
            if acks["acks"][id.to_string()].as_bool() == Some(true) {
                return Ok(());
            }
            if started.elapsed() >= self.ack_timeout {
                return Err(format!(
                    "HEC: ackId {id} not indexed within {:?}; sending the batch again",
                    self.ack_timeout
                ));
            }
        }
    }
}

/// A webhook: one POST per event, the ECS document as the body, signed.
pub(crate) struct Webhook {
    client: reqwest::Client,
    url: String,
    key: Vec<u8>,
}

/// The `X-Owlet-Signature` of a webhook request: `sha256=` and the hex
/// HMAC-SHA256, keyed with the shared secret, of `TIMESTAMP.BODY`
/// (`X-Owlet-Timestamp`, a dot, the body bytes). Binding the timestamp
/// lets a receiver refuse replays of old requests.
pub fn webhook_signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

impl Webhook {
    pub(crate) fn new(config: &OutputConfig) -> Result<Self, OutputError> {
        let key = match &config.token_file {
            Some(path) => config.read_token(path)?.into_bytes(),
            None => Vec::new(),
        };
        Ok(Self {
            client: client(config)?,
            url: config.url.clone().unwrap_or_default(),
            key,
        })
    }

    /// POSTs the events one by one, in order; the batch is confirmed when
    /// every request got a 2xx (a failure resends the batch: receivers
    /// deduplicate on `X-Owlet-Event-Id`).
    pub(crate) async fn deliver(&mut self, events: &[StoredEvent]) -> Result<(), String> {
        for e in events {
            let id = e.event_id();
            let body = serde_json::to_vec(&document(e)).unwrap_or_default();
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let signature = webhook_signature(&self.key, &timestamp, &body);
            let request = self
                .client
                .post(&self.url)
                .header(CONTENT_TYPE, "application/json")
                .header("X-Owlet-Event-Id", &id)
                .header("X-Owlet-Timestamp", &timestamp)
                .header("X-Owlet-Signature", signature)
                .body(body);
            let (status, answer) = send(request).await?;
            if !status.is_success() {
                return Err(format!(
                    "webhook: event {id}: HTTP {status}: {}",
                    excerpt(&answer)
                ));
            }
        }
        Ok(())
    }
}
