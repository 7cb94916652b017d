//! [`TaskScope`]: the connection task being polled, for the tasks a connection
//! spawns while it is polled (hyper's HTTP/2 streams, through the HTTP layer's
//! executor). Such a task shares its connection's place, so `serve` returns only
//! after it ended too, and it is dropped at the force with its connection.
//!
//! Invariants:
//! - the current scope is set only while a connection task's future is polled on
//!   this thread, and restored to the one before (none, or an enclosing poll's)
//!   when that poll returns or unwinds;
//! - a connection's place is given back once its task and every task spawned in
//!   its scope have ended (the last `Arc` of the scope is dropped);
//! - a task run in a scope ends at its own end or at the force of the server's
//!   coordinator, whichever comes first, dropping its future before the scope.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

#[cfg(any(feature = "http1", feature = "http2"))]
use futures_lite::future;
use pin_project_lite::pin_project;

use crate::coordinator::Shutdown;
use crate::server::slots::Place;

thread_local! {
    static CURRENT: RefCell<Option<Arc<Scope>>> = const { RefCell::new(None) };
}

struct Scope {
    // Given back when the last task of the scope drops it.
    _place: Place,
    #[cfg(any(feature = "http1", feature = "http2"))]
    shutdown: Shutdown,
}

/// The scope of one connection task: its place, and the server's coordinator.
#[derive(Clone)]
pub(crate) struct TaskScope(Arc<Scope>);

impl TaskScope {
    pub(crate) fn new(place: Place, shutdown: Shutdown) -> Self {
        #[cfg(not(any(feature = "http1", feature = "http2")))]
        let _ = shutdown;
        TaskScope(Arc::new(Scope {
            _place: place,
            #[cfg(any(feature = "http1", feature = "http2"))]
            shutdown,
        }))
    }

    /// The scope of the connection task being polled on this thread, if any.
    #[cfg(any(feature = "http1", feature = "http2"))]
    pub(crate) fn current() -> Option<TaskScope> {
        CURRENT
            .try_with(|current| current.borrow().clone().map(TaskScope))
            .ok()
            .flatten()
    }

    /// Runs `task` in this scope: until it ends or the coordinator is forced.
    #[cfg(any(feature = "http1", feature = "http2"))]
    pub(crate) async fn run(self, task: impl Future<Output = ()>) {
        let forced = self.0.shutdown.forced();
        future::or(task, forced).await;
        drop(self);
    }

    /// A handle that does not keep the connection's place.
    #[cfg(any(feature = "http1", feature = "http2"))]
    pub(crate) fn downgrade(&self) -> WeakTaskScope {
        WeakTaskScope(Arc::downgrade(&self.0))
    }

    /// `task` (the connection's), polled with this scope current.
    pub(crate) fn enclose<F: Future>(self, task: F) -> Scoped<F> {
        Scoped {
            task,
            scope: Some(self.0),
        }
    }
}

/// A [`TaskScope`] that does not keep the connection's place: only what is run
/// in the scope (upgraded from this) does.
#[cfg(any(feature = "http1", feature = "http2"))]
#[derive(Clone)]
pub(crate) struct WeakTaskScope(std::sync::Weak<Scope>);

#[cfg(any(feature = "http1", feature = "http2"))]
impl WeakTaskScope {
    /// The scope, if its connection task or a task of it still runs.
    #[cfg(any(feature = "http1", feature = "http2"))]
    pub(crate) fn upgrade(&self) -> Option<TaskScope> {
        self.0.upgrade().map(TaskScope)
    }
}

pin_project! {
    /// A connection task polled with its scope current.
    pub(crate) struct Scoped<F> {
        #[pin]
        task: F,
        // Moved into the thread's slot during a poll, and back after.
        scope: Option<Arc<Scope>>,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let before = swap(this.scope.take());
        // Puts the scope back where it was, also when the poll unwinds.
        let restore = Restore {
            slot: this.scope,
            before,
        };
        let poll = this.task.poll(cx);
        drop(restore);
        poll
    }
}

struct Restore<'a> {
    slot: &'a mut Option<Arc<Scope>>,
    before: Option<Arc<Scope>>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        *self.slot = swap(self.before.take());
    }
}

/// Makes `scope` current; returns the one it replaces.
fn swap(scope: Option<Arc<Scope>>) -> Option<Arc<Scope>> {
    CURRENT
        .try_with(|current| current.replace(scope))
        .ok()
        .flatten()
}

#[cfg(all(test, any(feature = "http1", feature = "http2")))]
mod tests {
    use super::*;
    use crate::server::slots::Connections;

    #[test]
    fn the_scope_is_current_only_while_its_task_is_polled() {
        let connections = Connections::new(None);
        let shutdown = Shutdown::new();
        let seen = std::cell::Cell::new(false);
        let scope = TaskScope::new(connections.enter(), shutdown.clone());
        let task = scope.enclose(async {
            seen.set(TaskScope::current().is_some());
        });
        assert!(TaskScope::current().is_none());
        futures_lite::future::block_on(task);
        assert!(seen.get(), "not current inside the task");
        assert!(
            TaskScope::current().is_none(),
            "left current after the poll"
        );
    }

    #[test]
    fn the_place_is_given_back_after_the_last_task_of_the_scope() {
        let connections = Connections::new(None);
        let shutdown = Shutdown::new();
        let scope = TaskScope::new(connections.enter(), shutdown.clone());
        let spawned = std::cell::RefCell::new(None);
        futures_lite::future::block_on(scope.enclose(async {
            *spawned.borrow_mut() = TaskScope::current();
        }));
        let stream = spawned.into_inner().expect("a scope").run(async {});
        let mut all_ended = std::pin::pin!(connections.all_ended());
        assert!(futures_lite::future::block_on(future::poll_once(all_ended.as_mut())).is_none());
        futures_lite::future::block_on(stream);
        assert!(futures_lite::future::block_on(future::poll_once(all_ended)).is_some());
    }

    #[test]
    fn a_task_in_a_scope_ends_at_the_force() {
        let connections = Connections::new(None);
        let shutdown = Shutdown::new();
        let scope = TaskScope::new(connections.enter(), shutdown.clone());
        let endless = scope.run(std::future::pending());
        let _ = shutdown.force();
        futures_lite::future::block_on(endless);
        futures_lite::future::block_on(connections.all_ended());
    }
}
