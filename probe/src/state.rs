//! Up / degraded / down / unknown state per check, with flap damping.
//!
//! Rules (N = `down_after`, M = `up_after`):
//! - Initial state UNKNOWN. The first healthy result (UP or DEGRADED) moves
//!   there at once; reaching DOWN always takes N consecutive DOWN results, so
//!   an agent restart never raises a false "down".
//! - UP → DOWN after N consecutive DOWN results; DOWN → UP/DEGRADED after M
//!   consecutive healthy results (UP or DEGRADED count alike).
//! - UP → DEGRADED after N consecutive DEGRADED results; DEGRADED → UP after
//!   M consecutive UP results.
//! - An UNKNOWN result (the check could not run, e.g. a LOCAL failure on the
//!   agent's side) moves to UNKNOWN after N consecutive ones, and breaks a
//!   DOWN streak: agent-side trouble never raises a "down" alert.
//!
//! Every transition is reported once; the caller turns it into an alert (the
//! scheduler keeps the first UNKNOWN → UP after start quiet).

use owlet_proto::v1::State;

/// One damped state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub old: State,
    pub new: State,
}

/// Damping state machine of one check.
#[derive(Debug, Clone)]
pub struct Damper {
    state: State,
    down_after: u32,
    up_after: u32,
    down_streak: u32,
    healthy_streak: u32,
    up_streak: u32,
    degraded_streak: u32,
    unknown_streak: u32,
}

impl Damper {
    pub fn new(down_after: u32, up_after: u32) -> Self {
        Damper {
            state: State::Unknown,
            down_after: down_after.max(1),
            up_after: up_after.max(1),
            down_streak: 0,
            healthy_streak: 0,
            up_streak: 0,
            degraded_streak: 0,
            unknown_streak: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Changes thresholds, keeping the current state and streaks.
    pub fn set_thresholds(&mut self, down_after: u32, up_after: u32) {
        self.down_after = down_after.max(1);
        self.up_after = up_after.max(1);
    }

    /// Feeds one result; returns the transition it caused, if any.
    pub fn observe(&mut self, result: State) -> Option<Transition> {
        let bump = |x: &mut u32| *x = x.saturating_add(1);
        match result {
            State::Down => {
                bump(&mut self.down_streak);
                self.healthy_streak = 0;
                self.up_streak = 0;
                self.degraded_streak = 0;
                self.unknown_streak = 0;
            }
            State::Up | State::Degraded => {
                self.down_streak = 0;
                self.unknown_streak = 0;
                bump(&mut self.healthy_streak);
                if result == State::Up {
                    bump(&mut self.up_streak);
                    self.degraded_streak = 0;
                } else {
                    bump(&mut self.degraded_streak);
                    self.up_streak = 0;
                }
            }
            State::Unknown | State::Unspecified => {
                bump(&mut self.unknown_streak);
                self.down_streak = 0;
                self.healthy_streak = 0;
                self.up_streak = 0;
                self.degraded_streak = 0;
            }
        }
        let old = self.state;
        let new = match (old, result) {
            (s, r) if s == r => s,
            (_, State::Down) if self.down_streak >= self.down_after => State::Down,
            (State::Unknown, State::Up | State::Degraded) => result,
            (State::Down, State::Up | State::Degraded) if self.healthy_streak >= self.up_after => {
                result
            }
            (State::Degraded, State::Up) if self.up_streak >= self.up_after => State::Up,
            (State::Up, State::Degraded) if self.degraded_streak >= self.down_after => {
                State::Degraded
            }
            (_, State::Unknown | State::Unspecified) if self.unknown_streak >= self.down_after => {
                State::Unknown
            }
            (s, _) => s,
        };
        self.state = new;
        (new != old).then_some(Transition { old, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn feed(d: &mut Damper, rs: &[State]) -> Vec<(State, State)> {
        rs.iter()
            .filter_map(|r| d.observe(*r))
            .map(|t| (t.old, t.new))
            .collect()
    }

    #[test]
    fn damping() {
        let mut d = Damper::new(3, 2);
        assert_eq!(feed(&mut d, &[Up]), vec![(Unknown, Up)]);
        assert_eq!(feed(&mut d, &[Down, Down, Up, Down, Down]), vec![]);
        assert_eq!(feed(&mut d, &[Down]), vec![(Up, Down)]);
        assert_eq!(feed(&mut d, &[Up, Down, Up]), vec![]);
        assert_eq!(feed(&mut d, &[Degraded]), vec![(Down, Degraded)]);
        assert_eq!(feed(&mut d, &[Up]), vec![]);
        assert_eq!(feed(&mut d, &[Up]), vec![(Degraded, Up)]);
        assert_eq!(
            feed(&mut d, &[Degraded, Degraded, Degraded]),
            vec![(Up, Degraded)]
        );
    }

    #[test]
    fn startup_down_needs_n() {
        let mut d = Damper::new(2, 2);
        assert_eq!(feed(&mut d, &[Down]), vec![]);
        assert_eq!(feed(&mut d, &[Down]), vec![(Unknown, Down)]);
        assert_eq!(feed(&mut d, &[Down, Down]), vec![]);
    }

    #[test]
    fn local_failures_never_raise_down() {
        // UNKNOWN results (agent-side failures) interrupt a DOWN streak and
        // lead to UNKNOWN, never to DOWN.
        let mut d = Damper::new(3, 2);
        assert_eq!(feed(&mut d, &[Up]), vec![(Unknown, Up)]);
        assert_eq!(feed(&mut d, &[Down, Down, Unknown, Down, Down]), vec![]);
        assert_eq!(
            feed(&mut d, &[Unknown, Unknown, Unknown]),
            vec![(Up, Unknown)]
        );
        assert_eq!(feed(&mut d, &[Unknown; 10]), vec![]);
        assert_eq!(feed(&mut d, &[Up]), vec![(Unknown, Up)]);
    }
}
