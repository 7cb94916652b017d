//! systemd integration (feature `systemd`): socket activation, and the server's
//! lifecycle told to the service manager through `sd_notify`.
//!
//! Linux only; on other systems [`tcp_listener`] finds no socket and [`Notify`]
//! sends nothing.
//!
//! # Socket activation
//!
//! With a `.socket` unit, systemd binds the listening socket and passes it to the
//! service (`LISTEN_FDS`, `LISTEN_PID`); [`tcp_listener`] takes it. Bind your own
//! when there is none, so the same program runs with and without activation:
//!
//! ```no_run
//! # #[cfg(feature = "tokio")]
//! # async fn listen() -> std::io::Result<tokio::net::TcpListener> {
//! let listener = match wind_down::systemd::tcp_listener()? {
//!     Some(inherited) => tokio::net::TcpListener::from_std(inherited)?,
//!     None => tokio::net::TcpListener::bind("127.0.0.1:3000").await?,
//! };
//! # Ok(listener)
//! # }
//! ```
//!
//! On smol, `smol::net::TcpListener::try_from(inherited)` does the same.
//!
//! # Notifications
//!
//! A `Type=notify` service whose server is observed by [`Notify`]
//! (`server.observe(wind_down::systemd::Notify)`) sends, in this order:
//!
//! | when | message |
//! |------|---------|
//! | `serve` starts accepting | `READY=1` |
//! | shutdown is announced (first signal) | `STOPPING=1`, `STATUS=stopping: N in flight`, `EXTEND_TIMEOUT_USEC` |
//! | the drain starts, then once a second | `STATUS=draining: N still in flight`, `EXTEND_TIMEOUT_USEC` while within the grace period |
//! | the drain ends | `STATUS=drained`, or `STATUS=forced: N still running` |
//!
//! Each `EXTEND_TIMEOUT_USEC` covers what is left of the [grace
//! period](crate::Server::grace_period) plus [`EXIT_MARGIN`], so systemd's stop
//! timeout (`TimeoutStopSec`) never kills a drain that is still allowed to run;
//! once the grace period is over, the extensions stop and systemd's own timeout
//! applies again. A failed notification (the manager went away) is reported as a
//! debug event and otherwise ignored: it never disturbs serving or the drain.

use std::io;
use std::time::Duration;

use crate::coordinator::outcome::Outcome;
use crate::coordinator::report::Report;
use crate::server::observer::Observer;

/// What every `EXTEND_TIMEOUT_USEC` adds to the time left in the grace period: the
/// time the process has to exit after a forced drain (5 s).
pub const EXIT_MARGIN: Duration = Duration::from_secs(5);

/// The first listening TCP socket passed by systemd's socket activation
/// (`LISTEN_FDS` with `LISTEN_PID` naming this process, the first descriptor being
/// 3), made non-blocking for an async listener; `None` when the process was not
/// started that way, or the socket was taken already.
///
/// The variables are read once, by the first call, and left in the environment:
/// `LISTEN_PID` names this process, so a child process does not take the socket
/// (removing variables is not safe code on this edition of Rust). Named sockets
/// (`LISTEN_FDNAMES`, `FileDescriptorName=`) are taken with the `upgrade`
/// feature's `upgrade::listener(name)`, which reads the same variables.
///
/// # Errors
///
/// If `LISTEN_FDS`, meant for this process, is not a count of descriptors
/// (`LISTEN_FDS=99999999999`, say); if the descriptor is not a listening TCP
/// socket, or cannot be made non-blocking.
pub fn tcp_listener() -> io::Result<Option<std::net::TcpListener>> {
    #[cfg(target_os = "linux")]
    return crate::inherited::tcp_listener(None);
    #[cfg(not(target_os = "linux"))]
    Ok(None)
}

/// Tells systemd about a server's lifecycle through `sd_notify`: add it with
/// [`Server::observe`](crate::Server::observe). See the [module](self) for the
/// messages and when they are sent; nothing is sent unless systemd started the
/// process with `NOTIFY_SOCKET` (a `Type=notify` service).
#[derive(Clone, Copy, Debug, Default)]
pub struct Notify;

impl Observer for Notify {
    fn ready(&self) {
        send(&["READY=1".to_string(), "STATUS=serving".to_string()]);
    }

    fn stopping(&self, in_flight: usize, left: Duration) {
        send(&[
            "STOPPING=1".to_string(),
            format!("STATUS=stopping: {in_flight} in flight"),
            extend_timeout(left),
        ]);
    }

    fn drain_started(&self, in_flight: usize, deadline: Duration) {
        draining(in_flight, Some(deadline));
    }

    fn draining(&self, report: &Report, left: Option<Duration>) {
        draining(report.remaining, left);
    }

    fn ended(&self, outcome: &Outcome) {
        send(&[match outcome.report() {
            None => "STATUS=drained".to_string(),
            Some(report) => format!("STATUS=forced: {} still running", report.remaining),
        }]);
    }
}

/// Drain progress: `in_flight` watchers left, and what is `left` of the grace
/// period (`None` once it is over: no extension then).
fn draining(in_flight: usize, left: Option<Duration>) {
    let status = format!("STATUS=draining: {in_flight} still in flight");
    match left {
        Some(left) => send(&[status, extend_timeout(left)]),
        None => send(&[status]),
    }
}

fn extend_timeout(left: Duration) -> String {
    let usec = left.saturating_add(EXIT_MARGIN).as_micros();
    format!("EXTEND_TIMEOUT_USEC={usec}")
}

/// Sends one datagram of `lines`; nothing without `NOTIFY_SOCKET`.
fn send(lines: &[String]) {
    #[cfg(target_os = "linux")]
    {
        let states: Vec<_> = lines
            .iter()
            .map(|line| sd_notify::NotifyState::Custom(line))
            .collect();
        if let Err(error) = sd_notify::notify(&states) {
            crate::log::debug!("systemd notification failed: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = lines;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_cover_the_time_left_plus_the_exit_margin() {
        assert_eq!(
            extend_timeout(Duration::from_millis(1500)),
            "EXTEND_TIMEOUT_USEC=6500000"
        );
        assert_eq!(
            extend_timeout(Duration::ZERO),
            "EXTEND_TIMEOUT_USEC=5000000"
        );
        // Beyond the 32 bits of microseconds (71 minutes) some clients assume.
        assert_eq!(
            extend_timeout(Duration::from_secs(86_400)),
            "EXTEND_TIMEOUT_USEC=86405000000"
        );
    }
}
