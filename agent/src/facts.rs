//! Facts about the sensor host that the agent reports: host name, time zone,
//! UTC offset, OS. Read once at start (except the offset, which changes with
//! daylight saving time). Never fails: unknown facts are empty strings.

/// What the agent tells the SOC about where it runs.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: String,
    /// IANA zone name, e.g. "Asia/Tokyo".
    pub time_zone: String,
    /// e.g. "Debian GNU/Linux 12 (bookworm) / Linux 6.1.0-18-amd64".
    pub os: String,
}

impl HostFacts {
    pub fn read() -> Self {
        let hostname = read_trimmed("/proc/sys/kernel/hostname");
        let time_zone = iana_time_zone::get_timezone().unwrap_or_default();
        let pretty = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_default();
        let kernel = read_trimmed("/proc/sys/kernel/osrelease");
        Self {
            hostname,
            time_zone,
            os: format!("{pretty} / Linux {kernel}"),
        }
    }
}

/// Offset of local time from UTC now, seconds east.
pub fn utc_offset_seconds() -> i32 {
    use chrono::Offset;
    chrono::Local::now().offset().fix().local_minus_utc()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
