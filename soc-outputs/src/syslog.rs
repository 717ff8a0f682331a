//! Syslog over TLS: RFC 5424 messages in RFC 5425 octet-counting frames.
//!
//! One message per event:
//! `<PRI>1 TIMESTAMP HOSTNAME owlet - MSGID [owlet@32473 tenant=.. agent=..
//! event_id=.. kind=.. zone=..] MSG` with TIMESTAMP the event time in
//! RFC 3339 with its offset written out, HOSTNAME the agent id, MSGID the
//! event kind, and MSG the ECS document as JSON (or its readable
//! `message`). PRI = facility × 8 + severity (critical 2, warning 4,
//! otherwise 6). 32473 is the enterprise number RFC 5612 reserves for
//! documentation: owlet has no IANA number of its own (yet).
//!
//! RFC 5425 has no acknowledgement. A batch counts as delivered when it
//! was written and flushed, and the connection then stayed up for `settle`
//! (a receiver that stopped or died closes or resets it, which a read
//! sees); otherwise the connection is dropped and the batch is sent again
//! on a new one. A receiver that takes the bytes and then loses them
//! without closing the connection cannot be told apart: that is the limit
//! of the protocol (use the HTTP outputs, or a receiver with a disk queue).

use std::sync::Arc;
use std::time::Duration;

use owlet_soc_ecs::{document, rfc3339};
use owlet_soc_store::StoredEvent;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{OutputConfig, OutputError, SyslogFormat, tls};

/// The structured-data id of owlet's parameters.
pub const SD_ID: &str = "owlet@32473";

pub(crate) struct Syslog {
    address: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    conn: Option<TlsStream<TcpStream>>,
    format: SyslogFormat,
    facility: u8,
    timeout: Duration,
    settle: Duration,
}

/// Printable US-ASCII only (RFC 5424 header fields), at most `max`, `-`
/// when empty.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 6.3.3).
fn param_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One RFC 5425 frame (`LEN SP SYSLOG-MSG`) for `e`.
pub fn frame(e: &StoredEvent, format: SyslogFormat, facility: u8) -> Vec<u8> {
    let doc = document(e);
    let severity = match doc["log"]["level"].as_str() {
        Some("critical") => 2,
        Some("warning") => 4,
        _ => 6,
    };
    let pri = u16::from(facility.min(23)) * 8 + severity;
    let sd = format!(
        "[{SD_ID} tenant=\"{}\" agent=\"{}\" event_id=\"{}\" kind=\"{}\" zone=\"{}\"]",
        param_value(&e.tenant),
        param_value(&e.agent),
        param_value(&e.event_id()),
        param_value(&e.kind),
        param_value(&e.zone),
    );
    let msg = match format {
        SyslogFormat::Json => doc.to_string(),
        SyslogFormat::Text => doc["message"].as_str().unwrap_or_default().to_string(),
    };
    let line = format!(
        "<{pri}>1 {} {} owlet - {} {sd} {msg}",
        rfc3339(e.time_us),
        header_field(&e.agent, 255),
        header_field(&e.kind, 32),
    );
    let mut out = format!("{} ", line.len()).into_bytes();
    out.extend_from_slice(line.as_bytes());
    out
}

impl Syslog {
    pub(crate) fn new(config: &OutputConfig) -> Result<Self, OutputError> {
        let address = config.address.clone().unwrap_or_default();
        let host = address
            .rsplit_once(':')
            .map_or(address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = config.server_name.clone().unwrap_or(host);
        let server_name = ServerName::try_from(name.clone()).map_err(|_| OutputError::Config {
            output: config.name.clone(),
            message: format!("server_name: {name:?} is not a DNS name or an IP address"),
        })?;
        let tls = tls::client_config(config, &[])?;
        Ok(Self {
            address,
            server_name,
            connector: TlsConnector::from(Arc::new(tls)),
            conn: None,
            format: config.format.unwrap_or_default(),
            facility: config.facility.unwrap_or(13),
            timeout: config.timeout,
            settle: config.settle.unwrap_or(Duration::from_millis(100)),
        })
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, String> {
        let connecting = async {
            let tcp = TcpStream::connect(&self.address)
                .await
                .map_err(|e| format!("connect {}: {e}", self.address))?;
            let _ = tcp.set_nodelay(true);
            self.connector
                .connect(self.server_name.clone(), tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", self.address))
        };
        tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| format!("connect {}: timed out", self.address))?
    }

    pub(crate) async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
        }
    }

    pub(crate) async fn deliver(&mut self, events: &[StoredEvent]) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(events.len() * 1024);
        for e in events {
            bytes.extend_from_slice(&frame(e, self.format, self.facility));
        }
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let write = async {
            conn.write_all(&bytes).await?;
            conn.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write to {}: {e}", self.address)),
            Err(_) => return Err(format!("write to {}: timed out", self.address)),
        }
        // Receivers never send; a read that ends or fails means the
        // connection is gone and the bytes may be too.
        let mut scratch = [0u8; 512];
        match tokio::time::timeout(self.settle, conn.read(&mut scratch)).await {
            Err(_) | Ok(Ok(1..)) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(Ok(0)) => Err(format!(
                "{} closed the connection; sending the batch again",
                self.address
            )),
            Ok(Err(e)) => Err(format!("{}: {e}; sending the batch again", self.address)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_counted_and_escaped() {
        let e = StoredEvent {
            id: 7,
            tenant: "acme".into(),
            agent: "sensor 1".into(),
            seq: Some(3),
            kind: "alert".into(),
            time_us: 1_793_534_400_000_000,
            received_us: 0,
            zone: "Asia/\"Tokyo]".into(),
            event: None,
        };
        let bytes = frame(&e, SyslogFormat::Text, 13);
        let text = String::from_utf8(bytes).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(
            msg.starts_with(
                "<110>1 2026-11-01T12:00:00.000000+00:00 sensor_1 owlet - alert [owlet@32473 tenant=\"acme\" agent=\"sensor 1\" event_id=\"acme/sensor 1/3\" kind=\"alert\" zone=\"Asia/\\\"Tokyo\\]\"] "
            ),
            "{msg}"
        );
    }
}
