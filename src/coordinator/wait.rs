//! [`Wait`]: a future for one phase of a coordinator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::core::CoreRef;
use super::phase::Phase;
use super::wake::Listening;

/// A future that resolves once its coordinator reaches a phase. Returned by
/// [`Shutdown::announced`](crate::Shutdown::announced),
/// [`Shutdown::triggered`](crate::Shutdown::triggered) and
/// [`Shutdown::drained`](crate::Shutdown::drained).
///
/// Phases are latched in the coordinator's state word, not carried by the
/// wake-up: each poll checks the word first, so a `Wait` created after its phase
/// was reached is ready on its first poll, without allocating. Only a `Wait` that
/// must park takes an `event_listener` listener (one allocation), checks the word
/// again, and then waits for the phase's notification, which comes after the bit is
/// set and reaches every listener: one that was polled once and never again takes
/// no wake-up from another. Dropping a `Wait` unregisters it.
///
/// It does not keep the coordinator from being triggered when every
/// [`Shutdown`](crate::Shutdown) handle of a root is dropped.
#[must_use = "futures do nothing unless polled"]
pub struct Wait {
    core: CoreRef,
    phase: Phase,
    listener: Option<Listening>,
}

impl Wait {
    pub(crate) fn new(core: CoreRef, phase: Phase) -> Wait {
        Wait {
            core,
            phase,
            listener: None,
        }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // At most three rounds: check; listen and check again; a notification
        // comes only after the bit is set, so the round after it returns.
        loop {
            if this.phase.reached(this.core.word()) {
                this.listener = None;
                return Poll::Ready(());
            }
            match &mut this.listener {
                None => this.listener = Some(Listening::new(this.core.event(this.phase))),
                Some(listener) => match listener.poll(cx) {
                    Poll::Ready(()) => this.listener = None,
                    Poll::Pending => return Poll::Pending,
                },
            }
        }
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").field("phase", &self.phase).finish()
    }
}
