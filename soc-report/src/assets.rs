//! The files a web page of reports and plots needs, compiled into the
//! binary so the portal serves them with no internet access and no files
//! to install (a SOC network often has none): the report's stylesheet,
//! the plot script and the vendored uPlot 1.6.32 (MIT; `assets/vendor/uplot/VERSION`
//! names the npm package and the files' sha256).
//!
//! Serve them under one prefix of the portal's own origin (CSP
//! `script-src 'self'; style-src 'self'`); a page draws a plot with
//! `<div data-series="/tenants/T/series/cpu?from=…&to=…"></div>` and the
//! three scripts/styles linked.

/// `(file name, content type, bytes)`.
pub const FILES: [(&str, &str, &[u8]); 5] = [
    (
        "report.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/report.css"),
    ),
    (
        "plots.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/plots.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/vendor/uplot/LICENSE"),
    ),
];

/// The content type and bytes of asset `name`, if there is one.
pub fn get(name: &str) -> Option<(&'static str, &'static [u8])> {
    FILES.iter().find(|f| f.0 == name).map(|f| (f.1, f.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_script_never_turns_data_into_markup_or_code() {
        let js = std::str::from_utf8(get("plots.js").unwrap().1).unwrap();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
            "document.write",
        ] {
            assert!(!js.contains(banned), "plots.js uses {banned}");
        }
        assert!(js.contains("data-series") && js.contains("tzDate"));
        let (kind, uplot) = get("uPlot.iife.min.js").unwrap();
        assert!(kind.starts_with("text/javascript"));
        assert!(uplot.starts_with(b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */"));
        assert!(get("../Cargo.toml").is_none());
    }
}
