//! The local control socket: how operators talk to a running agent.
//!
//! A Unix stream socket (mode 0660) at `control.socket`. The agent opens no
//! network port and takes no command from the SOC (invariant 5). Protocol:
//! the client writes one command line (`health` or `reload`), the agent
//! answers with one JSON line and closes. Requests are read with a size and
//! time limit so a stuck client cannot hold the agent.
//!
//! The answer comes from the service's main loop (which owns the collectors
//! and the configuration), so `reload` answers only once the reload has been
//! applied or rejected, with its outcome:
//! `{"reload":"applied","added":[..],"changed":[..],"removed":[..]}` or
//! `{"reload":"rejected","errors":"FILE:LINE:COL: key: ..."}`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

/// Longest request line accepted.
const MAX_REQUEST: u64 = 256;
/// Time a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for the service's main loop; it answers with one JSON line.
#[derive(Debug)]
pub enum Request {
    Health(oneshot::Sender<String>),
    Reload(oneshot::Sender<String>),
}

/// How long the main loop may take to answer (a reload parses the config
/// and re-plans the checks).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves the socket [`bind`] opened at `path` until shutdown, then removes
/// it. Requests go to the main loop on `requests`.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    requests: mpsc::Sender<Request>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => { warn!(error = %e, "control socket accept failed"); continue; }
            },
            _ = shutdown.changed() => break,
        };
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &requests).await {
                debug!(error = %e, "control client went away");
            }
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// Binds the control socket (replacing a stale one left by a kill -9), mode
/// 0660. Done before the agent starts its work, so a socket that cannot be
/// bound stops the start with a clear error instead of a silent UNKNOWN.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket file left by a previous run (kill -9) would make bind fail.
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot bind the control socket {}: {e} (is another owlet running?)",
                path.display()
            ),
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

async fn answer(stream: UnixStream, requests: &mpsc::Sender<Request>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let (tx, rx) = oneshot::channel();
    let request = match line.trim() {
        "health" => Some(Request::Health(tx)),
        "reload" => Some(Request::Reload(tx)),
        _ => None,
    };
    let reply = match request {
        None => serde_json::json!({
            "error": format!("unknown command {:?}; try health or reload", line.trim())
        })
        .to_string(),
        Some(request) => ask(requests, request, rx).await,
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

/// Hands `request` to the main loop and waits for its answer.
pub(crate) async fn ask(
    requests: &mpsc::Sender<Request>,
    request: Request,
    answer: oneshot::Receiver<String>,
) -> String {
    let error = |text: &str| serde_json::json!({ "error": text }).to_string();
    if requests.send(request).await.is_err() {
        return error("the agent is shutting down");
    }
    match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => error("the agent is shutting down"),
        Err(_) => error(&format!(
            "the agent did not answer within {}s (its main loop is busy or stuck; see its log)",
            ANSWER_TIMEOUT.as_secs()
        )),
    }
}

/// Client side: sends `command`, returns the reply line.
pub async fn request(path: &Path, command: &str) -> std::io::Result<String> {
    let mut stream = tokio::time::timeout(REQUEST_TIMEOUT, UnixStream::connect(path))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut reply = String::new();
    tokio::time::timeout(
        ANSWER_TIMEOUT + REQUEST_TIMEOUT,
        stream.take(1 << 20).read_to_string(&mut reply),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply"))??;
    Ok(reply.trim().to_string())
}
