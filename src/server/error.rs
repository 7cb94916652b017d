//! [`ServeError`]: why [`Server::serve`](crate::Server::serve) did not end with
//! the drain alone.

use std::fmt;
use std::io;

use crate::coordinator::outcome::Outcome;

/// The listener or the signal source failed; the server drained its connections
/// and stopped. Or the settings were refused before anything was served
/// ([`InvalidInput`](io::ErrorKind::InvalidInput), with the outcome `Drained`:
/// the coordinator is left as it was).
#[derive(Debug)]
#[non_exhaustive]
pub struct ServeError {
    /// The listener's or the signal source's error.
    pub error: io::Error,
    /// How the drain that followed ended.
    pub outcome: Outcome,
}

impl ServeError {
    /// Settings refused before anything was served: the outcome is `Drained`
    /// (nothing ran) and the coordinator is left as it was.
    pub(crate) fn refused(error: io::Error) -> ServeError {
        let outcome = Outcome::Drained;
        ServeError { error, outcome }
    }
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server failed: {} (shutdown {})",
            self.error, self.outcome
        )
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ServeError> for io::Error {
    /// The failure's own error kind, with the whole [`ServeError`] (and so the
    /// drain's outcome) as its inner error, so that `?` works in a function
    /// returning `io::Result`.
    fn from(error: ServeError) -> io::Error {
        io::Error::new(error.error.kind(), error)
    }
}
