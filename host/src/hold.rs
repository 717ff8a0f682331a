//! A condition that must hold for a while before it counts: the state
//! machine behind thresholds ("CPU > 90 % for 5 min") and anomalies ("outside
//! the learned range for 15 min").
//!
//! Guarantees: [`Hold::update`] reports `Entered` once, on the first update at
//! which the condition has held without a break for at least `hold`, and
//! `Left` once, on the first update at which it no longer holds after having
//! entered. A break before `hold` restarts the wait and reports nothing.
//! Time comes in as an argument (`Instant`), so tests drive it without
//! sleeping.

use std::time::{Duration, Instant};

/// What an update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Entered,
    Left,
}

#[derive(Debug, Clone, Default)]
pub struct Hold {
    /// When the condition started to hold without a break.
    since: Option<Instant>,
    active: bool,
}

impl Hold {
    pub fn update(&mut self, condition: bool, now: Instant, hold: Duration) -> Option<Transition> {
        if !condition {
            self.since = None;
            return std::mem::take(&mut self.active).then_some(Transition::Left);
        }
        let since = *self.since.get_or_insert(now);
        if !self.active && now.saturating_duration_since(since) >= hold {
            self.active = true;
            return Some(Transition::Entered);
        }
        None
    }

    pub fn is_active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enters_after_the_hold_and_leaves_once() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let hold = s(300);
        let mut h = Hold::default();
        assert_eq!(h.update(true, t0, hold), None);
        assert_eq!(h.update(true, t0 + s(299), hold), None);
        assert_eq!(h.update(true, t0 + s(300), hold), Some(Transition::Entered));
        assert!(h.is_active());
        assert_eq!(h.update(true, t0 + s(330), hold), None);
        assert_eq!(h.update(false, t0 + s(360), hold), Some(Transition::Left));
        assert_eq!(h.update(false, t0 + s(390), hold), None);
    }

    #[test]
    fn a_break_restarts_the_wait() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let hold = s(300);
        let mut h = Hold::default();
        h.update(true, t0, hold);
        assert_eq!(h.update(false, t0 + s(200), hold), None);
        assert_eq!(h.update(true, t0 + s(210), hold), None);
        // 300 s after the first start, but only 100 s after the break.
        assert_eq!(h.update(true, t0 + s(310), hold), None);
        assert_eq!(h.update(true, t0 + s(510), hold), Some(Transition::Entered));
    }

    #[test]
    fn zero_hold_enters_at_once() {
        let mut h = Hold::default();
        assert_eq!(
            h.update(true, Instant::now(), Duration::ZERO),
            Some(Transition::Entered)
        );
    }
}
