//! [`Shared`]: what the HTTP layer gives every one of its connections.

use std::time::Duration;

use super::protocols::Protocols;
use super::report::ErrorHook;
use crate::coordinator::Shutdown;

/// What every connection of one HTTP layer shares, behind one `Arc`.
pub(crate) struct Shared<R, A> {
    pub(crate) runtime: R,
    pub(crate) protocols: Protocols<R>,
    pub(crate) shutdown: Shutdown,
    /// Whether connections go away at the announcement.
    pub(crate) go_away: bool,
    pub(crate) pre_request_grace: Duration,
    pub(crate) on_error: Option<ErrorHook<A>>,
}
