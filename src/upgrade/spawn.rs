//! Starting a new generation, and waiting on a thread of its own until it is
//! ready, exits, times out or is cancelled.
//!
//! Invariants:
//! - the new generation gets the sockets as descriptors 3.., `LISTEN_FDS`,
//!   `LISTEN_FDNAMES`, and `LISTEN_PID` set to its own pid (a shell sets it and
//!   `exec`s the program, which keeps the pid);
//! - every path that does not return the pid kills the new generation (if it
//!   still runs) and reaps it;
//! - the wait is bounded by the ready timeout, checking for a cancel and for
//!   the child's exit every 20 ms.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use super::READY_SOCKET;

/// The shell line that sets `LISTEN_PID` to the pid the program will have.
const EXEC_WITH_PID: &str = r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#;

/// A new generation to start.
pub(super) struct Generation {
    pub(super) listeners: Vec<(String, OwnedFd)>,
    pub(super) command: Option<(OsString, Vec<OsString>)>,
    pub(super) ready_timeout: Duration,
    pub(super) cancel: Arc<AtomicBool>,
}

impl Generation {
    /// Starts it (telling `on_started` its pid) and waits until it is ready.
    pub(super) fn start_and_wait(self, on_started: impl FnOnce(u32)) -> Result<u32, String> {
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("wind-down-upgrade-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let ready = UnixDatagram::bind(&path)
            .map_err(|e| format!("binding the readiness socket {}: {e}", path.display()))?;
        let _remove = RemoveOnDrop(path.clone());
        ready
            .set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| format!("readiness socket: {e}"))?;
        let mut child = self.spawn(&path)?;
        let pid = child.id();
        on_started(pid);
        let deadline = Instant::now() + self.ready_timeout;
        let mut message = [0u8; 64];
        // Bounded by the deadline: each round waits at most 20 ms.
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(stop(child, "cancelled"));
            }
            match ready.recv(&mut message) {
                Ok(n) if &message[..n] == b"READY=1" => return Ok(pid),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stop(child, &format!("readiness socket: {e}"))),
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "the new generation {pid} exited before it was ready ({status})"
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(stop(child, &format!("waiting for {pid}: {e}"))),
            }
            if Instant::now() >= deadline {
                let timeout = self.ready_timeout;
                let reason = format!("the new generation {pid} was not ready within {timeout:?}");
                return Err(stop(child, &reason));
            }
        }
    }

    fn spawn(&self, ready: &PathBuf) -> Result<Child, String> {
        let (program, args) = match &self.command {
            Some((program, args)) => (program.clone(), args.clone()),
            None => {
                let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
                (exe.into_os_string(), std::env::args_os().skip(1).collect())
            }
        };
        let names: Vec<&str> = self
            .listeners
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(EXEC_WITH_PID)
            .arg(&program)
            .args(&args)
            .env("LISTEN_FDS", names.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env(READY_SOCKET, ready);
        let mut mappings = Vec::with_capacity(self.listeners.len());
        for (i, (name, fd)) in self.listeners.iter().enumerate() {
            let parent_fd = fd
                .try_clone()
                .map_err(|e| format!("duplicating {name}: {e}"))?;
            let child_fd = 3 + i32::try_from(i).map_err(|_| "too many sockets".to_string())?;
            mappings.push(FdMapping {
                parent_fd,
                child_fd,
            });
        }
        command
            .fd_mappings(mappings)
            .map_err(|e| format!("passing the sockets: {e}"))?;
        command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", program.to_string_lossy()))
    }
}

/// Kills `child` if it still runs and reaps it; returns `reason`, noting it.
fn stop(mut child: Child, reason: &str) -> String {
    let pid = child.id();
    let _ = child.kill();
    let _ = child.wait();
    format!("{reason}; the new generation {pid} was killed")
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Tells systemd (if it started this process with `NOTIFY_SOCKET`) that `pid` is
/// the service's main process now.
pub(super) fn tell_systemd_main_pid(pid: u32) {
    #[cfg(target_os = "linux")]
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::MainPid(pid)]) {
        crate::log::debug!("systemd notification failed: {error}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pid;
}

/// Hands `fd` to systemd's fd store as `name` (if systemd started this process
/// with `NOTIFY_SOCKET`).
pub(super) fn store_in_systemd(name: &str, fd: &OwnedFd) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        let states = [
            sd_notify::NotifyState::FdStore,
            sd_notify::NotifyState::FdName(name),
        ];
        if let Err(error) = sd_notify::notify_with_fds(&states, &[fd.as_fd()]) {
            crate::log::warning!("storing {name} in systemd's fd store failed: {error}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (name, fd);
}

/// The upgrade thread's result, for the server's future.
struct Slot<T> {
    value: Mutex<Option<T>>,
    closed: AtomicBool,
    ready: event_listener::Event,
}

pub(super) struct Sender<T>(Arc<Slot<T>>);

pub(super) struct Receiver<T>(Arc<Slot<T>>);

pub(super) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        closed: AtomicBool::new(false),
        ready: event_listener::Event::new(),
    });
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub(super) fn send(self, value: T) {
        *self.0.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
    }
}

impl<T> Drop for Sender<T> {
    /// Sent or not (the thread panicked), the receiver wakes.
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.ready.notify(usize::MAX);
    }
}

impl Receiver<Result<u32, String>> {
    /// The result, once the thread sent it or ended.
    pub(super) async fn recv(self) -> Result<u32, String> {
        // Bounded: the second round finds the sender closed at the latest.
        loop {
            let listener = self.0.ready.listen();
            if self.0.closed.load(Ordering::SeqCst) {
                let value = self
                    .0
                    .value
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                return value.unwrap_or_else(|| Err("the upgrade thread panicked".into()));
            }
            listener.await;
        }
    }
}
