//! [`Wait`]: a future for one latched phase of a coordinator.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::event::EventListener;

use crate::inner::{Inner, Latch};

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
#[must_use = "futures do nothing unless polled"]
pub struct Wait {
    inner: Arc<Inner>,
    phase: Latch,
    listener: Option<EventListener>,
}

impl Wait {
    pub(crate) fn new(inner: Arc<Inner>, phase: Latch) -> Wait {
        Wait {
            inner,
            phase,
            listener: None,
        }
    }
}

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // At most three rounds: check, listen, re-check, then wait on the listener.
        loop {
            if this.phase.reached(this.inner.state()) {
                this.listener = None;
                return Poll::Ready(());
            }
            match &mut this.listener {
                None => this.listener = Some(this.inner.listen(this.phase)),
                Some(listener) => {
                    if Pin::new(listener).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.listener = None;
                }
            }
        }
    }
}

impl fmt::Debug for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait").field("phase", &self.phase).finish()
    }
}
