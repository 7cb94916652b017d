//! [`Guard`]: one unit of in-flight work.

use std::fmt;

use super::report::WatcherKind;
use super::shard::Count;

/// An RAII token that counts as one unit of in-flight work.
///
/// While a guard is alive its [`Shutdown`](crate::Shutdown) is not drained. Dropping
/// it gives the count back, also when it is dropped during a panic's unwind. Get one
/// with [`Shutdown::guard`](crate::Shutdown::guard) or by cloning another.
///
/// A guard is 16 bytes and costs no allocation and no lock: it holds an `Arc` of
/// the shard of the coordinator's count that belongs to the acquiring thread (its
/// own cache lines, so guards on different threads do not contend), and acquiring
/// or releasing it is one atomic operation on that shard plus the `Arc`'s own. A
/// child scope's guards count on the scope's state word.
///
/// A guard cannot be force-closed: it is a plain token. If one is leaked
/// (`mem::forget`), the coordinator never drains, and
/// [`Shutdown::drain_until`](crate::Shutdown::drain_until) reports it as remaining.
#[must_use = "a guard releases its count as soon as it is dropped"]
pub struct Guard {
    count: Counted,
}

enum Counted {
    Plain(Count),
    /// Named in reports: one allocation, and one short lock to enter and leave.
    Labelled(Box<Labelled>),
}

struct Labelled {
    // Dropped after `Drop for Labelled` took the entry out of the registry.
    count: Count,
    key: u64,
}

impl Drop for Labelled {
    fn drop(&mut self) {
        self.count.core().unregister(self.key);
    }
}

impl Guard {
    #[inline]
    pub(crate) fn from_count(count: Count) -> Guard {
        Guard {
            count: Counted::Plain(count),
        }
    }

    fn count(&self) -> &Count {
        match &self.count {
            Counted::Plain(count) => count,
            Counted::Labelled(labelled) => &labelled.count,
        }
    }

    pub(crate) fn core(&self) -> &super::core::CoreRef {
        self.count().core()
    }

    /// Names this guard in [reports](crate::Report): a [`Straggler`](crate::Straggler)
    /// of kind [`WatcherKind::Guard`] with this label and its age, while it lives.
    /// Replaces an earlier label. Costs one allocation.
    ///
    /// ```
    /// let shutdown = wind_down::Shutdown::new();
    /// let _guard = shutdown.guard().unwrap().with_label("nightly export");
    /// let outcome = shutdown.force();
    /// assert_eq!(outcome.report().unwrap().stragglers[0].label, "nightly export");
    /// ```
    pub fn with_label(self, label: impl Into<String>) -> Guard {
        self.labelled(WatcherKind::Guard, label.into())
    }

    pub(crate) fn labelled(self, kind: WatcherKind, label: String) -> Guard {
        let labelled = match self.count {
            Counted::Plain(count) => {
                let key = count.core().register(kind, label);
                Labelled { count, key }
            }
            Counted::Labelled(labelled) => {
                labelled.count.core().relabel(labelled.key, label);
                *labelled
            }
        };
        Guard {
            count: Counted::Labelled(Box::new(labelled)),
        }
    }
}

impl Clone for Guard {
    /// Takes one more count where this guard counts. This always succeeds: the
    /// coordinator cannot be drained while `self` is alive. It works even after a
    /// force. The clone has no label.
    #[inline]
    fn clone(&self) -> Self {
        Guard::from_count(self.count().add())
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("labelled", &matches!(self.count, Counted::Labelled(_)))
            .finish()
    }
}
