//! [`Guard`]: one unit of in-flight work.

use std::fmt;

use crate::inner::{Held, Inner};

/// An RAII token that counts as one unit of in-flight work.
///
/// While a guard is alive its [`Shutdown`](crate::Shutdown) is not drained. Dropping
/// it gives the count back, also when it is dropped during a panic's unwind.
/// Get one with [`Shutdown::guard`](crate::Shutdown::guard) or by cloning another.
///
/// A guard is one pointer wide, costs no heap allocation and takes no lock: acquiring
/// and releasing are one atomic operation each, on the shard of the coordinator's
/// count that belongs to the acquiring thread (a cache line of its own, so guards
/// on different threads do not contend). It keeps the coordinator alive through that
/// count, not through a reference count of its own.
///
/// A guard cannot be force-closed: it is a plain token. If one is leaked
/// (`mem::forget`), the coordinator never drains, and
/// [`Shutdown::drain_until`](crate::Shutdown::drain_until) reports it as remaining.
#[must_use = "a guard releases its count as soon as it is dropped"]
pub struct Guard {
    count: Held,
}

// SAFETY: a guard is a counted pointer to an `Inner` or to one of its shards, both
// `Send + Sync`; it only uses their atomics (to read, to count, to give back).
unsafe impl Send for Guard {}
// SAFETY: as above; `&Guard` reads, or takes one more count (`clone`) atomically.
unsafe impl Sync for Guard {}

impl Guard {
    /// Wraps a count taken with [`Inner::acquire`].
    #[inline]
    pub(crate) fn from_acquired(count: Held) -> Self {
        Guard { count }
    }

    pub(crate) fn inner(&self) -> &Inner {
        self.count.inner()
    }

    /// Returns the coordinator's current count of live guards, watched futures and
    /// undrained child scopes (including this guard).
    pub fn watchers(&self) -> usize {
        self.inner().watchers()
    }
}

impl Clone for Guard {
    /// Takes one more count. This always succeeds: the coordinator cannot be drained
    /// while `self` is alive. It works even after a force. Like
    /// [`Shutdown::guard`](crate::Shutdown::guard), it counts on the calling thread's
    /// shard while that is open.
    #[inline]
    fn clone(&self) -> Self {
        Guard {
            count: self.count.acquire_held(),
        }
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the count came from `Inner::acquire` or `Held::acquire_held` and
        // is given back here, once; it is not used again.
        unsafe { self.count.release() };
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("watchers", &self.watchers())
            .finish()
    }
}

/// A [`Guard`] that also names itself in the forced [`Report`](crate::Report);
/// from [`Shutdown::labelled_guard`](crate::Shutdown::labelled_guard).
///
/// Unlike a plain guard it costs one allocation (its label) and one short lock on
/// creation and on drop.
#[must_use = "a guard releases its count as soon as it is dropped"]
pub struct LabelledGuard {
    // Unregistered before the count is released.
    pub(crate) _registration: crate::report::Registration,
    pub(crate) guard: Guard,
}

impl LabelledGuard {
    /// The plain guard inside.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl fmt::Debug for LabelledGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabelledGuard")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}
