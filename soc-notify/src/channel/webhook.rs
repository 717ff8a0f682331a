//! The webhook: a JSON POST signed with HMAC-SHA256 over the exact body
//! bytes, `X-Owlet-Signature: sha256=<lower-case hex>`, on hyper's HTTP/1.1
//! client over rustls (ring).
//!
//! Outcomes: 2xx is delivered; 408, 429, 5xx, a timeout or a connection
//! error is retried; any other status (401 bad signature, 404 wrong URL)
//! is permanent: retrying the same request cannot change the answer.
//! The body carries `notification_id` and `tenant`, the receiver's dedupe
//! key for the at-least-once resend after a crash.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{SendError, Sent};
use crate::config::ChannelConfig;
use crate::error::{NotifyError, Result, read_secret};
use crate::message::rfc3339;
use crate::record::Outgoing;

pub struct WebhookChannel {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    secret: Vec<u8>,
    timeout: Duration,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes a key of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl WebhookChannel {
    pub fn new(config: &ChannelConfig) -> Result<Self> {
        let ChannelConfig::Webhook {
            name,
            url,
            secret_file,
            ca_file,
            timeout,
            ..
        } = config
        else {
            unreachable!("WebhookChannel::new is only called with a webhook channel")
        };
        let bad = |m: String| NotifyError::Channel {
            channel: name.clone(),
            message: m,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(format!("url \"{url}\": {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad(format!("url \"{url}\" must be https:// or http://"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad(format!("url \"{url}\" has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let config = super::tls_client(name, ca_file.as_deref())?;
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        let secret = read_secret("webhook secret_file", secret_file)?.into_bytes();
        Ok(WebhookChannel {
            uri,
            host,
            port,
            tls,
            secret,
            timeout: *timeout,
        })
    }

    /// The URL without its query (which may hold a token).
    pub fn recipients(&self) -> String {
        format!(
            "{}://{}{}",
            self.uri.scheme_str().unwrap_or("https"),
            self.authority(),
            self.uri.path()
        )
    }

    /// The JSON body of `msg` (what is signed).
    pub fn body(msg: &Outgoing) -> Vec<u8> {
        let zone: chrono_tz::Tz = msg.zone.parse().unwrap_or(chrono_tz::UTC);
        let incidents: Vec<serde_json::Value> = msg
            .incidents
            .iter()
            .map(|i| {
                serde_json::json!({
                    "event_id": i.event_id,
                    "agent": i.agent,
                    "kind": i.kind,
                    "source": i.source,
                    "name": i.name,
                    "subject": i.subject,
                    "severity": i.severity,
                    "detected_at": rfc3339(i.detected_us, zone),
                    "target": i.target,
                    "detected": i.detected,
                    "expected_damage": i.damage,
                    "recommended_response": i.response,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "notification_id": msg.notification_id,
            "tenant": msg.tenant,
            "rule": msg.rule,
            "severity": msg.severity,
            "subject": msg.subject,
            "body": msg.body,
            "zone": msg.zone,
            "first_detected_at": rfc3339(msg.first_detected_us, zone),
            "events": incidents,
        }))
        .unwrap_or_default()
    }

    pub async fn send(&self, msg: &Outgoing) -> std::result::Result<Sent, SendError> {
        match tokio::time::timeout(self.timeout, self.post(msg)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn post(&self, msg: &Outgoing) -> std::result::Result<Sent, SendError> {
        let body = Self::body(msg);
        let request = Request::post(self.uri.clone())
            .header(http::header::HOST, self.authority())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "owlet-soc-notify")
            .header("X-Owlet-Signature", signature(&self.secret, &body))
            .header(
                "X-Owlet-Notification",
                format!("{}/{}", msg.tenant, msg.notification_id),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::permanent(format!("building the request: {e}")))?;
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| SendError::retry(format!("connect {}:{}: {e}", self.host, self.port)))?;
        let status = match &self.tls {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| SendError::permanent(format!("host {}: {e}", self.host)))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::retry(format!("TLS with {}: {e}", self.host)))?;
                exchange(TokioIo::new(stream), request).await?
            }
            None => exchange(TokioIo::new(tcp), request).await?,
        };
        match status.as_u16() {
            200..=299 => Ok(Sent::Delivered),
            408 | 429 | 500..=599 => Err(SendError::retry(format!("HTTP {status}"))),
            _ => Err(SendError::permanent(format!(
                "HTTP {status} (not retried: the same request gets the same answer; check the URL and the shared secret)"
            ))),
        }
    }

    fn authority(&self) -> String {
        self.uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| self.host.clone())
    }
}

async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
) -> std::result::Result<http::StatusCode, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::retry(format!("HTTP handshake: {e}")))?;
    let driver = tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| SendError::retry(format!("HTTP request: {e}")))?;
    let status = response.status();
    // Read (and drop) a bounded amount of the answer so the server sees a
    // complete exchange; its content is not ours to keep.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        http_body_util::Limited::new(response.into_body(), 64 * 1024).collect(),
    )
    .await;
    driver.abort();
    Ok(status)
}
