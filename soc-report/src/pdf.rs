//! PDF of a report: the HTML page ([`crate::html`], inline style) printed
//! by headless Chromium.
//!
//! Why Chromium and not a Rust PDF library: one template serves the web
//! page, the mail and the PDF, so they cannot disagree; Chromium lays out
//! Japanese text (line breaking, CJK fonts through fontconfig, `fonts-noto-cjk`)
//! and tables across pages properly, which the Rust PDF crates we looked
//! at (printpdf, genpdf) leave to the caller (no CJK line breaking, manual
//! font embedding and pagination). The price is a runtime dependency: the
//! Debian packages `chromium` and `fonts-noto-cjk` on the SOC host.
//!
//! Guarantees:
//! * Chromium runs with a fresh, private profile directory, no network
//!   access to anything but the `file://` page (the page references no
//!   other resource), and is killed after `timeout`;
//! * a missing Chromium is an error that names the Debian packages to
//!   install; a Chromium that exits without writing a PDF is an error with
//!   its exit status and the end of its output;
//! * the output file appears complete or not at all (written beside its
//!   destination, then renamed).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Binaries tried in order when `OWLET_CHROMIUM` is not set.
const CANDIDATES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The default time a print may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(
        "cannot make a PDF: no Chromium found (looked for {looked}); install Debian's packages `chromium` and `fonts-noto-cjk` (apt-get install chromium fonts-noto-cjk), or set OWLET_CHROMIUM to the browser's path"
    )]
    NoChromium { looked: String },
    #[error("cannot make a PDF: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot make a PDF: {binary} did not finish within {seconds} s and was stopped")]
    Timeout { binary: String, seconds: u64 },
    #[error("cannot make a PDF: {binary} exited with {status} without writing one: {output}")]
    Failed {
        binary: String,
        status: String,
        output: String,
    },
}

/// The Chromium binary to use: `OWLET_CHROMIUM`, else the first of
/// `chromium`, `chromium-browser`, `google-chrome` on `PATH`.
pub fn find_chromium() -> Result<PathBuf, PdfError> {
    locate(std::env::var_os("OWLET_CHROMIUM"), std::env::var_os("PATH"))
}

/// [`find_chromium`] with the two variables given.
pub fn locate(
    chromium: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf, PdfError> {
    if let Some(path) = chromium.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(PdfError::NoChromium {
                looked: format!("OWLET_CHROMIUM={}", path.display()),
            })
        };
    }
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    CANDIDATES
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| PdfError::NoChromium {
            looked: format!("{} on PATH", CANDIDATES.join(", ")),
        })
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PdfError {
    let what = what.into();
    move |source| PdfError::Io { what, source }
}

/// Prints the HTML page `html` (a complete, self-contained page: use
/// [`crate::Style::Inline`]) to the PDF file `out`.
pub fn html_to_pdf(html: &str, out: &Path, timeout: Duration) -> Result<(), PdfError> {
    let chromium = find_chromium()?;
    let work = tempfile::Builder::new()
        .prefix("owlet-report-pdf")
        .tempdir()
        .map_err(io("creating a temporary directory"))?;
    let page = work.path().join("report.html");
    std::fs::write(&page, html).map_err(io(format!("writing {}", page.display())))?;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = tempfile::Builder::new()
        .prefix(".report-pdf")
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(io(format!("creating a file in {}", dir.display())))?;
    let log = work.path().join("chromium.log");
    let log_file = std::fs::File::create(&log).map_err(io("creating chromium's log"))?;
    let mut child = Command::new(&chromium)
        .arg("--headless")
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .arg("--no-first-run")
        .arg("--no-pdf-header-footer")
        .arg(format!(
            "--user-data-dir={}",
            work.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", partial.path().display()))
        .arg(format!("file://{}", page.display()))
        .env("HOME", work.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(io("chromium's log"))?)
        .stderr(log_file)
        .spawn()
        .map_err(io(format!("starting {}", chromium.display())))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io("waiting for chromium"))? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PdfError::Timeout {
                binary: chromium.display().to_string(),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let written = std::fs::metadata(partial.path())
        .map(|m| m.len())
        .unwrap_or(0);
    let mut head = [0u8; 5];
    let is_pdf = written > 0
        && std::fs::File::open(partial.path())
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && &head == b"%PDF-";
    if !status.success() || !is_pdf {
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: String = output
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        return Err(PdfError::Failed {
            binary: chromium.display().to_string(),
            status: status.to_string(),
            output: if tail.is_empty() {
                "(no output)".into()
            } else {
                tail
            },
        });
    }
    partial.persist(out).map_err(|e| PdfError::Io {
        what: format!("moving the PDF to {}", out.display()),
        source: e.error,
    })?;
    Ok(())
}
