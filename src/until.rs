//! [`Until`]: run a future until the coordinator is triggered.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::wait::Wait;

pin_project! {
    /// A future that runs `F` until its coordinator is triggered, returned by
    /// [`Shutdown::run_until_triggered`](crate::Shutdown::run_until_triggered).
    ///
    /// Resolves to `Some(output)` if `F` completes first, or `None` as soon as it is
    /// polled after the trigger; `F` is then dropped in place, inside that poll. The
    /// trigger is checked before `F` is polled, so a triggered coordinator never lets
    /// `F` start. It does not count as a watcher: the drain does not wait for it.
    #[must_use = "futures do nothing unless polled"]
    pub struct Until<F> {
        #[pin]
        future: Option<F>,
        triggered: Wait,
    }
}

impl<F> Until<F> {
    pub(crate) fn new(future: F, triggered: Wait) -> Self {
        Until {
            future: Some(future),
            triggered,
        }
    }
}

impl<F: Future> Future for Until<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if Pin::new(&mut *this.triggered).poll(cx).is_ready() {
            this.future.set(None);
            return Poll::Ready(None);
        }
        match this.future.as_mut().as_pin_mut() {
            Some(future) => match future.poll(cx) {
                Poll::Ready(out) => {
                    this.future.set(None);
                    Poll::Ready(Some(out))
                }
                Poll::Pending => Poll::Pending,
            },
            None => panic!("`Until` polled after completion"),
        }
    }
}

impl<F> fmt::Debug for Until<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Until")
            .field("running", &self.future.is_some())
            .finish()
    }
}
