//! Histograms of the rollups' `*_hist` columns: the bucket scales and the
//! counts per bucket, merged by addition (so merging is order-free and a
//! batch's histogram added to a stored one equals the histogram of both).
//! Never: lose a count (a stored text that does not parse is an empty
//! histogram, and only derived data is ever stored so).

use std::collections::BTreeMap;

/// How a histogram column buckets its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// µs, 8 buckets per doubling.
    Log,
    /// 0–100 %, half-point buckets.
    Percent,
}

impl Scale {
    /// The bucket of `v`.
    pub fn bucket(self, v: f64) -> u16 {
        match self {
            Scale::Log if v < 1.0 || v.is_nan() => 0,
            Scale::Log => (1.0 + (v.log2() * 8.0).floor()).min(600.0) as u16,
            // `as` maps NaN to 0.
            Scale::Percent => (v * 2.0).floor().clamp(0.0, 200.0) as u16,
        }
    }

    /// The values bucket `b` holds: `[low, high)`.
    pub fn bounds(self, b: u16) -> (f64, f64) {
        let b = f64::from(b);
        match self {
            Scale::Log if b == 0.0 => (0.0, 1.0),
            Scale::Log => (((b - 1.0) / 8.0).exp2(), (b / 8.0).exp2()),
            Scale::Percent => (b / 2.0, (b + 1.0) / 2.0),
        }
    }

    /// The value a percentile falling in bucket `b` is reported as.
    pub fn middle(self, b: u16) -> f64 {
        let (low, high) = self.bounds(b);
        match self {
            Scale::Log if b > 0 => (low * high).sqrt(),
            _ => (low + high) / 2.0,
        }
    }
}

/// A histogram: counts per bucket of a [`Scale`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist(pub BTreeMap<u16, u64>);

impl Hist {
    pub fn add(&mut self, bucket: u16) {
        *self.0.entry(bucket).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Hist) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// Parses a stored `{"bucket": count}` object; anything else is an
    /// empty histogram (the column is derived, never evidence).
    pub fn parse(text: &str) -> Hist {
        let mut h = Hist::default();
        let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
        for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((b, n)) = pair.split_once(':') else {
                return Hist::default();
            };
            let (Ok(b), Ok(n)) = (
                b.trim().trim_matches('"').parse::<u16>(),
                n.trim().parse::<u64>(),
            ) else {
                return Hist::default();
            };
            *h.0.entry(b).or_default() += n;
        }
        h
    }

    /// The stored form: `{"12":3,"13":5}`.
    pub fn to_json(&self) -> String {
        let pairs: Vec<String> = self.0.iter().map(|(b, n)| format!("\"{b}\":{n}")).collect();
        format!("{{{}}}", pairs.join(","))
    }

    /// The `p`-th percentile (0–100, nearest rank) as the middle of its
    /// bucket, clamped to the exact `[min, max]` observed.
    pub fn percentile(&self, scale: Scale, p: f64, min: f64, max: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (b, c) in &self.0 {
            seen += c;
            if seen >= rank {
                return Some(scale.middle(*b).clamp(min.min(max), max));
            }
        }
        Some(max)
    }
}
