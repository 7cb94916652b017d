//! [`Until`]: run a future until the coordinator is triggered.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::wait::Wait;

pin_project! {
    /// A future that runs `F` until its coordinator is triggered, returned by
    /// [`Shutdown::run_until_triggered`](crate::Shutdown::run_until_triggered).
    ///
    /// Resolves to `Some(output)` if `F` completes first, or `None` as soon as it is
    /// polled after the trigger; `F` is then dropped in place, inside that poll. The
    /// trigger is checked before `F` is polled, so a triggered coordinator never lets
    /// `F` start, and when completion and trigger coincide the result is `None`.
    /// Once it resolved it lets go of the coordinator: a finished `Until` kept alive
    /// is not woken by a later trigger. It does not count as a watcher: the drain
    /// does not wait for it (wrap it in [`Shutdown::track`](crate::Shutdown::track)
    /// for that).
    ///
    /// # Panics
    ///
    /// When polled again after it resolved, as most futures do: its output was
    /// handed out once and there is nothing left to answer with. A `select!` loop
    /// that may poll it again should keep it in an `Option`, or use `fuse()` from
    /// `futures-util`.
    #[must_use = "futures do nothing unless polled"]
    pub struct Until<F> {
        #[pin]
        future: Option<F>,
        triggered: Option<Wait>,
    }
}

impl<F> Until<F> {
    pub(crate) fn new(future: F, triggered: Wait) -> Self {
        Until {
            future: Some(future),
            triggered: Some(triggered),
        }
    }
}

impl<F: Future> Future for Until<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(triggered) = this.triggered.as_mut() else {
            panic!("`Until` polled after completion");
        };
        if Pin::new(triggered).poll(cx).is_ready() {
            this.future.set(None);
            *this.triggered = None;
            return Poll::Ready(None);
        }
        let Some(future) = this.future.as_mut().as_pin_mut() else {
            panic!("`Until` polled after completion");
        };
        let out = std::task::ready!(future.poll(cx));
        this.future.set(None);
        *this.triggered = None;
        Poll::Ready(Some(out))
    }
}

impl<F> fmt::Debug for Until<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Until")
            .field("running", &self.future.is_some())
            .finish()
    }
}
