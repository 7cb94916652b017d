//! Per-thread shards of a root coordinator's count, and [`Count`]: one watcher's
//! count, on a shard or on the state word.
//!
//! Guards taken on different threads count on different shards, so they do not
//! contend. A shard is its own allocation, aligned to 128 bytes: its word and the
//! reference count of the `Arc` a guard holds are written by its own thread only.
//!
//! ```text
//! bit 0      CLOSED   set once, when the root is triggered (or forced)
//! bit 1      HOLDS    this shard holds one hold on the state word
//! bits 2..   count    live guards counted on this shard
//! ```
//!
//! Invariants:
//! - The first guard on a shard takes one hold on the state word for the shard
//!   (*arrival*) and the shard keeps it while open, however often its count goes
//!   to zero and back: steady-state guard traffic touches only the thread's shard.
//! - A closed shard takes no new guard (acquisition falls back to the state word,
//!   which refuses once drained or forced), and gives its hold back (*departure*)
//!   exactly once: at the close if it is empty, else at the release that empties
//!   it. The closer and the last releaser are ordered by the word, so exactly one
//!   of them sees "closed and empty".
//! - A hold is not a watcher: the watchers are the state word's count plus the
//!   shards' counts, so *drained* still means that no guard is live anywhere.
//! - Shards belong to the root's handles, not to its `Core`: a shard holds the
//!   `Core`, so the `Core` holding its shards would be a cycle.

use std::sync::Arc;

use super::core::{Core, CoreRef};
use super::outcome::Refused;
use super::state::{HOLD, WATCHER};
use super::sync::{AtomicUsize, Ordering, Shared, shared};

const CLOSED: usize = 1;
const HOLDS: usize = 2;
/// One guard on a shard.
const GUARD: usize = 4;
/// Counts above this abort the process, as `Arc`'s reference count does.
const MAX_WORD: usize = usize::MAX / 2;

const fn guards(word: usize) -> usize {
    word / GUARD
}

/// One shard: a word of its own, and the coordinator it counts for.
#[repr(align(128))]
pub(crate) struct Shard {
    word: Shared<AtomicUsize>,
    core: CoreRef,
}

impl Shard {
    /// Adds a guard if the shard is open and holds: the common case, one
    /// compare-exchange. `false` if not done; [`Shard::arrive`] handles the rest.
    #[inline]
    fn try_add_fast(&self) -> bool {
        let cur = self.word.load(Ordering::Relaxed);
        cur & (CLOSED | HOLDS) == HOLDS
            && cur <= MAX_WORD
            && self
                .word
                .compare_exchange_weak(cur, cur + GUARD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Adds a guard, taking the shard's hold first if it has none. `None` if the
    /// shard is closed: count on the state word instead.
    fn arrive(&self) -> Option<Result<(), Refused>> {
        let mut cur = self.word.load(Ordering::Acquire);
        // Lock-free: each failed exchange means another thread changed the word.
        loop {
            if cur & CLOSED != 0 {
                return None;
            }
            if cur > MAX_WORD {
                std::process::abort();
            }
            let (new, arriving) = if cur & HOLDS == 0 {
                // Take the hold before the word says HOLDS.
                if let Err(refused) = self.core.try_add(HOLD) {
                    return Some(Err(refused));
                }
                ((cur + GUARD) | HOLDS, true)
            } else {
                (cur + GUARD, false)
            };
            match self
                .word
                .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Ok(())),
                Err(actual) => {
                    if arriving {
                        // Another thread arrived first, or the shard closed.
                        Core::release(&self.core, HOLD);
                    }
                    cur = actual;
                }
            }
        }
    }

    /// Gives one guard back. `true` if this emptied a closed shard: the caller
    /// releases the shard's hold.
    #[inline]
    fn release(&self) -> bool {
        let prev = self.word.fetch_sub(GUARD, Ordering::AcqRel);
        debug_assert!(guards(prev) > 0, "shard released below zero");
        prev & CLOSED != 0 && guards(prev) == 1
    }

    /// Closes the shard. `true` if the caller releases its hold: this call
    /// closed it, and it held and was empty.
    fn close(&self) -> bool {
        let prev = self.word.fetch_or(CLOSED, Ordering::AcqRel);
        prev & CLOSED == 0 && prev & HOLDS != 0 && guards(prev) == 0
    }
}

/// A root's shards, shared by its handles.
pub(crate) struct Shards {
    shards: Box<[Arc<Shard>]>,
}

impl Shards {
    /// `count` shards (a power of two) counting for `core`.
    pub(crate) fn new(core: &CoreRef, count: usize) -> Shards {
        debug_assert!(count.is_power_of_two());
        Shards {
            shards: (0..count)
                .map(|_| {
                    Arc::new(Shard {
                        word: shared(AtomicUsize::new(0)),
                        core: core.clone(),
                    })
                })
                .collect(),
        }
    }

    /// This thread's shard.
    #[inline]
    fn for_this_thread(&self) -> Option<&Arc<Shard>> {
        let slot = thread_slot()?;
        // The length is a power of two.
        self.shards.get(slot & (self.shards.len() - 1))
    }

    /// Closes every shard; returns how many holds the caller releases.
    pub(crate) fn close(&self) -> usize {
        self.shards.iter().filter(|shard| shard.close()).count()
    }

    /// The guards counted on the shards.
    pub(crate) fn count(&self) -> usize {
        let words = self.shards.iter().map(|s| s.word.load(Ordering::Acquire));
        words.map(guards).sum()
    }
}

/// One watcher's count: on a root's shard, or on a coordinator's state word.
/// Given back on drop. It holds the coordinator alive.
pub(crate) enum Count {
    Shard(Arc<Shard>),
    Direct(CoreRef),
}

impl Count {
    /// Adds one watcher to `core` (on this thread's shard of `shards`, while it is
    /// open), unless it is drained or forced.
    #[inline]
    pub(crate) fn acquire(core: &CoreRef, shards: Option<&Shards>) -> Result<Count, Refused> {
        if let Some(shard) = shards.and_then(Shards::for_this_thread) {
            if shard.try_add_fast() {
                return Ok(Count::Shard(shard.clone()));
            }
            return Count::acquire_slow(core, shard);
        }
        core.try_add(WATCHER).map(|()| Count::Direct(core.clone()))
    }

    #[inline(never)]
    fn acquire_slow(core: &CoreRef, shard: &Arc<Shard>) -> Result<Count, Refused> {
        match shard.arrive() {
            Some(Ok(())) => Ok(Count::Shard(shard.clone())),
            Some(Err(refused)) => Err(refused),
            None => core.try_add(WATCHER).map(|()| Count::Direct(core.clone())),
        }
    }

    /// The coordinator counted on.
    #[inline]
    pub(crate) fn core(&self) -> &CoreRef {
        match self {
            Count::Shard(shard) => &shard.core,
            Count::Direct(core) => core,
        }
    }

    /// One more count where this one is: never refused, since this one keeps the
    /// coordinator from draining (a shard holding a guard cannot depart).
    #[inline]
    pub(crate) fn add(&self) -> Count {
        match self {
            Count::Shard(shard) => {
                if shard.word.fetch_add(GUARD, Ordering::Relaxed) > MAX_WORD {
                    std::process::abort();
                }
                Count::Shard(shard.clone())
            }
            Count::Direct(core) => {
                core.add_held(WATCHER);
                Count::Direct(core.clone())
            }
        }
    }
}

impl Drop for Count {
    #[inline]
    fn drop(&mut self) {
        match self {
            Count::Shard(shard) => {
                if shard.release() {
                    Core::release(&shard.core, HOLD);
                }
            }
            Count::Direct(core) => Core::release(core, WATCHER),
        }
    }
}

/// How many shards a root gets: the available parallelism rounded up to a power of
/// two, at least 2 (so a guard's thread picks among several) and at most 32.
/// `WIND_DOWN_SHARDS` (1, 2, 4, .. 32) overrides it, read once per process; the
/// test suite runs with 1, 2 and 32.
#[cfg(not(wind_down_loom))]
pub(crate) fn shards_per_root() -> usize {
    static SHARDS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SHARDS.get_or_init(|| {
        let detected = std::thread::available_parallelism().map_or(2, |n| n.get());
        from_env().unwrap_or(detected.clamp(2, 32).next_power_of_two())
    })
}

/// Under loom: `WIND_DOWN_SHARDS`, or 2.
#[cfg(wind_down_loom)]
pub(crate) fn shards_per_root() -> usize {
    from_env().unwrap_or(2)
}

fn from_env() -> Option<usize> {
    let n: usize = std::env::var("WIND_DOWN_SHARDS").ok()?.parse().ok()?;
    (n.is_power_of_two() && n <= 32).then_some(n)
}

/// This thread's slot: a number handed out round-robin on its first guard, so the
/// threads of one process spread over the shards. `None` while the thread's locals
/// are being torn down; such a guard counts on the state word.
#[cfg(not(wind_down_loom))]
#[inline]
fn thread_slot() -> Option<usize> {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    std::thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.try_with(|slot| {
        let mut n = slot.get();
        if n == usize::MAX {
            n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & (usize::MAX >> 1);
            slot.set(n);
        }
        n
    })
    .ok()
}

/// Under loom: the model thread's number, deterministic across executions.
#[cfg(wind_down_loom)]
fn thread_slot() -> Option<usize> {
    let id = format!("{:?}", loom::thread::current().id());
    Some(
        id.bytes()
            .filter(u8::is_ascii_digit)
            .fold(0, |n, d| n * 10 + usize::from(d - b'0')),
    )
}
