//! [`Phase`]: where a coordinator is in its lifecycle.

use std::fmt;

use crate::inner::{ANNOUNCED, FORCED, TRIGGERED, is_drained};

/// Where a coordinator is in its lifecycle, as reported by
/// [`Shutdown::phase`](crate::Shutdown::phase). Phases only move forward, in this
/// order, though some may be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Serving normally; [`Shutdown::is_ready`](crate::Shutdown::is_ready) is `true`.
    Running,
    /// Shutdown was [announced](crate::Shutdown::announce): readiness reports
    /// "not ready" while work is still taken in, so that load balancers can
    /// deregister the instance (the server's drain delay).
    Announced,
    /// Triggered: new work is refused, in-flight work is finishing.
    Draining,
    /// The drain was forced before every watcher finished.
    Forced,
    /// Drained: triggered, and no watcher is left.
    Done,
}

impl Phase {
    pub(crate) fn of(state: usize) -> Phase {
        if is_drained(state) {
            Phase::Done
        } else if state & FORCED != 0 {
            Phase::Forced
        } else if state & TRIGGERED != 0 {
            Phase::Draining
        } else if state & ANNOUNCED != 0 {
            Phase::Announced
        } else {
            Phase::Running
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Running => "running",
            Phase::Announced => "announced",
            Phase::Draining => "draining",
            Phase::Forced => "forced",
            Phase::Done => "done",
        })
    }
}
