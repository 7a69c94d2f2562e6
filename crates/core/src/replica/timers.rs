//! Every timeout a replica keeps, by name, in one table: the next wake-up is the minimum over
//! it (as quinn-proto's timer table), and each named timer is set, cleared and fired alone.

use crate::event::Millis;

/// A replica's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Primary: send heartbeats on idle streams, check silent backups and the lease.
    Heartbeat,
    /// Backup: the primary has been silent too long; start a view change.
    Election,
    /// Candidate: the view change did not finish; try the next view.
    ViewChange,
    /// Joining or recovering: ask again.
    Retry,
    /// A fresh `ditto primary`: nobody claimed this node; found a group.
    Discovery,
    /// Primary: contact the members it has no stream to.
    Probe,
    /// Writes held while there is no primary, and forwarded writes: give up on the oldest.
    Writes,
}

const COUNT: usize = 7;

fn slot(t: Timer) -> usize {
    t as usize
}

/// Deadlines by timer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Timers {
    at: [Option<Millis>; COUNT],
}

impl Timers {
    pub fn set(&mut self, t: Timer, at: Millis) {
        self.at[slot(t)] = Some(at);
    }

    /// Sets `t` unless it is set to fire earlier already.
    pub fn set_earliest(&mut self, t: Timer, at: Millis) {
        let s = &mut self.at[slot(t)];
        *s = Some(s.map_or(at, |old| old.min(at)));
    }

    pub fn clear(&mut self, t: Timer) {
        self.at[slot(t)] = None;
    }

    pub fn get(&self, t: Timer) -> Option<Millis> {
        self.at[slot(t)]
    }

    /// Whether `t` is due at `now`; a due timer is cleared (the handler sets it again if needed).
    pub fn fire(&mut self, t: Timer, now: Millis) -> bool {
        let s = &mut self.at[slot(t)];
        if s.is_some_and(|at| at <= now) {
            *s = None;
            true
        } else {
            false
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Millis> {
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_wake_up_is_the_earliest_timer() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Election, Millis(100));
        t.set(Timer::Heartbeat, Millis(50));
        t.set_earliest(Timer::Heartbeat, Millis(70));
        assert_eq!(t.next(), Some(Millis(50)));
        assert!(!t.fire(Timer::Heartbeat, Millis(49)));
        assert!(t.fire(Timer::Heartbeat, Millis(50)));
        assert!(
            !t.fire(Timer::Heartbeat, Millis(60)),
            "fired timers are cleared"
        );
        assert_eq!(t.next(), Some(Millis(100)));
        t.clear(Timer::Election);
        assert_eq!(t.next(), None);
    }
}
