//! Labelled watchers, and the [`Report`] of what was still running at a force.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::inner::Inner;

/// What kind of watcher a [`Straggler`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WatcherKind {
    /// A guard from [`Shutdown::labelled_guard`](crate::Shutdown::labelled_guard).
    Guard,
    /// A connection from [`Shutdown::watch_labelled`](crate::Shutdown::watch_labelled)
    /// (the [`Server`](crate::Server) labels each connection with its peer address).
    Connection,
    /// A future from [`Shutdown::track_labelled`](crate::Shutdown::track_labelled).
    Task,
}

impl fmt::Display for WatcherKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WatcherKind::Guard => "guard",
            WatcherKind::Connection => "connection",
            WatcherKind::Task => "task",
        })
    }
}

/// One labelled watcher that was still running when the drain was forced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Straggler {
    /// What it is.
    pub kind: WatcherKind,
    /// Its label: a peer address for the server's connections, else the user's.
    pub label: String,
    /// How long it had been running at the force.
    pub age: Duration,
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} for {:.1?}", self.kind, self.label, self.age)
    }
}

/// What was still running at the moment a coordinator was forced; see
/// [`Shutdown::forced_report`](crate::Shutdown::forced_report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Every watcher counted at the force, labelled or not (as in
    /// [`Outcome::Forced`](crate::Outcome::Forced)).
    pub remaining: usize,
    /// The labelled ones among them, oldest first. A snapshot: a watcher created or
    /// finishing during the force may be missing or extra.
    pub stragglers: Vec<Straggler>,
}

impl Report {
    /// Watchers without a label: plain guards, unlabelled watched futures and
    /// undrained child scopes.
    pub fn unlabelled(&self) -> usize {
        self.remaining.saturating_sub(self.stragglers.len())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} still running", self.remaining)?;
        for s in &self.stragglers {
            write!(f, "; {s}")?;
        }
        if self.unlabelled() > 0 {
            write!(f, "; {} unlabelled", self.unlabelled())?;
        }
        Ok(())
    }
}

/// The labelled watchers alive now.
#[derive(Default)]
pub(crate) struct Registry {
    next: u64,
    live: BTreeMap<u64, (WatcherKind, String, Instant)>,
}

impl Registry {
    pub(crate) fn snapshot(&self, remaining: usize) -> Report {
        let now = Instant::now();
        let mut stragglers: Vec<Straggler> = self
            .live
            .values()
            .map(|(kind, label, since)| Straggler {
                kind: *kind,
                label: label.clone(),
                age: now.saturating_duration_since(*since),
            })
            .collect();
        stragglers.sort_by_key(|s| std::cmp::Reverse(s.age));
        Report {
            remaining,
            stragglers,
        }
    }
}

/// A labelled watcher's entry in the registry, removed on drop.
pub(crate) struct Registration {
    inner: Arc<Inner>,
    key: u64,
}

impl Registration {
    pub(crate) fn new(inner: Arc<Inner>, kind: WatcherKind, label: String) -> Self {
        let key = inner.with_registry(|r| {
            let key = r.next;
            r.next += 1;
            r.live.insert(key, (kind, label, Instant::now()));
            key
        });
        Registration { inner, key }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.with_registry(|r| r.live.remove(&self.key));
    }
}
