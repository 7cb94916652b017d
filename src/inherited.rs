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
    /// Why the variables meant for this process cannot be used, if they cannot.
    malformed: Option<String>,
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
            malformed: malformed(),
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
/// If `LISTEN_FDS`, meant for this process, is not a count of descriptors; if
/// the descriptor is not a listening TCP socket, or cannot be made non-blocking.
pub(crate) fn tcp_listener(name: Option<&str>) -> io::Result<Option<std::net::TcpListener>> {
    let mut inherited = inherited()
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    if let Some(malformed) = &inherited.malformed {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            malformed.clone(),
        ));
    }
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

/// Why `LISTEN_FDS`, meant for this process (`LISTEN_PID`), is not a count of
/// descriptors from 3 on, if it is not.
fn malformed() -> Option<String> {
    let pid = std::env::var("LISTEN_PID").ok()?;
    if pid.trim().parse::<u32>().ok()? != std::process::id() {
        return None;
    }
    let fds = std::env::var("LISTEN_FDS").ok()?;
    // A descriptor number is a C `int`: at most this many follow 3.
    let most = i32::MAX as u64 - 3;
    match fds.trim().parse::<u64>() {
        Ok(count) if count <= most => None,
        _ => Some(format!(
            "LISTEN_FDS={fds:?} is not a count of inherited descriptors (socket activation)"
        )),
    }
}
