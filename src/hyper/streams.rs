//! [`StreamExec`]: the executor hyper's HTTP/2 connections get from the HTTP
//! layer. Each stream task it spawns joins the scope of the connection task that
//! spawns it (see `server/task.rs`), so a [`Server`](crate::Server) returns from
//! `serve` only once every stream task has ended, and a forced drain drops the
//! streams with their connections.

use std::future::Future;

use crate::server::runtime::Runtime;
use crate::server::task::TaskScope;

/// The executor of the HTTP layer's HTTP/2 connections: spawns on the runtime `R`.
/// A stream spawned by a connection of a [`Server`](crate::Server) belongs to
/// that connection: `serve` waits for it, and a forced drain drops it.
#[derive(Clone, Debug)]
pub struct StreamExec<R>(pub(crate) R);

impl<R, F> hyper::rt::Executor<F> for StreamExec<R>
where
    R: Runtime,
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        match TaskScope::current() {
            Some(scope) => self.0.spawn(scope.run(task)),
            None => self.0.spawn(task),
        }
    }
}
