//! Log download: soc-export's streaming export (NDJSON, CSV, ECS) of the
//! request's tenant, from the browser, audited before the first byte.
//!
//! Guarantees: constant memory (the export writes into a bounded channel
//! that the response body drains; a slow or gone browser stops it); the
//! kind is one of the known kinds and times are read in the user's zone;
//! the file's times carry the user's zone's offset.

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use owlet_soc_export::{Format, Zone};
use owlet_soc_store::Filter;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{given, time_filter};
use crate::web::{AppState, Ctx, Frame, PageError, render};

/// The kinds a download can be limited to.
const KINDS: &[&str] = owlet_proto::KIND_NAMES;

#[derive(Template)]
#[template(path = "download.html")]
struct DownloadPage {
    f: Frame,
    kinds: &'static [&'static str],
}

pub async fn form(Extension(ctx): Extension<Ctx>) -> Result<Response, PageError> {
    render(&DownloadPage {
        f: Frame::new(&ctx, "download.title"),
        kinds: KINDS,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExportQuery {
    pub format: String,
    pub from: String,
    pub to: String,
    pub kind: String,
}

/// Bytes per chunk handed to the response.
const CHUNK: usize = 64 * 1024;

/// A `Write` into the response body's channel.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download cancelled"))
    }
}

pub async fn export(
    State(state): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, PageError> {
    let (format, ext, mime) = match given(&q.format).as_deref().unwrap_or("ndjson") {
        "ndjson" => (Format::Ndjson, "ndjson", "application/x-ndjson"),
        "csv" => (Format::Csv, "csv", "text/csv; charset=utf-8"),
        "ecs" => (
            Format::Ecs(|e, zone| owlet_soc_ecs::document_with_times(e, &|us| zone.rfc3339(us))),
            "ecs.ndjson",
            "application/x-ndjson",
        ),
        other => {
            return Err(PageError::BadRequest(format!(
                "format \"{other}\": choose ndjson, csv or ecs"
            )));
        }
    };
    let kinds = match given(&q.kind) {
        Some(k) if KINDS.contains(&k.as_str()) => vec![k],
        Some(k) => {
            return Err(PageError::BadRequest(format!(
                "kind \"{k}\": choose one of {}",
                KINDS.join(", ")
            )));
        }
        None => Vec::new(),
    };
    let filter = Filter {
        from_us: time_filter(&ctx, &q.from)?,
        to_us: time_filter(&ctx, &q.to)?,
        kinds,
        ..Default::default()
    };
    let zone = Zone::parse(ctx.tz.name()).map_err(PageError::BadRequest)?;
    let tenant = ctx.tenant()?.to_string();
    let c = ctx.clone();
    let detail = format!("{q:?}");
    let data = state
        .blocking(move |s| {
            let data = s.data(c.tenant()?)?;
            if !data.has_events()? {
                return Err(PageError::NotFound);
            }
            s.audit(&c, "download", &detail);
            Ok(data)
        })
        .await?;
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = data.export(&filter, format, &zone, &mut out) {
            // The browser sees a cut download; the log says why.
            tracing::warn!("portal download: {e}");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{tenant}-events.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
