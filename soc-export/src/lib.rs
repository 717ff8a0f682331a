//! owlet-soc-export: one tenant's events, streamed.
//!
//! Guarantees:
//! * constant memory: events are read from the store's streaming scan and
//!   written one at a time, with no row cap;
//! * every time carries an explicit offset (RFC 3339), in the zone asked
//!   for (default: the tenant's), and each record names the zone the agent
//!   was in;
//! * each record carries the stable event id (`tenant/agent/seq`) a
//!   consumer deduplicates on;
//! * CSV quotes every field that needs it (RFC 4180), so hostile values
//!   (commas, quotes, newlines in a file name) cannot shift columns, and
//!   a leading `= + - @` is prefixed with `'` so a spreadsheet never runs a
//!   sensor-reported value as a formula.
#![forbid(unsafe_code)]

pub mod time;

use std::io::Write;
use std::ops::ControlFlow;

use owlet_soc_store::columns::{Columns, NAMES};
use owlet_soc_store::{Filter, StoredEvent, TenantReader};

pub use time::Zone;

/// Output formats.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    Ndjson,
    Csv,
    /// ECS documents, rendered by the given function (owlet-soc-ecs).
    Ecs(fn(&StoredEvent, &Zone) -> serde_json::Value),
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] owlet_soc_store::StoreError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
    /// Reading events from another store (the scaled-out SOC's PostgreSQL).
    #[error("reading the events: {0}")]
    Read(String),
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub events: u64,
    /// Stored bytes that no longer decode (written as a record that says so).
    pub undecodable: u64,
}

/// Writes every event of `reader` that `filter` selects to `out`.
pub fn export(
    reader: &TenantReader,
    filter: &Filter,
    format: Format,
    zone: &Zone,
    out: &mut impl Write,
) -> Result<Summary, ExportError> {
    export_from(|each| Ok(reader.scan(filter, each)?), format, zone, out)
}

/// Writes every event `scan` hands over to `out`, one at a time: `scan`
/// calls its argument per event, in order, and stops when it returns
/// `Break` (the output failed). The store behind `scan` selects the
/// events; memory stays constant when it streams them.
pub fn export_from(
    scan: impl FnOnce(&mut dyn FnMut(StoredEvent) -> ControlFlow<()>) -> Result<(), ExportError>,
    format: Format,
    zone: &Zone,
    out: &mut impl Write,
) -> Result<Summary, ExportError> {
    let mut summary = Summary::default();
    let mut failed = None;
    let mut line = Vec::with_capacity(1024);
    if matches!(format, Format::Csv) {
        write_csv_header(out)?;
    }
    scan(&mut |e| {
        line.clear();
        if e.event.is_none() {
            summary.undecodable += 1;
        }
        let written = match format {
            Format::Ndjson => ndjson(&e, zone, &mut line),
            Format::Csv => csv(&e, zone, &mut line),
            Format::Ecs(document) => serde_json::to_writer(&mut line, &document(&e, zone))
                .map_err(std::io::Error::from)
                .and_then(|_| line.write_all(b"\n")),
        }
        .and_then(|_| out.write_all(&line));
        match written {
            Ok(()) => {
                summary.events += 1;
                ControlFlow::Continue(())
            }
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    Ok(summary)
}

fn ndjson(e: &StoredEvent, zone: &Zone, out: &mut Vec<u8>) -> std::io::Result<()> {
    let record = serde_json::json!({
        "id": e.event_id(),
        "tenant": e.tenant,
        "agent": e.agent,
        "seq": e.seq,
        "kind": e.kind,
        "time": zone.rfc3339(e.time_us),
        "received": zone.rfc3339(e.received_us),
        "agent_zone": e.zone,
        "event": e.event,
    });
    serde_json::to_writer(&mut *out, &record)?;
    out.push(b'\n');
    Ok(())
}

/// The CSV columns: identity and times, then the typed columns.
pub fn csv_columns() -> Vec<&'static str> {
    let mut columns = vec![
        "id",
        "tenant",
        "agent",
        "seq",
        "time",
        "received",
        "agent_zone",
    ];
    columns.extend(NAMES.iter().filter(|n| **n != "time_us"));
    columns
}

fn write_csv_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}", csv_columns().join(","))
}

fn csv(e: &StoredEvent, zone: &Zone, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut fields: Vec<String> = vec![
        e.event_id(),
        e.tenant.clone(),
        e.agent.clone(),
        e.seq.map(|s| s.to_string()).unwrap_or_default(),
        zone.rfc3339(e.time_us),
        zone.rfc3339(e.received_us),
        e.zone.clone(),
    ];
    let columns = e
        .event
        .as_ref()
        .map(Columns::of)
        .unwrap_or_else(|| Columns {
            kind: "undecodable",
            ..Default::default()
        });
    for (name, value) in NAMES.iter().zip(columns.values()) {
        if *name == "time_us" {
            continue;
        }
        use owlet_soc_store::columns::Value;
        fields.push(match value {
            Value::Null => String::new(),
            Value::Integer(v) => v.to_string(),
            Value::Real(v) => v.to_string(),
            Value::Text(t) => t,
            Value::Blob(_) => String::new(),
        });
    }
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(field, out);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// One RFC 4180 field, with formula characters defused.
fn csv_field(value: &str, out: &mut Vec<u8>) {
    let formula = value.starts_with(['=', '+', '-', '@']) && value.parse::<f64>().is_err();
    let quote = formula || value.contains([',', '"', '\r', '\n']);
    if !quote {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    out.push(b'"');
    if formula {
        out.push(b'\'');
    }
    for c in value.bytes() {
        if c == b'"' {
            out.push(b'"');
        }
        out.push(c);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: &str) -> String {
        let mut out = Vec::new();
        csv_field(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_cannot_shift_columns_or_become_formulas() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line\nbreak"), "\"line\nbreak\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-12.5"), "-12.5");
    }
}
