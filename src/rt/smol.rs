//! The smol adapter (feature `smol`): runtime, listeners and signals.
//!
//! [`Smol`] spawns on a [`smol::Executor`] you run yourself, or on smol's global
//! executor; timers come from `async-io`, signals from `async-signal`. Nothing here
//! needs a runtime context: `async-io` starts its reactor on first use.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use wind_down::smol::{Signals, Smol};
//!
//! // Register the signal handlers first: a signal from now on starts the drain.
//! let signals = Signals::new()?;
//! let executor = Arc::new(smol::Executor::new());
//! smol::block_on(executor.run(async {
//!     let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//!     let server = wind_down::Server::new(Smol::new(executor.clone()), listener).signals(signals);
//!     # drop(server);
//!     std::io::Result::Ok(())
//! }))?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::server::runtime::{Listener, Runtime};
use crate::signal::{Interest, Signal, SignalSource};

/// Where [`Smol`] spawns.
#[derive(Clone)]
enum Exec {
    /// smol's global executor, through `smol::spawn`.
    Global,
    /// An executor the application runs.
    Local(Arc<smol::Executor<'static>>),
}

impl fmt::Debug for Exec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exec::Global => f.write_str("Global"),
            Exec::Local(_) => f.write_str("Local"),
        }
    }
}

/// A smol executor: an [`Arc<smol::Executor>`](smol::Executor) or smol's global one.
///
/// Sleeps use `async-io`'s [`Timer`](async_io::Timer), which works whichever
/// executor polls it.
#[derive(Clone, Debug)]
pub struct Smol {
    executor: Exec,
}

impl Smol {
    /// Spawns on `executor`. Tasks only make progress while some thread runs the
    /// executor (for example `smol::block_on(executor.run(main_future))`, plus
    /// worker threads running it too).
    pub fn new(executor: Arc<smol::Executor<'static>>) -> Self {
        Smol {
            executor: Exec::Local(executor),
        }
    }

    /// Spawns on smol's global executor (`smol::spawn`), which runs on its own
    /// threads (`SMOL_THREADS` of them, default one).
    pub fn global() -> Self {
        Smol {
            executor: Exec::Global,
        }
    }
}

impl Runtime for Smol {
    type Sleep = Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.executor {
            Exec::Global => smol::spawn(future).detach(),
            Exec::Local(executor) => executor.spawn(future).detach(),
        }
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep {
            timer: async_io::Timer::after(duration),
        }
    }
}

/// The future returned by [`Smol`]'s [`Runtime::sleep`]: an `async-io`
/// [`Timer`](async_io::Timer) that completes with `()`.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    timer: async_io::Timer,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.timer).poll(cx).map(|_instant| ())
    }
}

impl Listener for smol::net::TcpListener {
    type Io = smol::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        smol::net::TcpListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        smol::net::TcpListener::local_addr(self)
    }
}

#[cfg(unix)]
impl Listener for smol::net::unix::UnixListener {
    type Io = smol::net::unix::UnixStream;
    type Addr = std::os::unix::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        smol::net::unix::UnixListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        smol::net::unix::UnixListener::local_addr(self)
    }
}

/// Turns a std listener into a smol one, switching it to non-blocking mode first
/// (a blocking listener would stall the executor thread and shutdown with it).
///
/// Needs no runtime context: `async-io` registers the listener with its reactor.
pub fn listener_from_std(listener: std::net::TcpListener) -> io::Result<smol::net::TcpListener> {
    smol::net::TcpListener::try_from(listener)
}

/// The process's shutdown signals, through `async-signal`: SIGINT and SIGTERM on
/// Unix; Ctrl-C only on Windows.
///
/// The handlers are registered by [`Signals::new`]: every signal from the moment
/// it returns until the value is dropped is delivered to it, nothing is lost. A
/// server drops it when it is done with it (after the second signal, or once
/// drained or forced). On Unix, while no `Signals` lives, SIGINT and SIGTERM have
/// their default action again: the process dies by the signal (unless it inherited
/// the signal as ignored). So the third signal, or the next one once the server is
/// done, ends the process, also when cleanup hangs or the executor stopped. A
/// `Signals` that is kept alive but never read swallows the signals it receives.
///
/// On Windows `async-signal` only supports Ctrl-C ([`Signal::Interrupt`]):
/// Ctrl-Break, Ctrl-Close and Ctrl-Shutdown are not available on smol, and closing
/// the console or shutting down the system ends the process without a drain. The
/// tokio adapter's `Signals` supports all four.
#[derive(Debug)]
#[must_use = "a `Signals` does its work once handed to `Server::signals` or `handle_signals`"]
pub struct Signals {
    /// Declared first: dropped before the registration below, so that a signal
    /// during the drop has its default action rather than reaching nobody.
    _interest: Interest,
    inner: async_signal::Signals,
}

impl Signals {
    /// Registers the handlers.
    pub fn new() -> io::Result<Self> {
        use async_signal::Signal as Sig;
        #[cfg(not(windows))]
        let wanted = [Sig::Int, Sig::Term];
        #[cfg(windows)]
        let wanted = [Sig::Int];
        let (inner, _interest) = Interest::register(|| async_signal::Signals::new(wanted))?;
        Ok(Signals { inner, _interest })
    }
}

impl SignalSource for Signals {
    async fn recv(&mut self) -> io::Result<Signal> {
        use futures_lite::StreamExt;
        match self.inner.next().await {
            Some(Ok(async_signal::Signal::Int)) => Ok(Signal::Interrupt),
            Some(Ok(async_signal::Signal::Term)) => Ok(Signal::Terminate),
            Some(Ok(other)) => Err(io::Error::other(format!(
                "async-signal delivered {other:?}, which was not registered"
            ))),
            Some(Err(error)) => Err(error),
            None => Err(io::Error::other("the async-signal stream ended")),
        }
    }
}

#[cfg(any(feature = "http1", feature = "http2"))]
mod hyper_glue {
    #[cfg(feature = "tls")]
    use std::sync::Arc;

    use smol_hyper::rt::{FuturesIo, SmolTimer};

    use super::Smol;
    use crate::hyper::runtime::{HyperRuntime, IntoHyperIo};

    impl HyperRuntime for Smol {
        type Timer = SmolTimer;

        fn hyper_timer(&self) -> SmolTimer {
            SmolTimer::new()
        }
    }

    #[cfg(feature = "tls")]
    impl crate::hyper::tls::TlsAccept for smol::net::TcpStream {
        type Io = FuturesIo<futures_rustls::server::TlsStream<smol::net::TcpStream>>;

        async fn accept_tls(
            self,
            config: Arc<rustls::ServerConfig>,
        ) -> std::io::Result<(Self::Io, Option<Vec<u8>>)> {
            let tls = futures_rustls::TlsAcceptor::from(config)
                .accept(self)
                .await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            Ok((FuturesIo::new(tls), alpn))
        }
    }

    impl IntoHyperIo for smol::net::TcpStream {
        type Io = FuturesIo<smol::net::TcpStream>;

        fn into_hyper_io(self) -> Self::Io {
            FuturesIo::new(self)
        }
    }

    #[cfg(unix)]
    impl IntoHyperIo for smol::net::unix::UnixStream {
        type Io = FuturesIo<smol::net::unix::UnixStream>;

        fn into_hyper_io(self) -> Self::Io {
            FuturesIo::new(self)
        }
    }
}

/// The upgrade signal on smol (feature `upgrade`, Unix), through async-signal:
/// SIGUSR2 by default, for [`Upgrade::signals`](crate::upgrade::Upgrade::signals).
#[cfg(all(unix, feature = "upgrade"))]
#[derive(Debug)]
pub struct UpgradeSignal(async_signal::Signals);

#[cfg(all(unix, feature = "upgrade"))]
impl UpgradeSignal {
    /// Listens for SIGUSR2. Call it early: until it is installed, SIGUSR2 has
    /// its default action (the process ends).
    pub fn new() -> io::Result<Self> {
        UpgradeSignal::on(async_signal::Signal::Usr2)
    }

    /// Listens for `signal` instead (SIGHUP, say).
    pub fn on(signal: async_signal::Signal) -> io::Result<Self> {
        Ok(UpgradeSignal(async_signal::Signals::new([signal])?))
    }
}

#[cfg(all(unix, feature = "upgrade"))]
impl crate::upgrade::UpgradeRequests for UpgradeSignal {
    async fn next(&mut self) -> io::Result<()> {
        use futures_lite::StreamExt;
        match self.0.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(error)) => Err(error),
            None => Err(io::Error::other("the upgrade signal's stream ended")),
        }
    }
}
