//! The Nagios-style verdict every health judgement ends in: the agent's
//! whole health, and each collector's own.

use serde::Serialize;

/// Nagios-style verdict, as `owlet health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Verdict {
    /// Nagios plugin exit status.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }
}

impl Verdict {
    pub(crate) fn rank(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Unknown => 2,
            Verdict::Critical => 3,
        }
    }

    pub(crate) fn max_with(self, other: Verdict) -> Verdict {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}
