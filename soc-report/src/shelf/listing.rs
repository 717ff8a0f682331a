//! A shelf's file names as the portal lists them: grouped by period,
//! newest period first, each period's files sorted. The same for the
//! embedded SOC's directory ([`crate::schedule::stored`]) and the
//! scaled-out SOC's `reports` table (read by the portal through the
//! tenant's own connection).
//!
//! Guarantees: a name that is no period's file (a temporary file, a
//! dot-file) or a mail mark (`.mail-pending`) is not listed.

use crate::schedule::StoredReport;
use owlet_soc_export::Zone;

/// `names` grouped into periods, newest first.
pub fn periods(names: impl IntoIterator<Item = String>) -> Vec<StoredReport> {
    let mut by: std::collections::BTreeMap<(i64, String), Vec<String>> = Default::default();
    for name in names {
        if name.ends_with(".mail-pending") {
            continue;
        }
        let Some(period) = super::period_of(&name) else {
            continue;
        };
        let end = period.bounds(&Zone::Utc).1;
        by.entry((end, period.label)).or_default().push(name);
    }
    by.into_iter()
        .rev()
        .map(|((_, period), mut files)| {
            files.sort();
            StoredReport { period, files }
        })
        .collect()
}

/// Whether `name` could be a kept report file (used before a shelf is
/// asked for it): a period's file, not a mark.
pub fn is_report_file(name: &str) -> bool {
    !name.ends_with(".mail-pending") && super::period_of(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_grouped_newest_period_first_and_marks_left_out() {
        let listed = periods(
            [
                "2026-10.json",
                "2026-11.ja.pdf",
                "2026-11.en.html",
                "2026-11.mail-pending",
                ".report123.part",
            ]
            .map(String::from),
        );
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].period, "2026-11");
        assert_eq!(listed[0].files, ["2026-11.en.html", "2026-11.ja.pdf"]);
        assert_eq!(listed[1].files, ["2026-10.json"]);
        assert!(!is_report_file("2026-11.mail-pending"));
        assert!(is_report_file("2026-11.ja.pdf"));
    }
}
