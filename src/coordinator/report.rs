//! [`Report`]: what is running, by label; the registry of labelled watchers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// What kind of watcher a [`Straggler`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WatcherKind {
    /// A guard, labelled with [`Guard::with_label`](crate::Guard::with_label).
    Guard,
    /// A watched connection, labelled with
    /// [`Watched::with_label`](crate::Watched::with_label) (the
    /// [`Server`](crate::Server) labels each connection with its peer address).
    Connection,
    /// A tracked future, labelled with [`Watched::with_label`](crate::Watched::with_label).
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

/// One labelled watcher that was still running.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Straggler {
    /// What it is.
    pub kind: WatcherKind,
    /// Its label: a peer address for the server's connections, else the user's.
    pub label: String,
    /// How long it had been running when the report was made.
    pub age: Duration,
}

impl fmt::Display for Straggler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} for {:.1?}", self.kind, self.label, self.age)
    }
}

/// What was running in a coordinator and its child scopes at one moment: at a
/// force, in [`Outcome::Forced`](crate::Outcome::Forced).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Every watcher counted, labelled or not: guards, watched and tracked futures,
    /// in the coordinator and its child scopes (a scope itself is not a watcher).
    pub remaining: usize,
    /// The labelled ones among them, oldest first. A snapshot: a watcher created or
    /// finishing meanwhile may be missing or extra.
    pub stragglers: Vec<Straggler>,
}

impl Report {
    /// Watchers without a label.
    pub fn unlabelled(&self) -> usize {
        self.remaining.saturating_sub(self.stragglers.len())
    }

    /// Adds a child scope's report to this one.
    pub(crate) fn absorb(&mut self, other: Report) {
        self.remaining += other.remaining;
        self.stragglers.extend(other.stragglers);
    }

    /// Oldest first.
    pub(crate) fn sort(&mut self) {
        self.stragglers.sort_by_key(|s| std::cmp::Reverse(s.age));
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

/// The labelled watchers of one coordinator.
#[derive(Default)]
pub(crate) struct Registry {
    next: u64,
    live: BTreeMap<u64, (WatcherKind, String, Instant)>,
}

impl Registry {
    pub(crate) fn insert(&mut self, kind: WatcherKind, label: String) -> u64 {
        let key = self.next;
        self.next += 1;
        self.live.insert(key, (kind, label, Instant::now()));
        key
    }

    pub(crate) fn remove(&mut self, key: u64) {
        self.live.remove(&key);
    }

    pub(crate) fn relabel(&mut self, key: u64, label: String) {
        if let Some(entry) = self.live.get_mut(&key) {
            entry.1 = label;
        }
    }

    /// The labelled watchers now, unsorted, with `remaining` left at zero.
    pub(crate) fn snapshot(&self) -> Report {
        let now = Instant::now();
        let stragglers = self
            .live
            .values()
            .map(|(kind, label, since)| Straggler {
                kind: *kind,
                label: label.clone(),
                age: now.saturating_duration_since(*since),
            })
            .collect();
        Report {
            remaining: 0,
            stragglers,
        }
    }
}
