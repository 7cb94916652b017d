//! [`StreamExec`]: the executor hyper's HTTP/2 connections get from
//! [`Http`](super::Http). Each stream task it spawns joins the scope of the
//! connection task that spawns it (see `server/task.rs`), so a
//! [`Server`](crate::Server) returns from `serve` only once every stream task has
//! ended, and a forced drain drops the streams with their connections.

use std::future::Future;
use std::pin::Pin;

use crate::server::task::TaskScope;

/// A spawned task, boxed: what a runtime's executor must run for HTTP/2 (see
/// [`HyperRuntime::Executor`](super::HyperRuntime::Executor)).
pub type BoxTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor of [`Http`](super::Http)'s HTTP/2 connections: spawns on the
/// runtime's executor `E`. A stream spawned by a connection of a
/// [`Server`](crate::Server) belongs to that connection: `serve` waits for it, and
/// a forced drain drops it. Outside a server, it just spawns.
#[derive(Clone, Debug)]
pub struct StreamExec<E>(pub(crate) E);

impl<E, F> hyper::rt::Executor<F> for StreamExec<E>
where
    E: hyper::rt::Executor<BoxTask>,
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        match TaskScope::current() {
            Some(scope) => self.0.execute(Box::pin(scope.run(task))),
            None => self.0.execute(Box::pin(task)),
        }
    }
}
