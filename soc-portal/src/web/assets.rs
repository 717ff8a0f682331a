//! Static files, compiled in: the vendored htmx (0BSD, its LICENSE beside
//! it in `assets/vendor/htmx/`), the portal's own `live.js` and stylesheet,
//! and soc-report's files ([`owlet_soc_report::assets::FILES`]: uPlot
//! 1.6.32 (MIT), `plots.js`, `report.css`) under the same names.
//! Nothing is loaded from elsewhere: the portal works with no internet.
//! Names are a fixed list (no path from the request reaches the disk);
//! long cache lifetimes, because a new release changes the `?v=` query.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::PageError;

/// `(name, content type, bytes)` of every asset.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx/htmx.min.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/live.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/portal.css"),
    ),
];

pub async fn serve(Path(name): Path<String>) -> Result<Response, PageError> {
    let (kind, bytes) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, bytes)| (*kind, *bytes))
        .or_else(|| owlet_soc_report::assets::get(&name))
        .ok_or(PageError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}
