//! The tokio adapter (feature `tokio`): runtime, listeners and signals.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use wind_down::tokio::{Signals, Tokio};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = wind_down::Server::new(Tokio::current(), listener).signals(Signals::new()?);
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::server::runtime::{Listener, Runtime};
use crate::signal::{Interest, Signal, SignalSource};

/// A tokio runtime, by its [`Handle`].
///
/// Sleeps need the runtime's time driver (`enable_time`, or `enable_all`).
#[derive(Clone, Debug)]
pub struct Tokio {
    handle: Handle,
}

impl Tokio {
    /// The runtime this is called from.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn current() -> Self {
        Tokio {
            handle: Handle::current(),
        }
    }

    /// The runtime behind `handle`.
    pub fn from_handle(handle: Handle) -> Self {
        Tokio { handle }
    }
}

impl Runtime for Tokio {
    type Sleep = tokio::time::Sleep;

    fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        let _guard = self.handle.enter();
        tokio::time::sleep(duration)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        tokio::net::TcpListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = std::sync::Arc<tokio::net::unix::SocketAddr>;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (io, addr) = tokio::net::UnixListener::accept(self).await?;
        Ok((io, std::sync::Arc::new(addr)))
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self).map(std::sync::Arc::new)
    }
}

/// Turns a std listener into a tokio one, switching it to non-blocking mode first
/// (a blocking listener would stall the runtime and shutdown with it).
///
/// Must be called inside a tokio runtime.
pub fn listener_from_std(listener: std::net::TcpListener) -> io::Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// The process's shutdown signals, through `tokio::signal`: SIGINT and SIGTERM on
/// Unix; Ctrl-C, Ctrl-Break, Ctrl-Close and Ctrl-Shutdown on Windows.
///
/// The handlers are installed by [`Signals::new`]: every signal from the moment it
/// returns until the value is dropped is delivered to it, nothing is lost. A
/// server drops it when it is done with it (after the second signal, or once
/// drained or forced). On Unix, while no `Signals` lives, SIGINT and SIGTERM have
/// their default action again: the process dies by the signal (unless it inherited
/// the signal as ignored). So the third signal, or the next one once the server is
/// done, ends the process, also when cleanup hangs. A `Signals` that is kept alive
/// but never read swallows the signals it receives.
///
/// On Windows, tokio holds Ctrl-Close and Ctrl-Shutdown until the process exits,
/// and the system ends the process after a few seconds: keep the grace period
/// short there.
#[derive(Debug)]
#[must_use = "a `Signals` does its work once handed to `Server::signals` or `handle_signals`"]
pub struct Signals {
    /// Declared first: dropped before the registrations below, so that a signal
    /// during the drop has its default action rather than reaching nobody.
    _interest: Interest,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(windows)]
    ctrl_c: tokio::signal::windows::CtrlC,
    #[cfg(windows)]
    ctrl_break: tokio::signal::windows::CtrlBreak,
    #[cfg(windows)]
    ctrl_close: tokio::signal::windows::CtrlClose,
    #[cfg(windows)]
    ctrl_shutdown: tokio::signal::windows::CtrlShutdown,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    ///
    /// Outside a tokio runtime, or if the handlers cannot be installed. (Inside a
    /// runtime built without its IO driver, tokio itself panics: build it with
    /// `enable_io` or `enable_all`.)
    pub fn new() -> io::Result<Self> {
        if Handle::try_current().is_err() {
            return Err(io::Error::other(
                "wind_down::tokio::Signals::new needs a tokio runtime: call it inside one",
            ));
        }
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let ((interrupt, terminate), _interest) = Interest::register(|| {
                Ok((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                ))
            })?;
            Ok(Signals {
                interrupt,
                terminate,
                _interest,
            })
        }
        #[cfg(windows)]
        {
            use tokio::signal::windows;
            let ((ctrl_c, ctrl_break, ctrl_close, ctrl_shutdown), _interest) =
                Interest::register(|| {
                    Ok((
                        windows::ctrl_c()?,
                        windows::ctrl_break()?,
                        windows::ctrl_close()?,
                        windows::ctrl_shutdown()?,
                    ))
                })?;
            Ok(Signals {
                ctrl_c,
                ctrl_break,
                ctrl_close,
                ctrl_shutdown,
                _interest,
            })
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("the tokio signal driver shut down")
}

impl SignalSource for Signals {
    async fn recv(&mut self) -> io::Result<Signal> {
        use futures_lite::future::or;
        #[cfg(unix)]
        let got = or(
            async { self.interrupt.recv().await.map(|()| Signal::Interrupt) },
            async { self.terminate.recv().await.map(|()| Signal::Terminate) },
        )
        .await;
        #[cfg(windows)]
        let got = or(
            or(
                async { self.ctrl_c.recv().await.map(|()| Signal::Interrupt) },
                async { self.ctrl_break.recv().await.map(|()| Signal::CtrlBreak) },
            ),
            or(
                async { self.ctrl_close.recv().await.map(|()| Signal::CtrlClose) },
                async {
                    self.ctrl_shutdown
                        .recv()
                        .await
                        .map(|()| Signal::CtrlShutdown)
                },
            ),
        )
        .await;
        got.ok_or_else(closed)
    }
}

#[cfg(any(feature = "http1", feature = "http2"))]
mod hyper_glue {
    use hyper_util::rt::{TokioIo, TokioTimer};

    use super::Tokio;
    use crate::hyper::runtime::{HyperRuntime, IntoHyperIo};

    impl HyperRuntime for Tokio {
        type Timer = TokioTimer;

        fn hyper_timer(&self) -> TokioTimer {
            TokioTimer::new()
        }
    }

    #[cfg(feature = "tls")]
    impl crate::hyper::tls::TlsAccept for tokio::net::TcpStream {
        type Io = TokioIo<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

        async fn accept_tls(
            self,
            config: std::sync::Arc<rustls::ServerConfig>,
        ) -> std::io::Result<(Self::Io, Option<Vec<u8>>)> {
            let tls = tokio_rustls::TlsAcceptor::from(config).accept(self).await?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            Ok((TokioIo::new(tls), alpn))
        }
    }

    impl IntoHyperIo for tokio::net::TcpStream {
        type Io = TokioIo<tokio::net::TcpStream>;

        fn into_hyper_io(self) -> Self::Io {
            TokioIo::new(self)
        }
    }

    #[cfg(unix)]
    impl IntoHyperIo for tokio::net::UnixStream {
        type Io = TokioIo<tokio::net::UnixStream>;

        fn into_hyper_io(self) -> Self::Io {
            TokioIo::new(self)
        }
    }
}

/// The upgrade signal on tokio (feature `upgrade`, Unix): SIGUSR2 by default,
/// for [`Upgrade::signals`](crate::upgrade::Upgrade::signals).
#[cfg(all(unix, feature = "upgrade"))]
#[derive(Debug)]
pub struct UpgradeSignal(tokio::signal::unix::Signal);

#[cfg(all(unix, feature = "upgrade"))]
impl UpgradeSignal {
    /// Listens for SIGUSR2. Call it inside a tokio runtime, early: until it is
    /// installed, SIGUSR2 has its default action (the process ends).
    pub fn new() -> io::Result<Self> {
        UpgradeSignal::on(tokio::signal::unix::SignalKind::user_defined2())
    }

    /// Listens for `kind` instead (SIGHUP, say).
    pub fn on(kind: tokio::signal::unix::SignalKind) -> io::Result<Self> {
        Ok(UpgradeSignal(tokio::signal::unix::signal(kind)?))
    }
}

#[cfg(all(unix, feature = "upgrade"))]
impl crate::upgrade::UpgradeRequests for UpgradeSignal {
    async fn next(&mut self) -> io::Result<()> {
        match self.0.recv().await {
            Some(()) => Ok(()),
            None => Err(io::Error::other("the upgrade signal's stream ended")),
        }
    }
}
