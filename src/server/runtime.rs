//! What a runtime and a listener must supply to the accept loop.
//!
//! These traits are the seam between the runtime-free core and an executor. The
//! `tokio` and `smol` features implement them; implementing them for another
//! executor takes a few lines (see `examples/custom_runtime.rs`).

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

/// An executor: spawns tasks and makes timers.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future returned by [`sleep`](Runtime::sleep).
    type Sleep: Future<Output = ()> + Send + 'static;

    /// Spawns `future` as a detached task that runs to completion on its own.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// A future that completes once `duration` has passed.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

/// A source of incoming connections, such as a bound TCP listener.
///
/// Dropping the listener must close it, so that its address can be bound again.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a wind-down `Listener`",
    label = "an async listener of the server's runtime is needed here",
    note = "a `std::net::TcpListener` becomes one with `wind_down::tokio::listener_from_std(listener)?` or `wind_down::smol::listener_from_std(listener)?`"
)]
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: Send + 'static;
    /// The address of a peer, or of the listener itself.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// Accepts one connection. Errors are classified by the accept loop: see
    /// [`Server`](crate::Server). The future must be cancel-safe: dropping it
    /// before it completes must not lose a connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// The address this listener is bound to.
    fn local_addr(&self) -> io::Result<Self::Addr>;
}
