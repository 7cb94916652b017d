//! Listening sockets inherited through the socket-activation protocol
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), from systemd or from a
//! previous generation of the program (`upgrade`).
//!
//! Invariants:
//! - the environment is read once per process, on the first call, and never
//!   written here (removing variables is not safe code on this edition;
//!   `LISTEN_PID` names this process, so children never take the sockets);
//! - each descriptor is taken at most once: a second call for the same socket
//!   finds nothing.

use std::io;
use std::sync::{Mutex, OnceLock};

struct Inherited {
    fds: listenfd::ListenFd,
    /// `LISTEN_FDNAMES`, one name per descriptor (systemd's default name is
    /// `unknown`).
    names: Vec<String>,
}

fn inherited() -> &'static Mutex<Inherited> {
    static INHERITED: OnceLock<Mutex<Inherited>> = OnceLock::new();
    INHERITED.get_or_init(|| {
        // Read before listenfd, which may remove the variables it parsed.
        let names = std::env::var("LISTEN_FDNAMES")
            .map(|names| names.split(':').map(str::to_owned).collect())
            .unwrap_or_default();
        Mutex::new(Inherited {
            fds: listenfd::ListenFd::from_env(),
            names,
        })
    })
}

/// The inherited listening TCP socket named `name` (the first one for `None`),
/// made non-blocking; `None` if there is none, or it was taken already.
///
/// # Errors
///
/// If the descriptor is not a listening TCP socket, or cannot be made
/// non-blocking.
pub(crate) fn tcp_listener(name: Option<&str>) -> io::Result<Option<std::net::TcpListener>> {
    let mut inherited = inherited()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    let index = match name {
        None => 0,
        Some(name) => match inherited.names.iter().position(|n| n == name) {
            Some(index) => index,
            None => return Ok(None),
        },
    };
    if index >= inherited.fds.len() {
        return Ok(None);
    }
    let Some(listener) = inherited.fds.take_tcp_listener(index)? else {
        return Ok(None);
    };
    listener.set_nonblocking(true)?;
    Ok(Some(listener))
}
