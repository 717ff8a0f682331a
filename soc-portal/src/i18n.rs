//! English and Japanese: one table of messages, the language of a user
//! (stored) or of a browser before login (`Accept-Language`).
//!
//! Guarantees (tested): every key has both languages, and every key the
//! templates and handlers use is in the table. A missing key would show
//! as the key itself, never as an empty page.

use axum::http::{HeaderMap, header};

/// A language the portal speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    Ja,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    /// `ja` is Japanese, anything else English.
    pub fn parse(s: &str) -> Lang {
        if s.trim().eq_ignore_ascii_case("ja") {
            Lang::Ja
        } else {
            Lang::En
        }
    }

    /// The first of `en` / `ja` in the browser's `Accept-Language`, by weight.
    pub fn from_accept_language(headers: &HeaderMap) -> Lang {
        let Some(value) = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::En;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in value.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("ja") => Lang::Ja,
                Some("en") => Lang::En,
                _ => continue,
            };
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

/// Messages in one language.
#[derive(Debug, Clone, Copy)]
pub struct Tr(pub Lang);

impl Tr {
    /// The message `key`; the key itself if the table lacks it.
    pub fn get<'a>(&self, key: &'a str) -> &'a str {
        match MESSAGES.iter().find(|(k, _, _)| *k == key) {
            Some((_, en, ja)) => match self.0 {
                Lang::En => en,
                Lang::Ja => ja,
            },
            None => key,
        }
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }
}

/// `(key, English, Japanese)`.
pub const MESSAGES: &[(&str, &str, &str)] = &[
    ("login.title", "Log in", "ログイン"),
    ("login.name", "User name", "ユーザー名"),
    ("login.password", "Password", "パスワード"),
    ("login.submit", "Log in", "ログイン"),
    (
        "login.failed",
        "Wrong user name or password.",
        "ユーザー名またはパスワードが違います。",
    ),
    (
        "login.locked",
        "Too many failed logins. Try again in {minutes} minutes.",
        "ログイン失敗が多すぎます。{minutes} 分後に再度お試しください。",
    ),
    (
        "oidc.sign_in_with",
        "Sign in with",
        "次のアカウントでサインイン:",
    ),
    (
        "oidc.failed",
        "Sign-in through the identity provider was refused:",
        "ID プロバイダー経由のサインインは拒否されました:",
    ),
    (
        "oidc.continue",
        "Signed in: continue",
        "サインインしました: 続ける",
    ),
    ("totp.title", "One-time code", "ワンタイムコード"),
    (
        "totp.code",
        "6-digit code from your authenticator app",
        "認証アプリの 6 桁のコード",
    ),
    (
        "totp.failed",
        "That code is not valid (or was used already).",
        "コードが正しくないか、既に使用されています。",
    ),
    ("nav.tenants", "Tenants", "テナント"),
    ("nav.admin", "Administration", "管理"),
    ("nav.users", "Users", "ユーザー"),
    ("nav.audit", "Audit log", "監査ログ"),
    ("nav.logout", "Log out", "ログアウト"),
    ("nav.overview", "Overview", "概要"),
    ("nav.alerts", "Alerts", "アラート"),
    ("nav.changes", "Configuration changes", "設定変更"),
    ("nav.plots", "Plots", "グラフ"),
    ("nav.reports", "Reports", "レポート"),
    ("nav.download", "Log download", "ログのダウンロード"),
    ("home.title", "Your tenants", "担当テナント"),
    (
        "home.none",
        "No tenant is assigned to you yet.",
        "割り当てられたテナントはまだありません。",
    ),
    ("account.title", "Your account", "アカウント"),
    (
        "account.must_change",
        "Choose your own password now: the one-time password works only until then.",
        "初期パスワードは一度限りです。ご自身のパスワードを設定してください。",
    ),
    ("account.password", "Password", "パスワード"),
    ("account.current", "Current password", "現在のパスワード"),
    (
        "account.new",
        "New password (at least 12 characters)",
        "新しいパスワード（12 文字以上）",
    ),
    (
        "account.repeat",
        "New password again",
        "新しいパスワード（確認）",
    ),
    (
        "account.mismatch",
        "The two new passwords differ.",
        "新しいパスワードが一致しません。",
    ),
    (
        "account.wrong_current",
        "The current password is wrong.",
        "現在のパスワードが違います。",
    ),
    (
        "account.too_short",
        "The new password must have at least 12 characters.",
        "新しいパスワードは 12 文字以上にしてください。",
    ),
    (
        "account.preferences",
        "Language and time zone",
        "言語とタイムゾーン",
    ),
    ("account.language", "Language", "言語"),
    (
        "account.zone",
        "Time zone (IANA, e.g. Asia/Tokyo)",
        "タイムゾーン（例: Asia/Tokyo）",
    ),
    ("save", "Save", "保存"),
    ("none", "none", "なし"),
    ("overview.title", "Overview", "概要"),
    (
        "overview.live",
        "Live: this page updates itself.",
        "ライブ: このページは自動で更新されます。",
    ),
    (
        "overview.nothing",
        "Nothing needs your attention.",
        "対応が必要な事項はありません。",
    ),
    ("overview.sensors", "Sensors", "センサー"),
    (
        "overview.no_sensors",
        "No sensor has connected yet.",
        "まだ接続したセンサーはありません。",
    ),
    ("overview.checks", "Checks", "監視項目"),
    (
        "overview.no_checks",
        "No check results in the last 7 days.",
        "過去 7 日間に監視結果はありません。",
    ),
    ("overview.open_alerts", "Open alerts", "未対応のアラート"),
    ("overview.no_alerts", "No alerts.", "アラートはありません。"),
    (
        "overview.changes",
        "Recent configuration changes",
        "最近の設定変更",
    ),
    (
        "overview.no_changes",
        "No configuration changes.",
        "設定変更はありません。",
    ),
    ("plots.zone", "Time zone", "タイムゾーン"),
    ("plots.presets", "Range", "期間"),
    ("plots.last", "last", "直近"),
    ("plots.show", "Show", "表示"),
    (
        "plots.explain",
        "Plots are drawn in your browser from the SOC's data; each panel links to its data (JSON).",
        "グラフは SOC のデータからブラウザーで描画されます。各パネルのリンクからデータ（JSON）を取得できます。",
    ),
    ("plots.data", "Data (JSON)", "データ（JSON）"),
    ("plots.availability", "Check availability", "監視の稼働率"),
    ("plots.latency", "Check latency", "監視の応答時間"),
    (
        "plots.cpu",
        "Host CPU (with learned normal range)",
        "ホスト CPU（学習した通常範囲つき）",
    ),
    (
        "plots.memory",
        "Host memory (with learned normal range)",
        "ホストのメモリ（学習した通常範囲つき）",
    ),
    (
        "plots.disk",
        "Host disk (with learned normal range)",
        "ホストのディスク（学習した通常範囲つき）",
    ),
    (
        "plots.capture",
        "Capture bytes and packets per second",
        "キャプチャ（バイト/秒・パケット/秒）",
    ),
    ("plots.alerts", "Alerts on a timeline", "アラートの時系列"),
    ("plots.tops", "Top lists", "上位リスト"),
    (
        "plots.sources",
        "Top talkers (sources)",
        "通信量上位（送信元）",
    ),
    (
        "plots.destinations",
        "Top destinations",
        "通信量上位（宛先）",
    ),
    ("plots.ports", "Top ports", "上位ポート"),
    ("plots.dns", "Top DNS names", "上位 DNS 名"),
    ("plots.sni", "Top TLS SNI names", "上位 TLS SNI 名"),
    ("plots.key", "Name", "名前"),
    ("plots.bytes", "Bytes", "バイト数"),
    ("plots.flows", "Flows", "フロー数"),
    ("plots.nothing", "Nothing found.", "該当なし。"),
    (
        "plots.no_data",
        "No data stored for this range.",
        "この期間のデータはありません。",
    ),
    (
        "plots.alert_list",
        "Latest alerts in this range",
        "この期間の最新アラート",
    ),
    (
        "plots.no_alerts",
        "No alerts in this range.",
        "この期間のアラートはありません。",
    ),
    ("plots.time", "Time", "時刻"),
    ("plots.severity", "Severity", "重大度"),
    ("plots.alert", "Alert", "アラート"),
    ("plots.subject", "Subject", "対象"),
    ("plots.state", "State", "状態"),
    (
        "plots.not_listed",
        "More alerts in this range, not listed",
        "この期間の未表示のアラート",
    ),
    (
        "reports.explain",
        "Weekly and monthly reports, made on schedule and kept with the tenant's retention.",
        "週次・月次レポート。スケジュールで作成され、テナントの保存期間に従って保管されます。",
    ),
    ("reports.period", "Period", "期間"),
    ("reports.render", "Render now", "今すぐ作成"),
    (
        "reports.render_note",
        "A month (2026-11) or an ISO week (2026-W48), made now as a web page; print it from the browser for PDF.",
        "月（2026-11）または ISO 週（2026-W48）を今すぐウェブページとして作成します。PDF はブラウザーの印刷機能をご利用ください。",
    ),
    ("reports.kept", "Kept reports", "保管されたレポート"),
    (
        "reports.none_kept",
        "No reports kept yet.",
        "保管されたレポートはまだありません。",
    ),
    ("reports.files", "Files", "ファイル"),
    ("reports.view", "Open", "表示"),
    ("reports.download", "Download", "ダウンロード"),
    ("col.sensor", "Sensor", "センサー"),
    ("col.host", "Host", "ホスト"),
    ("col.state", "State", "状態"),
    ("col.last_seen", "Last seen", "最終確認"),
    ("col.version", "Version", "バージョン"),
    ("col.hw", "Hardware profile", "ハードウェア"),
    ("col.cert_expiry", "Certificate expires", "証明書の有効期限"),
    ("col.spool", "Spool backlog", "未送信イベント"),
    ("col.check", "Check", "監視項目"),
    ("col.target", "Target", "対象"),
    ("col.since", "Since", "開始"),
    ("col.last", "Last result", "最新結果"),
    ("col.message", "Message", "メッセージ"),
    ("col.time", "Time", "日時"),
    ("col.severity", "Severity", "重要度"),
    ("col.alert", "Alert", "アラート"),
    ("col.subject", "Subject", "対象"),
    ("col.workflow", "Handling", "対応状況"),
    ("col.path", "Path", "パス"),
    ("col.action", "Action", "操作"),
    ("col.changed_by", "Changed by", "変更者"),
    ("col.user", "User", "ユーザー"),
    ("col.tenant", "Tenant", "テナント"),
    ("col.detail", "Detail", "詳細"),
    ("col.remote", "From", "接続元"),
    ("up", "up", "正常"),
    ("down", "down", "停止"),
    ("degraded", "degraded", "低下"),
    ("unknown", "unknown", "不明"),
    ("connected", "connected", "接続中"),
    ("silent", "silent", "応答なし"),
    ("stopped", "stopped (planned)", "停止（計画）"),
    ("disconnected", "disconnected", "切断"),
    ("new", "new", "新規"),
    ("acknowledged", "acknowledged", "確認済み"),
    ("escalated", "escalated", "エスカレーション済み"),
    ("resolved", "resolved", "解決済み"),
    ("changes.title", "Configuration changes", "設定変更"),
    ("change.title", "Configuration change", "設定変更の詳細"),
    (
        "change.while_stopped",
        "while the agent was stopped",
        "エージェント停止中",
    ),
    (
        "change.while_stopped_long",
        "This change happened while the agent was stopped: it was found at the agent's next start, and the file's modification time is the only clue to when.",
        "この変更はエージェント停止中に行われ、次回起動時に検出されました。変更時刻の手がかりはファイルの更新時刻のみです。",
    ),
    ("change.old_path", "Previous path", "変更前のパス"),
    ("change.received", "Stored by the SOC", "SOC 受信日時"),
    ("change.before", "before", "変更前"),
    ("change.after", "after", "変更後"),
    ("change.size", "Size (bytes)", "サイズ（バイト）"),
    ("change.mode", "Mode", "権限"),
    ("change.owner", "Owner", "所有者"),
    ("change.tag", "Watch rule", "監視ルール"),
    (
        "change.diff",
        "Difference (secrets redacted by the sensor)",
        "差分（機密情報はセンサーで伏せ字化済み）",
    ),
    ("change.redacted", "Lines redacted", "伏せ字にした行数"),
    (
        "change.truncated",
        "The difference was cut at its size limit.",
        "差分はサイズ上限で切り詰められています。",
    ),
    ("change.no_diff", "No difference shown", "差分なし"),
    ("alerts.title", "Alerts", "アラート"),
    ("alert.title", "Alert", "アラートの詳細"),
    ("alert.cleared", "cleared", "復旧済み"),
    ("alert.source", "Raised by", "検知元"),
    ("alert.id", "Event id", "イベント ID"),
    ("alert.move_to", "Move to", "変更後の状況"),
    ("alert.comment", "Comment", "コメント"),
    ("alert.comments", "Comments", "コメント"),
    (
        "alert.no_comments",
        "No comments yet.",
        "コメントはまだありません。",
    ),
    ("alert.add_comment", "Add comment", "コメントを追加"),
    ("filter.from", "From", "開始"),
    ("filter.to", "To", "終了"),
    ("filter.text", "Text", "文字列"),
    ("filter.apply", "Filter", "絞り込み"),
    ("download.title", "Log download", "ログのダウンロード"),
    (
        "download.explain",
        "Download the stored events, unaltered, as a file. Times are written with the offset of your time zone",
        "保存されたイベントを改変せずにファイルでダウンロードします。日時はお使いのタイムゾーンのオフセット付きで出力されます",
    ),
    ("download.format", "Format", "形式"),
    ("download.kind", "Kind", "種類"),
    ("download.all", "all kinds", "すべて"),
    ("download.submit", "Download", "ダウンロード"),
    ("audit.title", "Audit log", "監査ログ"),
    ("admin.title", "Administration", "管理"),
    (
        "admin.certs",
        "Sensor certificates: issue, renew and revoke them on the Sensors page (or with owlet-soc ca issue / renew / revoke on the CA host).",
        "センサー証明書の発行・更新・失効は「センサー」ページ（または CA ホストで owlet-soc ca issue / renew / revoke）で行います。",
    ),
    ("sensors.title", "Sensors' certificates", "センサー証明書"),
    ("nav.sensors", "Sensors", "センサー"),
    ("sensors.issue", "New sensor", "新しいセンサー"),
    ("sensors.renew", "Renew", "更新"),
    ("sensors.revoke", "Revoke", "失効"),
    ("sensors.agent", "Agent id", "エージェント ID"),
    ("sensors.days", "Valid for (days)", "有効日数"),
    ("sensors.revoke_old", "Revoke older ones", "旧証明書を失効"),
    ("sensors.reason", "Reason", "理由"),
    ("col.serial", "Serial", "シリアル"),
    ("col.revoked", "Revoked", "失効日時"),
    (
        "sensors.bundle",
        "The sensor's configuration, key and certificates (owlet.toml, agent.pem, agent.key, ca.pem, soc.pem): copy them to the sensor's /etc/owlet/. Download it once and hand it to the field engineer; it is not kept and cannot be downloaded again.",
        "センサーの設定・鍵・証明書（owlet.toml、agent.pem、agent.key、ca.pem、soc.pem）です。センサーの /etc/owlet/ へコピーしてください。一度だけダウンロードでき、保存されません。現地作業者へお渡しください。",
    ),
    ("sensors.download", "Download", "ダウンロード"),
    ("sensors.none", "None issued yet.", "発行済みなし。"),
    ("nav.contacts", "Contacts", "通知先"),
    ("contacts.title", "Notification contacts", "通知先"),
    (
        "contacts.note",
        "These people receive this tenant's mail notifications, besides the recipients the SOC configured. A change applies to the next notification.",
        "ここに登録した方は、SOC が設定した宛先に加えて、このテナントのメール通知を受け取ります。変更は次の通知から反映されます。",
    ),
    ("contacts.email", "Mail address", "メールアドレス"),
    ("contacts.min_severity", "Minimum severity", "最低重要度"),
    ("contacts.any", "any", "すべて"),
    ("contacts.add", "Add contact", "通知先を追加"),
    ("contacts.delete", "Delete", "削除"),
    (
        "contacts.none",
        "No contacts yet.",
        "通知先はまだありません。",
    ),
    (
        "contacts.unreadable",
        "The contact list cannot be read right now; the SOC's log names the reason. Notifications still go to the recipients the SOC configured.",
        "通知先一覧を読み込めません（理由は SOC のログに記録されています）。SOC が設定した宛先への通知は継続します。",
    ),
    ("users.title", "Users", "ユーザー"),
    ("users.role", "Role", "ロール"),
    (
        "users.tenants",
        "Tenants (comma separated)",
        "テナント（カンマ区切り）",
    ),
    ("users.add", "Add user", "ユーザーを追加"),
    ("users.disable", "Disable", "無効化"),
    ("users.enable", "Enable", "有効化"),
    ("users.reset", "Reset password", "パスワード再発行"),
    (
        "users.totp",
        "Require TOTP (always on for MSSP roles)",
        "TOTP を必須にする（MSSP ロールは常に必須）",
    ),
    (
        "users.issued",
        "Hand these over once, in person or by a separate channel. They are not shown again.",
        "以下は一度だけ表示されます。別経路で安全に本人へお渡しください。",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_once() {
        let mut keys = std::collections::HashSet::new();
        for (k, en, ja) in MESSAGES {
            assert!(!en.trim().is_empty(), "{k}: no English");
            assert!(!ja.trim().is_empty(), "{k}: no Japanese");
            assert!(keys.insert(*k), "{k} twice");
            assert_eq!(
                en.contains("{minutes}"),
                ja.contains("{minutes}"),
                "{k}: placeholders differ"
            );
        }
    }

    /// Every key the templates and handlers name is in the table.
    #[test]
    fn every_used_key_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pattern =
            regex::Regex::new(r#"(?:tr\(|get\(|Frame::new\([^,()]+, )"([a-z_]+(?:\.[a-z_]+)*)""#)
                .unwrap();
        let mut files = Vec::new();
        for dir in ["templates", "src", "src/pages", "src/web"] {
            for e in std::fs::read_dir(root.join(dir)).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() && p.file_name().unwrap() != "i18n.rs" {
                    files.push(p);
                }
            }
        }
        let mut used = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for c in pattern.captures_iter(&text) {
                let key = &c[1];
                // Not messages: header and form field names.
                if ["x-csrf-token", "csrf"].contains(&key) {
                    continue;
                }
                used += 1;
                assert!(
                    MESSAGES.iter().any(|(k, _, _)| *k == key),
                    "{}: key {key} is not in MESSAGES",
                    f.display()
                );
            }
        }
        assert!(used > 50, "the scan found only {used} keys");
    }

    #[test]
    fn accept_language_picks_by_weight() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_LANGUAGE, "en;q=0.5, ja-JP".parse().unwrap());
        assert_eq!(Lang::from_accept_language(&h), Lang::Ja);
        h.insert(header::ACCEPT_LANGUAGE, "fr, en-US;q=0.8".parse().unwrap());
        assert_eq!(Lang::from_accept_language(&h), Lang::En);
        assert_eq!(Tr(Lang::Ja).get("nav.alerts"), "アラート");
    }
}
