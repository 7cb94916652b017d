//! What the HTTP layer needs from a runtime adapter: [`HyperRuntime`] and
//! [`IntoHyperIo`], implemented by the `tokio` and `smol` modules.

use std::error::Error as StdError;
use std::time::Duration;

use hyper::rt::{Read, Write};

use crate::server::runtime::Runtime;

/// A boxed error, as hyper's connections and services give them.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The HTTP/1 header read timeout the HTTP layer sets.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What hyper needs from a runtime beyond [`Runtime`] (which spawns HTTP/2
/// streams): a timer for its timeouts.
pub trait HyperRuntime: Runtime {
    /// The timer given to hyper.
    type Timer: hyper::rt::Timer + Clone + Send + Sync + 'static;

    /// A timer that runs on this runtime.
    fn hyper_timer(&self) -> Self::Timer;
}

/// A connection that can be turned into hyper's IO type, implemented by each
/// runtime adapter for its streams.
pub trait IntoHyperIo: Send + 'static {
    /// The hyper IO wrapper.
    type Io: Read + Write + Unpin + Send + 'static;

    /// Wraps `self` for hyper.
    fn into_hyper_io(self) -> Self::Io;
}
