//! The analyst's commands over the store: `agents`, `query`, `export`,
//! `tenant list|export|delete` and `status`. Each opens the store
//! read-only (except `tenant delete`), so it runs beside a serving
//! receiver.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, bail};
use owlet_soc_export::{Format, Zone};
use owlet_soc_store::{Cursors, Filter, Store};
use serde::Serialize;

use crate::cli::{ExportArgs, ExportFormat};
use crate::config::SocConfig;
use crate::query;

/// The store of a configuration, for reading (creates nothing).
pub fn store(config: &SocConfig) -> anyhow::Result<Store> {
    Ok(Store::existing(&crate::sink::store_root(
        config.sqlite_path()?,
    )))
}

/// A time on the command line: RFC 3339 with an offset, or an age before
/// now ("2h", "7days"). Returns UTC microseconds.
pub fn parse_time(value: &str, now: SystemTime) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp_micros());
    }
    match humantime::parse_duration(value) {
        Ok(age) => Ok(owlet_soc_store::time::micros(
            now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH),
        )),
        Err(_) => bail!(
            "cannot read the time {value:?}: give RFC 3339 with an offset (2026-12-01T09:00:00+09:00) or an age (2h, 7days)"
        ),
    }
}

/// `owlet-soc agents`.
pub fn agents(config: &SocConfig, json: bool) -> anyhow::Result<i32> {
    let path = config.sqlite_path()?;
    let db =
        query::open_read_only(path).with_context(|| format!("cannot open {}", path.display()))?;
    let rows = query::agents(&db, &store(config)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10} {:>10}  {:<40}  {:<24}  HOST",
        "AGENT",
        "STATE",
        "VERSION",
        "LAST SEEN",
        "EVENTS",
        "CLOCK ms",
        "DUPLICATES",
        "LAST SELF-TEST",
        "CERT EXPIRES"
    );
    for r in rows {
        let selftest = match (&r.last_selftest, &r.last_selftest_result) {
            (None, _) => "never".to_string(),
            (Some(at), Some(result)) => format!("{result} {at}"),
            (Some(at), None) => at.clone(),
        };
        println!(
            "{:<28} {:<13} {:<9} {:<24} {:>10} {:>10} {:>10}  {:<40}  {:<24}  {}",
            format!("{}/{}", r.tenant, r.agent_id),
            r.state,
            r.version,
            r.last_seen,
            r.events_stored,
            r.clock_offset_ms,
            r.duplicates_dropped,
            selftest,
            r.cert_expires.as_deref().unwrap_or("unknown"),
            r.hostname
        );
    }
    Ok(0)
}

/// `owlet-soc query`.
pub fn sql(config: &SocConfig, tenant: &str, sql: &str, tsv: bool) -> anyhow::Result<i32> {
    let reader = store(config)?.reader(tenant)?;
    let mut out = std::io::stdout().lock();
    if tsv {
        // Streams: any number of rows in constant memory.
        let sink = std::cell::RefCell::new((out, None::<std::io::Error>));
        let write = |line: String| {
            let (out, failed) = &mut *sink.borrow_mut();
            if let Err(e) = writeln!(out, "{line}") {
                *failed = Some(e);
            }
            failed.is_none()
        };
        reader.sql_each(
            sql,
            |names| {
                write(names.join("\t"));
            },
            |row| {
                if write(row.join("\t")) {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(())
                }
            },
        )?;
        return match sink.into_inner().1 {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(0),
        };
    }
    // A table needs every row for its widths: at most TABLE_ROWS of them.
    let mut names = Vec::new();
    let mut rows = Vec::new();
    let mut more = false;
    reader.sql_each(
        sql,
        |n| names = n.to_vec(),
        |row| {
            if rows.len() == TABLE_ROWS {
                more = true;
                return ControlFlow::Break(());
            }
            rows.push(row);
            ControlFlow::Continue(())
        },
    )?;
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for row in &rows {
        for (w, v) in widths.iter_mut().zip(row) {
            *w = (*w).max(v.chars().count().min(60));
        }
    }
    let line = |values: &[String]| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let printed = (|| -> std::io::Result<()> {
        writeln!(out, "{}", line(&names))?;
        for row in &rows {
            writeln!(out, "{}", line(row))?;
        }
        if more {
            writeln!(
                out,
                "(the first {TABLE_ROWS} rows; add LIMIT, or --tsv for every row)"
            )
        } else {
            writeln!(out, "({} rows)", rows.len())
        }
    })();
    match printed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// Rows `owlet-soc query` shows as a table (`--tsv` streams any number).
const TABLE_ROWS: usize = 10_000;

/// `owlet-soc export`.
pub fn export(config: &SocConfig, args: &ExportArgs) -> anyhow::Result<i32> {
    let reader = store(config)?.reader(&args.tenant)?;
    let now = SystemTime::now();
    for kind in &args.kinds {
        if !crate::tail::KINDS.contains(&kind.as_str()) {
            bail!(
                "unknown kind {kind:?}; kinds: {}",
                crate::tail::KINDS.join(", ")
            );
        }
    }
    let filter = Filter {
        from_us: args
            .from
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()?,
        to_us: args.to.as_deref().map(|t| parse_time(t, now)).transpose()?,
        kinds: args.kinds.clone(),
        ..Default::default()
    };
    let zone_name = args.tz.as_deref().unwrap_or(config.zone_of(&args.tenant));
    let zone = Zone::parse(zone_name).map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    let format = match args.format {
        ExportFormat::Ndjson => Format::Ndjson,
        ExportFormat::Csv => Format::Csv,
        ExportFormat::Ecs => {
            Format::Ecs(|e, zone| owlet_soc_ecs::document_with_times(e, &|us| zone.rfc3339(us)))
        }
    };
    let summary = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
            owlet_soc_export::export(&reader, &filter, format, &zone, &mut out)?
        }
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            match owlet_soc_export::export(&reader, &filter, format, &zone, &mut out) {
                Err(owlet_soc_export::ExportError::Write(e))
                    if e.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    return Ok(0);
                }
                other => other?,
            }
        }
    };
    eprintln!(
        "exported {} events of tenant {} (times in {}){}",
        summary.events,
        args.tenant,
        zone.name(),
        if summary.undecodable > 0 {
            format!(", {} stored events did not decode", summary.undecodable)
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// `owlet-soc notifications` in the embedded SOC: the tenant's record
/// under the store.
pub fn notifications(
    config: &SocConfig,
    tenant: &str,
    query: &owlet_soc_notify::HistoryQuery,
) -> anyhow::Result<Vec<owlet_soc_notify::HistoryRow>> {
    Ok(owlet_soc_notify::history(
        store(config)?.root(),
        tenant,
        query,
    )?)
}

/// What `owlet-soc notifications` selects: `--since` and `--limit`.
pub fn history_query(
    since: Option<&str>,
    limit: usize,
) -> anyhow::Result<owlet_soc_notify::HistoryQuery> {
    Ok(owlet_soc_notify::HistoryQuery {
        since_us: since
            .map(|t| parse_time(t, SystemTime::now()))
            .transpose()?,
        limit,
    })
}

/// Prints a tenant's notifications, as JSON or as text in `zone`.
pub fn print_notifications(
    rows: &[owlet_soc_notify::HistoryRow],
    tenant: &str,
    zone: chrono_tz::Tz,
    json: bool,
) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else if rows.is_empty() {
        println!("No notifications for tenant {tenant} in this range.");
    } else {
        print!("{}", owlet_soc_notify::render_history(rows, zone));
    }
    Ok(0)
}

/// `owlet-soc report`.
/// What `owlet-soc report` was asked for.
pub struct ReportArgs<'a> {
    pub tenant: &'a str,
    pub period: &'a str,
    pub tz: Option<&'a str>,
    pub format: crate::cli::ReportFormat,
    pub lang: owlet_soc_report::Lang,
    pub out: Option<&'a Path>,
}

/// `owlet-soc report`.
pub fn report(config: &SocConfig, args: &ReportArgs) -> anyhow::Result<i32> {
    use crate::cli::ReportFormat;
    let period = owlet_soc_report::Period::parse(args.period)?;
    let zone = Zone::parse(args.tz.unwrap_or(config.zone_of(args.tenant)))
        .map_err(|e| anyhow::anyhow!("--tz: {e}"))?;
    if args.format == ReportFormat::Pdf && args.out.is_none() {
        bail!("--format pdf writes a file: give it with --out FILE (for example --out report.pdf)");
    }
    let reader = store(config)?.reader(args.tenant)?;
    let report = owlet_soc_report::build(
        &reader,
        &period,
        &zone,
        SystemTime::now(),
        &owlet_soc_report::Options::default(),
    )?;
    let html = || {
        owlet_soc_report::html::render(&report, args.lang, &owlet_soc_report::Style::Inline)
            .context("rendering the HTML report")
    };
    let body = match args.format {
        ReportFormat::Text => report.to_text(),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Html => html()?,
        ReportFormat::Pdf => {
            let out = args.out.context("--out")?;
            owlet_soc_report::pdf::html_to_pdf(
                &html()?,
                out,
                owlet_soc_report::pdf::DEFAULT_TIMEOUT,
            )?;
            eprintln!("wrote {}", out.display());
            return Ok(0);
        }
    };
    match args.out {
        Some(out) => {
            let dir = out
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            tmp.write_all(body.as_bytes())?;
            tmp.persist(out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {}", out.display());
        }
        None => print!("{body}"),
    }
    Ok(0)
}

/// One tenant in `tenant list` and `status`.
#[derive(Debug, Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub time_zone: String,
    pub events: i64,
    pub used_bytes: u64,
    pub partitions: u64,
    pub oldest_day: Option<String>,
    pub max_age_days: Option<u64>,
    pub max_bytes: Option<u64>,
    /// What retention deleted, most recent first (at most 5).
    pub deletions: Vec<owlet_soc_store::Deletion>,
}

fn tenant_status(config: &SocConfig, store: &Store, tenant: &str) -> anyhow::Result<TenantStatus> {
    let reader = store.reader(tenant)?;
    let (_, rows) = reader.sql(
        "SELECT (SELECT COALESCE(SUM(events), 0) FROM partitions),
                (SELECT MIN(day) FROM partitions),
                (SELECT COUNT(*) FROM partitions)",
    )?;
    let row = &rows[0];
    let usage = std::fs::metadata(store.tenant_file(tenant)?)
        .map(|m| m.len())
        .unwrap_or(0);
    let policy = config.retention_of(tenant);
    Ok(TenantStatus {
        tenant: tenant.to_string(),
        time_zone: config.zone_of(tenant).to_string(),
        events: row[0].parse().unwrap_or(0),
        used_bytes: usage,
        partitions: row[2].parse().unwrap_or(0),
        oldest_day: (!row[1].is_empty()).then(|| row[1].clone()),
        max_age_days: policy.max_age.map(|a| a.as_secs() / 86_400),
        max_bytes: policy.max_bytes,
        deletions: reader.deletions(5)?,
    })
}

/// `owlet-soc tenant list`.
pub fn tenant_list(config: &SocConfig) -> anyhow::Result<i32> {
    let store = store(config)?;
    println!(
        "{:<20} {:<16} {:>12} {:>12} {:>10}  {:<10}  RETENTION",
        "TENANT", "ZONE", "EVENTS", "BYTES", "DAYS", "OLDEST"
    );
    for tenant in store.tenants()? {
        let s = tenant_status(config, &store, &tenant)?;
        println!(
            "{:<20} {:<16} {:>12} {:>12} {:>10}  {:<10}  {}",
            s.tenant,
            s.time_zone,
            s.events,
            s.used_bytes,
            s.partitions,
            s.oldest_day.as_deref().unwrap_or("-"),
            retention_text(&s)
        );
    }
    Ok(0)
}

fn retention_text(s: &TenantStatus) -> String {
    let age = s.max_age_days.map(|d| format!("{d} days"));
    let size = s.max_bytes.map(|b| format!("{}", bytesize::ByteSize(b)));
    match (age, size) {
        (Some(a), Some(b)) => format!("{a} or {b}, whichever first"),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => "kept forever".into(),
    }
}

/// `owlet-soc tenant export`: a consistent copy of the tenant's database
/// (SQLite's `VACUUM INTO`) and an NDJSON export of every event, each with
/// its SHA-256 in `SHA256SUMS`.
pub fn tenant_export(config: &SocConfig, tenant: &str, out: &Path) -> anyhow::Result<i32> {
    let store = store(config)?;
    let reader = store.reader(tenant)?;
    std::fs::create_dir(out)
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    let copy = out.join(format!("{tenant}.db"));
    store
        .snapshot(tenant, &copy)
        .with_context(|| format!("cannot copy the tenant's database to {}", copy.display()))?;
    let ndjson = out.join(format!("{tenant}.ndjson"));
    let zone = Zone::parse(config.zone_of(tenant)).map_err(|e| anyhow::anyhow!(e))?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&ndjson)?);
    let summary = owlet_soc_export::export(
        &reader,
        &Filter::default(),
        Format::Ndjson,
        &zone,
        &mut file,
    )?;
    drop(file);
    let mut sums = String::new();
    for path in [&copy, &ndjson] {
        let bytes = std::fs::read(path)?;
        let digest = sha256_hex(&bytes);
        sums.push_str(&format!(
            "{digest}  {}\n",
            path.file_name().unwrap().to_string_lossy()
        ));
    }
    std::fs::write(out.join("SHA256SUMS"), sums)?;
    println!(
        "Exported tenant {tenant}: {} events to {} and the database to {} (checksums in SHA256SUMS). \
         Hand them over, then: owlet-soc tenant delete --tenant {tenant} --yes",
        summary.events,
        ndjson.display(),
        copy.display()
    );
    Ok(0)
}

/// The SHA-256 of `bytes`, in lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `owlet-soc tenant delete`.
pub fn tenant_delete(config: &SocConfig, tenant: &str, yes: bool) -> anyhow::Result<i32> {
    let store = store(config)?;
    store.reader(tenant)?;
    if !yes {
        bail!(
            "this deletes every event of tenant {tenant} and cannot be undone; export first \
             (owlet-soc tenant export --tenant {tenant} --out DIR), then add --yes"
        );
    }
    store.delete_tenant(tenant)?;
    if Cursors::existing(store.root())?.is_some() {
        Cursors::open(store.root())?.forget_tenant(tenant)?;
    }
    // The tenant's notification contacts are its settings: they go too.
    let contacts = owlet_soc_notify::contacts::path(store.root(), tenant)?;
    match std::fs::remove_file(&contacts) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            bail!(
                "cannot remove {}: {e}; remove it by hand",
                contacts.display()
            )
        }
        _ => {}
    }
    println!(
        "Deleted tenant {tenant}'s events, its consumers' positions and its notification contacts."
    );
    Ok(0)
}

/// `owlet-soc status`.
/// The outputs' lines of `owlet-soc status` (and `owlet-soc outputs
/// --status`); `file` is where an operator configures them.
pub fn print_outputs(outputs: &[owlet_soc_outputs::OutputStatus], file: &str) {
    println!("Outputs:");
    if outputs.is_empty() {
        println!("  none configured, or no tenant stored yet ([[output]] in {file})");
    }
    for o in outputs {
        println!(
            "  {:<20} {:<14} {:<16} lag {:>8} events, delivered {:>10}, errors {:>6}{}",
            o.output,
            o.kind,
            o.tenant,
            o.lag,
            o.delivered,
            o.errors,
            o.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
    }
}

/// A reader of the stored events in one tenant, as `--status` of the
/// scaled-out roles prints it: position, lag, holder, errors. `role` names
/// the command that holds it.
pub fn reader_line(r: &owlet_soc_bus::status::ReaderStatus, role: &str) -> String {
    let holder = if r.standing.held {
        "held".to_string()
    } else if r.started {
        format!("NOT HELD: no {role} runs for it")
    } else {
        format!("NOT STARTED: no {role} has claimed it yet")
    };
    let error = r
        .standing
        .last_error
        .as_deref()
        .map(|e| format!(", last error: {e}"))
        .unwrap_or_default();
    format!(
        "  {:<20} at {} of {}, lag {} events, {holder}; errors {}{error}",
        r.tenant, r.standing.position, r.last_id, r.lag, r.standing.errors
    )
}

/// `owlet-soc writer --status`: one line per tenant a writer has stored.
pub fn print_writer(tenants: &[owlet_soc_bus::status::TenantStatus]) {
    println!("Tenants stored by the writers:");
    if tenants.is_empty() {
        println!("  none yet (a writer stores a tenant once its stream exists)");
    }
    for t in tenants {
        let stream = t.stream_last.map_or_else(
            || "stream gone".to_string(),
            |last| format!("stream at {last}"),
        );
        let holder = if t.held {
            "held by a writer"
        } else {
            "NOT HELD: no writer runs for it (start owlet-soc writer)"
        };
        let kept = t.max_age.map_or_else(
            || "kept without age limit".to_string(),
            |age| format!("kept {}", humantime::format_duration(age)),
        );
        println!(
            "  {:<20} {stream}, stored to {}, lag {} events, {holder}; {} days, {}, {kept}; {} agents, {} silent",
            t.tenant,
            t.position,
            t.lag,
            t.days,
            bytesize::ByteSize(t.bytes),
            t.agents,
            t.silent,
        );
    }
}

pub fn status(config: &SocConfig, json: bool) -> anyhow::Result<i32> {
    let store = store(config)?;
    let tenants: Vec<TenantStatus> = store
        .tenants()?
        .iter()
        .map(|t| tenant_status(config, &store, t))
        .collect::<anyhow::Result<_>>()?;
    let outputs = owlet_soc_outputs::status(store.root(), &config.outputs)?;
    let output_names: Vec<&str> = config.outputs.iter().map(|o| o.name.as_str()).collect();
    let cursors = match Cursors::existing(store.root())? {
        Some(cursors) => cursors.all()?,
        None => Vec::new(),
    };
    let mut consumers = Vec::new();
    for c in cursors
        .into_iter()
        .filter(|c| !output_names.contains(&c.consumer.as_str()))
    {
        let last = store
            .reader(&c.tenant)
            .and_then(|r| r.last_id())
            .unwrap_or(0);
        consumers.push(serde_json::json!({
            "consumer": c.consumer,
            "tenant": c.tenant,
            "position": c.last_id,
            "lag_events": (last - c.last_id).max(0),
            "delivered": c.delivered,
            "errors": c.errors,
            "last_error": c.last_error,
        }));
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"tenants": tenants, "consumers": consumers})
            )?
        );
        return Ok(0);
    }
    match crate::status_file::read(store.root()) {
        Some((r, true)) => println!(
            "Receiver: running (pid {}, owlet-soc {}, since {}); {} agents connected, {} events stored since start; connections refused: {}",
            r.pid,
            r.version,
            r.started,
            r.agents_connected,
            r.events_stored_since_start,
            r.connections_refused
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some((r, false)) => println!(
            "Receiver: not running (its last figures are from {})",
            r.updated
        ),
        None => println!("Receiver: has not run with this store"),
    }
    println!("Tenants:");
    for s in &tenants {
        println!(
            "  {:<20} {:>12} events  {:>12} bytes  {:>4} days  retention: {}",
            s.tenant,
            s.events,
            s.used_bytes,
            s.partitions,
            retention_text(s)
        );
        for d in &s.deletions {
            println!(
                "    deleted {} ({} events, {}) by {}",
                d.day,
                d.events,
                bytesize::ByteSize(d.bytes_before.saturating_sub(d.bytes_after)),
                d.reason
            );
        }
    }
    print_outputs(&outputs, "soc.toml");
    println!("Other consumers (notifications):");
    if consumers.is_empty() {
        println!("  none has read the store yet");
    }
    for c in &consumers {
        println!(
            "  {:<20} {:<16} lag {:>8} events, delivered {:>10}, errors {:>6}{}",
            c["consumer"].as_str().unwrap_or_default(),
            c["tenant"].as_str().unwrap_or_default(),
            c["lag_events"],
            c["delivered"],
            c["errors"],
            c["last_error"]
                .as_str()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(0)
}
