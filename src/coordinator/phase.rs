//! [`Phase`]: where a coordinator is in its lifecycle.

use std::fmt;

use super::state::{ANNOUNCED, FORCED, TRIGGERED, is_drained};

/// Where a coordinator is in its lifecycle, as reported by
/// [`Shutdown::phase`](crate::Shutdown::phase). Phases only move forward, in this
/// order, though some may be skipped; compare them with `<` and `>=`.
///
/// ```
/// use wind_down::{Phase, Shutdown};
///
/// let shutdown = Shutdown::new();
/// assert_eq!(shutdown.phase(), Phase::Running);
/// shutdown.trigger();
/// assert!(shutdown.phase() >= Phase::Triggered);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Serving normally; [`Shutdown::is_ready`](crate::Shutdown::is_ready) is `true`.
    Running,
    /// Shutdown was [announced](crate::Shutdown::announce): readiness reports "not
    /// ready" while work is still taken in, so that load balancers can deregister
    /// the instance (the server's drain delay).
    Announced,
    /// [Triggered](crate::Shutdown::trigger): the drain runs; in-flight work is
    /// finishing, and new work is refused once drained.
    Triggered,
    /// [Forced](crate::Shutdown::force) before every watcher finished.
    Forced,
    /// [Drained](crate::Shutdown::drained): triggered, and no watcher is left
    /// (forced or not).
    Drained,
}

impl Phase {
    pub(crate) fn of(word: u64) -> Phase {
        if is_drained(word) {
            Phase::Drained
        } else if word & FORCED != 0 {
            Phase::Forced
        } else if word & TRIGGERED != 0 {
            Phase::Triggered
        } else if word & ANNOUNCED != 0 {
            Phase::Announced
        } else {
            Phase::Running
        }
    }

    /// Whether a coordinator in `word` has reached this phase (`Forced` by its bit:
    /// a forced coordinator that drained has reached it too).
    pub(crate) fn reached(self, word: u64) -> bool {
        match self {
            Phase::Running => true,
            Phase::Announced => word & ANNOUNCED != 0,
            Phase::Triggered => word & TRIGGERED != 0,
            Phase::Forced => word & FORCED != 0,
            Phase::Drained => is_drained(word),
        }
    }

    /// The index of this phase's event in a coordinator.
    pub(crate) fn event_index(self) -> usize {
        match self {
            Phase::Running | Phase::Announced => 0,
            Phase::Triggered => 1,
            Phase::Forced => 2,
            Phase::Drained => 3,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Running => "running",
            Phase::Announced => "announced",
            Phase::Triggered => "triggered",
            Phase::Forced => "forced",
            Phase::Drained => "drained",
        })
    }
}
