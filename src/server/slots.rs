//! [`Connections`]: the accept loop's count of live connection tasks, its
//! connection limit, and the wait for the last task to end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_listener::Event;
use futures_lite::future;

/// Live connection tasks of one server. Only the accept loop adds; each task gives
/// its place back when it has ended, after its connection was dropped.
pub(crate) struct Connections {
    limit: Option<usize>,
    live: AtomicUsize,
    /// Notified whenever a task ends.
    ended: Event,
}

impl Connections {
    pub(crate) fn new(limit: Option<usize>) -> Arc<Self> {
        Arc::new(Connections {
            limit,
            live: AtomicUsize::new(0),
            ended: Event::new(),
        })
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until fewer than `limit` tasks are live. Returns `false` if `stop`
    /// completed first.
    pub(crate) async fn wait_for_room(&self, mut stop: Pin<&mut impl Future<Output = ()>>) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let room = async {
            self.wait_until(|live| live < limit).await;
            true
        };
        let stopped = async {
            stop.as_mut().await;
            false
        };
        future::or(room, stopped).await
    }

    /// Waits until no task is live.
    pub(crate) async fn all_ended(&self) {
        self.wait_until(|live| live == 0).await;
    }

    /// Waits until the number of live tasks satisfies `done`.
    async fn wait_until(&self, done: impl Fn(usize) -> bool) {
        // Bounded by the number of tasks that end: each round consumes one.
        loop {
            if done(self.live()) {
                return;
            }
            let ended = self.ended.listen();
            if done(self.live()) {
                return;
            }
            ended.await;
        }
    }

    /// A place for one task; given back when dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Place {
        self.live.fetch_add(1, Ordering::AcqRel);
        Place(self.clone())
    }
}

/// One live connection task's place.
pub(crate) struct Place(Arc<Connections>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify(usize::MAX);
    }
}
