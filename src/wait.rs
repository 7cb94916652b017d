//! [`Wait`]: a future for one latched phase of a coordinator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::inner::{Inner, Latch};
use crate::waiters::Slot;

/// A future that resolves once its coordinator reaches a phase: triggered, forced
/// or drained. Returned by [`Shutdown::triggered`](crate::Shutdown::triggered),
/// [`Shutdown::forced`](crate::Shutdown::forced) and
/// [`Shutdown::drained`](crate::Shutdown::drained).
///
/// Phases are latched in the coordinator's state, not carried by the wake-up:
/// a `Wait` created after its phase was reached is ready on its first poll, and
/// one that was polled and then never polled again swallows no wake-up meant for
/// another. Dropping it unregisters its waker. It does not keep the coordinator
/// from being triggered when every [`Shutdown`](crate::Shutdown) handle is dropped.
///
/// It is 16 bytes and allocates nothing of its own: while pending, its waker is
/// kept in the coordinator's list of the phase's waiters (a slab, grown as needed
/// and freed at the wake-up).
#[must_use = "futures do nothing unless polled"]
pub struct Wait {
    inner: Arc<Inner>,
    slot: Slot,
    phase: Latch,
}

impl Wait {
    pub(crate) fn new(inner: Arc<Inner>, phase: Latch) -> Wait {
        Wait {
            inner,
            slot: Slot::new(),
            phase,
        }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let waiters = this.inner.waiters(this.phase);
        if this.phase.reached(this.inner.state()) {
            waiters.unregister(&mut this.slot);
            return Poll::Ready(());
        }
        // Refused only once the phase's wake-up ran, which is after its bit was set.
        if waiters.register(&mut this.slot, cx.waker()) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.inner.waiters(self.phase).unregister(&mut self.slot);
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").field("phase", &self.phase).finish()
    }
}
