//! How the accept loop treats an accept error: its classes, and its back-off.
//!
//! Invariants: no class of error makes the loop spin. Per-connection errors are
//! retried at once only [`Backoff::IMMEDIATE_RETRIES`] times in a row; after that,
//! and for resource errors from the first, the loop sleeps on the runtime's timer,
//! raced against the stop. A successful accept resets both.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::coordinator::Shutdown;
use crate::coordinator::phase::Phase;
use crate::coordinator::watch::GracefulConnection;
use crate::log;
use crate::server::runtime::{Listener, Runtime};
use crate::server::slots::Connections;
use crate::server::task::TaskScope;

/// What to do after a failed `accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptError {
    /// The error belongs to one incoming connection: retry at once.
    Connection,
    /// The process or system is out of a resource (descriptors, buffers, memory):
    /// back off on a timer, then retry.
    Resource,
    /// The listener itself is broken: stop.
    Fatal,
}

/// Per-connection errors that Linux reports through `accept(2)` (its man page says
/// to treat them like `EAGAIN`), by errno.
#[cfg(target_os = "linux")]
const CONNECTION_ERRNOS: &[i32] = &[
    71,  // EPROTO
    92,  // ENOPROTOOPT
    95,  // EOPNOTSUPP
    100, // ENETDOWN
    101, // ENETUNREACH
    64,  // ENONET
    112, // EHOSTDOWN
    113, // EHOSTUNREACH
    1,   // EPERM (firewall rules)
    110, // ETIMEDOUT
];
#[cfg(not(target_os = "linux"))]
const CONNECTION_ERRNOS: &[i32] = &[];

/// Errors that mean the listener is unusable, by errno: EBADF, EFAULT, EINVAL,
/// ENOTSOCK (88 on Linux, 38 on the BSDs and macOS).
#[cfg(unix)]
const FATAL_ERRNOS: &[i32] = &[9, 14, 22, if cfg!(target_os = "linux") { 88 } else { 38 }];
#[cfg(not(unix))]
const FATAL_ERRNOS: &[i32] = &[];

pub(crate) fn classify(error: &io::Error) -> AcceptError {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        | TimedOut | HostUnreachable | NetworkUnreachable | NetworkDown => {
            return AcceptError::Connection;
        }
        InvalidInput => return AcceptError::Fatal,
        _ => {}
    }
    match error.raw_os_error() {
        Some(code) if CONNECTION_ERRNOS.contains(&code) => AcceptError::Connection,
        Some(code) if FATAL_ERRNOS.contains(&code) => AcceptError::Fatal,
        // EMFILE, ENFILE, ENOBUFS, ENOMEM, and anything unknown: waiting is safe,
        // spinning or dying is not.
        _ => AcceptError::Resource,
    }
}

/// Exponential back-off: 50 ms doubling up to 1 s, reset by a successful accept.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    /// Per-connection errors since the last success.
    in_a_row: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(1);
    /// Per-connection errors in a row that are retried without sleeping.
    pub(crate) const IMMEDIATE_RETRIES: u32 = 64;

    pub(crate) fn new() -> Self {
        Backoff {
            next: Self::FIRST,
            in_a_row: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
        self.in_a_row = 0;
    }

    /// The sleep before the next accept after `class` of error: none for a
    /// per-connection error, until too many came in a row.
    pub(crate) fn after(&mut self, class: AcceptError) -> Option<Duration> {
        match class {
            AcceptError::Connection if self.in_a_row < Self::IMMEDIATE_RETRIES => {
                self.in_a_row += 1;
                None
            }
            _ => Some(self.next_delay()),
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(Self::MAX);
        delay
    }
}

/// Completes when accepting must stop: at the trigger, or `delay` after the
/// announcement (then it triggers). Notes when the announcement came.
pub(crate) async fn stop_accepting<R: Runtime>(
    shutdown: &Shutdown,
    runtime: &R,
    delay: Duration,
    announced_at: &OnceLock<Instant>,
) {
    shutdown.announced().await;
    let _ = announced_at.set(Instant::now());
    if !delay.is_zero() && shutdown.phase() < Phase::Triggered {
        log::info!("shutdown announced: serving for {delay:?} more");
        future::or(shutdown.triggered(), runtime.sleep(delay)).await;
    }
    shutdown.trigger();
}

/// Accepts until `stop` completes or the listener fails fatally (returned), then
/// drops the listener. Each connection is watched and spawned.
pub(crate) async fn accept_loop<R, L, H, C>(
    runtime: &R,
    mut listener: L,
    shutdown: &Shutdown,
    connections: &Arc<Connections>,
    stop: impl Future<Output = ()>,
    mut handler: H,
) -> Option<io::Error>
where
    R: Runtime,
    L: Listener,
    H: FnMut(L::Io, L::Addr) -> C,
    C: GracefulConnection + Send + 'static,
    C::Output: Send,
{
    let mut stop = std::pin::pin!(stop);
    let mut backoff = Backoff::new();
    // Bounded by the stop: every round awaits it (directly, or raced against the
    // accept or a back-off sleep), and yields at least every 32 rounds.
    for round in 0u64.. {
        if !connections.wait_for_room(stop.as_mut()).await {
            return None;
        }
        let accepted = future::or(
            async {
                stop.as_mut().await;
                None
            },
            async { Some(listener.accept().await) },
        )
        .await;
        match accepted {
            None => return None,
            Some(Ok((io, addr))) => {
                backoff.reset();
                let label = format!("{addr:?}");
                let conn = shutdown.watch(handler(io, addr)).with_label(label);
                // The place is given back when the task and whatever it spawned
                // in its scope (HTTP/2 streams) have ended.
                let scope = TaskScope::new(connections.enter(), shutdown.clone());
                runtime.spawn(scope.enclose(async move {
                    let _ = conn.await;
                }));
            }
            Some(Err(error)) => {
                let class = classify(&error);
                if class == AcceptError::Fatal {
                    log::error!("listener failed: {error}; shutting down");
                    return Some(error);
                }
                if let Some(delay) = backoff.after(class) {
                    log::warning!("accept failed: {error}; retrying in {delay:?}");
                    let stopped = future::or(
                        async {
                            stop.as_mut().await;
                            true
                        },
                        async {
                            runtime.sleep(delay).await;
                            false
                        },
                    );
                    if stopped.await {
                        return None;
                    }
                }
            }
        }
        // smol's executor has no cooperative budget: a loop that never returns
        // Pending would starve every other task on its thread.
        if round % 32 == 31 {
            future::yield_now().await;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_errors_retry_at_once() {
        for kind in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(classify(&io::Error::from(kind)), AcceptError::Connection);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_accept_errors() {
        let of = |code| classify(&io::Error::from_raw_os_error(code));
        for code in [71, 100, 113, 101, 92, 64, 112, 95] {
            assert_eq!(of(code), AcceptError::Connection, "errno {code}");
        }
        for code in [24, 23, 105, 12] {
            assert_eq!(of(code), AcceptError::Resource, "errno {code}");
        }
        for code in [9, 22, 88] {
            assert_eq!(of(code), AcceptError::Fatal, "errno {code}");
        }
    }

    #[test]
    fn per_connection_errors_in_a_row_end_up_backing_off() {
        let mut b = Backoff::new();
        for _ in 0..Backoff::IMMEDIATE_RETRIES {
            assert_eq!(b.after(AcceptError::Connection), None);
        }
        assert_eq!(b.after(AcceptError::Connection), Some(Backoff::FIRST));
        b.reset();
        assert_eq!(b.after(AcceptError::Connection), None);
        assert_eq!(b.after(AcceptError::Resource), Some(Backoff::FIRST));
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 50);
    }
}
