//! [`Wakes`]: the wake-ups a state change owes, run after the change is complete.
//!
//! Invariants:
//! - Nothing is woken while a transition or a release is still changing state:
//!   callers collect here, then [`run`](Wakes::run).
//! - Every event is notified with `notify(usize::MAX)`: all of its listeners. An
//!   event nobody listens to is not notified, so that a drain allocates nothing
//!   (event-listener allocates its state on first use): a `SeqCst` fence after the
//!   state change here, and one after a waiter's registration before it reads the
//!   state word again ([`listen`]), make sure that either the waiter sees the new
//!   state or this sees its listener.
//! - A waker that panics does not keep the others from being woken; the first
//!   panic is resumed once every event was notified.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use event_listener::{Event, EventListener};

use super::core::CoreRef;
use super::phase::Phase;
use super::state::{ANNOUNCED, FORCED, TRIGGERED};
use super::sync::{Ordering, fence};

/// The phases coordinators newly reached, to wake. The first entry is kept inline:
/// a release that drains a root allocates nothing.
#[derive(Default)]
pub(crate) struct Wakes {
    first: Option<(CoreRef, Reached)>,
    more: Vec<(CoreRef, Reached)>,
}

#[derive(Clone, Copy)]
enum Reached {
    /// State bits newly set.
    Bits(u64),
    Drained,
}

impl Wakes {
    /// `core` newly has `bits`.
    pub(crate) fn reached(&mut self, core: CoreRef, bits: u64) {
        if bits != 0 {
            self.push(core, Reached::Bits(bits));
        }
    }

    /// `core` drained.
    pub(crate) fn drained(&mut self, core: CoreRef) {
        self.push(core, Reached::Drained);
    }

    fn push(&mut self, core: CoreRef, reached: Reached) {
        if self.first.is_none() {
            self.first = Some((core, reached));
        } else {
            self.more.push((core, reached));
        }
    }

    /// Wakes every waiter due, then resumes the first panic of a waker, if any.
    pub(crate) fn run(self) {
        if self.first.is_none() {
            return;
        }
        fence(Ordering::SeqCst);
        let mut panic = None;
        for (core, reached) in self.first.iter().chain(&self.more) {
            match *reached {
                Reached::Drained => notify_all(core.event(Phase::Done), &mut panic),
                Reached::Bits(bits) => {
                    for (bit, phase) in [
                        (ANNOUNCED, Phase::Announced),
                        (TRIGGERED, Phase::Draining),
                        (FORCED, Phase::Forced),
                    ] {
                        if bits & bit != 0 {
                            notify_all(core.event(phase), &mut panic);
                        }
                    }
                }
            }
        }
        drop(self);
        if let Some(panic) = panic {
            resume_unwind(panic);
        }
    }
}

/// Registers a listener for `event`, for a waiter that reads the state word again
/// right after: see the module's invariants.
pub(crate) fn listen(event: &Event) -> EventListener {
    let listener = event.listen();
    fence(Ordering::SeqCst);
    listener
}

/// Notifies every listener of `event`, also past wakers that panic.
fn notify_all(event: &Event, panic: &mut Option<Box<dyn Any + Send>>) {
    if event.total_listeners() == 0 {
        return;
    }
    // event-listener marks a listener notified before it runs its waker, so each
    // panicking round consumes one listener and the next round goes on after it:
    // bounded by the number of listeners.
    loop {
        match catch_unwind(AssertUnwindSafe(|| event.notify(usize::MAX))) {
            Ok(_) => return,
            Err(payload) => {
                panic.get_or_insert(payload);
            }
        }
    }
}
