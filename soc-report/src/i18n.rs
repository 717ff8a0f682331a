//! The words of a report in each language it is written in: one table,
//! one row per message, a column per language.
//!
//! Invariant (tested): every key has a non-empty text in every language,
//! keys are unique, every key the HTML template and renderer ask for is in
//! the table, and the `{0}`, `{1}` … placeholders of a message are the same
//! in every language. A missing key is a bug, so [`Lang::text`] panics on
//! one in tests and debug builds and falls back to the key in release
//! builds (a report with a raw key beats no report).

use serde::{Deserialize, Serialize};

/// A language a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    Ja,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ja];

    /// `en` or `ja`: the `lang` attribute and the file name part.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// `en` or `ja` (case-insensitive).
    pub fn parse(code: &str) -> Result<Lang, String> {
        match code.to_ascii_lowercase().as_str() {
            "en" => Ok(Lang::En),
            "ja" => Ok(Lang::Ja),
            _ => Err(format!(
                "unknown report language {code:?}: use \"en\" (English) or \"ja\" (Japanese)"
            )),
        }
    }

    /// The text of `key` in this language.
    pub fn text(self, key: &str) -> &'static str {
        match MESSAGES.iter().find(|m| m.0 == key) {
            Some((_, en, ja)) => match self {
                Lang::En => en,
                Lang::Ja => ja,
            },
            None => {
                debug_assert!(false, "report message {key:?} is not in i18n::MESSAGES");
                "?"
            }
        }
    }

    /// The text of `key` with `{0}`, `{1}` … replaced by `args`.
    pub fn fill(self, key: &str, args: &[&str]) -> String {
        let mut out = self.text(key).to_string();
        for (i, a) in args.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), a);
        }
        out
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// `(key, English, Japanese)`.
pub const MESSAGES: &[(&str, &str, &str)] = &[
    ("title", "Monitoring report", "監視レポート"),
    ("tenant", "Customer", "お客様"),
    ("period", "Period", "対象期間"),
    ("time_zone", "Time zone", "タイムゾーン"),
    ("generated", "Generated", "作成日時"),
    ("from_to", "{0} to {1}", "{0} 〜 {1}"),
    ("summary", "Summary", "概要"),
    (
        "nothing_found",
        "Nothing found: no alerts, no incidents and no down time in this period.",
        "検知事項なし：この期間にアラート、インシデント、停止はありませんでした。",
    ),
    (
        "no_events",
        "No events were received for this period ({0} hours). If sensors should have reported, check their health below.",
        "この期間（{0} 時間）のイベントは受信していません。センサーが稼働しているはずの場合は、下記のセンサー状態をご確認ください。",
    ),
    (
        "events_received",
        "{0} events received in {1} of {2} hours.",
        "{2} 時間中 {1} 時間で {0} 件のイベントを受信しました。",
    ),
    ("summary_alerts", "Alerts", "アラート"),
    ("summary_incidents", "Incidents", "インシデント"),
    ("summary_open", "Still open", "未解決"),
    (
        "summary_down_checks",
        "Checks with down time",
        "停止のあった監視項目",
    ),
    ("summary_changes", "Configuration changes", "設定変更"),
    ("summary_monitored", "Checks monitored", "監視項目数"),
    (
        "availability",
        "Availability per check (SLA)",
        "監視項目ごとの稼働率（SLA）",
    ),
    ("agent", "Sensor", "センサー"),
    ("check", "Check", "監視項目"),
    ("availability_col", "Availability", "稼働率"),
    ("results", "Results", "結果数"),
    ("up", "Up", "正常"),
    ("degraded", "Degraded", "低下"),
    ("down", "Down", "停止"),
    ("latency_p50", "Latency p50", "応答時間 p50"),
    ("latency_p95", "Latency p95", "応答時間 p95"),
    (
        "no_checks",
        "Nothing found: no check results in this period.",
        "検知事項なし：この期間の監視結果はありません。",
    ),
    ("alerts", "Alerts", "アラート"),
    ("alert", "Alert", "アラート"),
    ("severity", "Severity", "重要度"),
    ("count", "Count", "件数"),
    ("raised", "Raised", "発生"),
    ("cleared", "Cleared", "復旧"),
    (
        "no_alerts",
        "Nothing found: no alerts in this period.",
        "検知事項なし：この期間のアラートはありません。",
    ),
    (
        "incidents",
        "Incidents and time to notification",
        "インシデントと通知までの時間",
    ),
    ("subject", "Subject", "対象"),
    ("duration", "Duration", "継続時間"),
    ("notified", "Notified", "通知日時"),
    ("time_to_notify", "Time to notification", "通知までの時間"),
    ("still_open", "still open", "継続中"),
    ("before_log", "(before the stored log)", "（保存期間外）"),
    ("not_notified", "not notified", "通知なし"),
    (
        "no_incidents",
        "Nothing found: no incident was open in this period.",
        "検知事項なし：この期間に発生中のインシデントはありません。",
    ),
    ("changes", "Configuration changes", "設定変更"),
    ("action", "Action", "操作"),
    ("changes_col", "Changes", "件数"),
    ("time", "Time", "日時"),
    ("path", "Path", "パス"),
    ("changed_by", "Changed by", "変更者"),
    (
        "latest_changes",
        "Latest changes (newest first)",
        "最近の変更（新しい順）",
    ),
    (
        "changes_not_listed",
        "… and {0} earlier changes (in the JSON report and the log export).",
        "… ほか {0} 件の変更（JSON レポートとログのダウンロードに含まれます）。",
    ),
    (
        "no_changes",
        "Nothing found: no configuration changes in this period.",
        "検知事項なし：この期間の設定変更はありません。",
    ),
    ("top_sources", "Top sources by bytes", "通信量の多い送信元"),
    (
        "top_destinations",
        "Top destinations by bytes",
        "通信量の多い宛先",
    ),
    (
        "top_ports",
        "Top destination ports by bytes",
        "通信量の多い宛先ポート",
    ),
    ("source", "Source", "送信元"),
    ("destination", "Destination", "宛先"),
    ("port", "Port", "ポート"),
    ("bytes", "Bytes", "バイト数"),
    ("packets", "Packets", "パケット数"),
    ("flows", "Flows", "フロー数"),
    ("share", "Share", "割合"),
    (
        "traffic_total",
        "Total {0} in {1} flows; others {2}.",
        "合計 {0}（{1} フロー）、その他 {2}。",
    ),
    (
        "no_flows",
        "Nothing found: no flow records in this period.",
        "検知事項なし：この期間のフロー記録はありません。",
    ),
    ("dns", "DNS names", "DNS 名"),
    ("sni", "TLS server names (SNI)", "TLS サーバー名（SNI）"),
    ("http", "HTTP hosts", "HTTP ホスト"),
    ("name", "Name", "名前"),
    (
        "no_dns",
        "Nothing found: no DNS queries in this period.",
        "検知事項なし：この期間の DNS 問い合わせはありません。",
    ),
    (
        "no_sni",
        "Nothing found: no TLS server names in this period.",
        "検知事項なし：この期間の TLS サーバー名はありません。",
    ),
    (
        "no_http",
        "Nothing found: no HTTP hosts in this period.",
        "検知事項なし：この期間の HTTP ホストはありません。",
    ),
    (
        "host_health",
        "Host health (percent: p50 / p95 / max)",
        "ホストの状態（%：p50 / p95 / 最大）",
    ),
    ("samples", "Samples", "サンプル数"),
    ("cpu", "CPU", "CPU"),
    ("memory", "Memory", "メモリ"),
    ("disk", "Disk", "ディスク"),
    (
        "no_host",
        "Nothing found: no host metrics in this period.",
        "検知事項なし：この期間のホスト情報はありません。",
    ),
    ("sensor_health", "Sensor health", "センサーの状態"),
    ("heartbeats", "Heartbeats", "死活通知"),
    ("last_heartbeat", "Last heartbeat", "最終死活通知"),
    ("longest_gap", "Longest gap", "最長の途絶"),
    ("stops", "Planned stops", "計画停止"),
    ("events_lost", "Events lost", "欠損イベント"),
    (
        "no_sensors",
        "Nothing found: no sensor reported its status in this period.",
        "検知事項なし：この期間に状態を報告したセンサーはありません。",
    ),
    ("notes", "How these figures were made", "集計方法について"),
    (
        "note_rollups",
        "Check, alert, change-count, traffic, name and host figures come from hourly summaries of the whole UTC hours starting in the period; incidents, the latest changes and sensor health come from the stored events.",
        "監視項目・アラート・設定変更件数・通信量・名前・ホストの数値は、期間内に始まる UTC の各 1 時間の集計から、インシデント・最近の変更・センサーの状態は保存されたイベントから算出しています。",
    ),
    (
        "note_top",
        "Top lists add up hourly top-100 lists: totals and 'others' are exact, a key just below every hour's cut can be missing. Percentiles are read from histograms (latency within 9 %, percentages within 0.5 points).",
        "上位リストは 1 時間ごとの上位 100 件を合算したものです。合計と「その他」は正確ですが、毎時間わずかに上位に入らなかった項目は表示されない場合があります。パーセンタイルはヒストグラムから求めています（応答時間は 9 % 以内、割合は 0.5 ポイント以内の誤差）。",
    ),
    (
        "note_offset",
        "{0} is not a whole number of hours from UTC: hourly figures are shifted by up to an hour against the period.",
        "{0} は UTC との時差が 1 時間単位ではないため、時間単位の集計は期間に対して最大 1 時間ずれます。",
    ),
    (
        "note_retention",
        "{0} events of the period are no longer stored (retention); their hourly figures remain, the lists built from single events miss them.",
        "この期間の {0} 件のイベントは保存期間を過ぎて削除されています。時間単位の集計には含まれますが、個別イベントから作る一覧には含まれません。",
    ),
    (
        "note_notify",
        "Time to notification: from the event's own time to the first delivery of the notification that carried it (the notification record).",
        "通知までの時間：イベント発生時刻から、そのイベントを含む通知が最初に配信されるまでの時間です（通知記録より）。",
    ),
    (
        "confidential",
        "Confidential: for the customer named above.",
        "機密：上記のお客様専用の資料です。",
    ),
    ("day_unit", "d", "日"),
    ("hour_unit", "h", "時間"),
    ("minute_unit", "m", "分"),
    ("second_unit", "s", "秒"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn placeholders(s: &str) -> Vec<usize> {
        (0..10)
            .filter(|i| s.contains(&format!("{{{i}}}")))
            .collect()
    }

    #[test]
    fn every_key_has_both_languages_and_the_same_placeholders() {
        let mut seen = HashSet::new();
        for (key, en, ja) in MESSAGES {
            assert!(seen.insert(*key), "key {key} twice");
            assert!(!en.trim().is_empty(), "{key}: no English");
            assert!(!ja.trim().is_empty(), "{key}: no Japanese");
            assert_eq!(
                placeholders(en),
                placeholders(ja),
                "{key}: placeholders differ"
            );
        }
    }

    /// The template's own words (`self.t("key")`). The renderer's keys are
    /// checked when it runs: [`Lang::text`] asserts in debug builds, and the
    /// HTML tests render full and empty reports in both languages.
    #[test]
    fn every_key_the_template_and_renderer_use_is_in_the_table() {
        let sources = [
            include_str!("../templates/report.html"),
            include_str!("html.rs"),
        ];
        let keys: HashSet<&str> = MESSAGES.iter().map(|m| m.0).collect();
        let mut used = 0;
        for src in sources {
            // Calls look like t("key") in the template and the renderer.
            for part in src.split("t(\"").skip(1) {
                let key = &part[..part.find('"').unwrap()];
                assert!(keys.contains(key), "{key:?} is used but not in MESSAGES");
                used += 1;
            }
        }
        assert!(used > 10, "only {used} uses found: the scan is broken");
    }

    #[test]
    fn fill_replaces_placeholders_and_parse_names_the_choices() {
        assert_eq!(Lang::En.fill("from_to", &["a", "b"]), "a to b");
        assert_eq!(Lang::Ja.fill("from_to", &["a", "b"]), "a 〜 b");
        assert_eq!(Lang::parse("JA").unwrap(), Lang::Ja);
        let e = Lang::parse("de").unwrap_err();
        assert!(e.contains("\"en\"") && e.contains("\"ja\""), "{e}");
    }
}
