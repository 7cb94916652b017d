//! Synchronisation primitives, swapped for loom's under `--cfg wind_down_loom`.
//!
//! The coordinator's atomics and locks go through these, so loom models the code
//! that ships. event-listener swaps its own under `--cfg loom` (its `loom` feature),
//! which the loom job turns on together with ours. `Arc` stays std because loom's
//! has no `Weak`.

#[cfg(not(wind_down_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

#[cfg(wind_down_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence},
};

/// Locks `m`. No code runs user callbacks under these locks, so a poisoned lock
/// carries no broken invariant: recover its guard.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A field of a coordinator that threads share through a std `Arc` (the scopes'
/// tree needs `Weak`, which loom's `Arc` lacks). Under loom it is never dropped:
/// loom cannot see the std `Arc` ordering the final drop after other threads' last
/// accesses, and would report that drop as a race. Safe code cannot race a drop,
/// so nothing is lost; the values only leak in the models.
#[cfg(not(wind_down_loom))]
pub(crate) type Shared<T> = T;
#[cfg(wind_down_loom)]
pub(crate) type Shared<T> = std::mem::ManuallyDrop<T>;

/// Wraps a value as [`Shared`].
#[cfg(not(wind_down_loom))]
pub(crate) fn shared<T>(value: T) -> Shared<T> {
    value
}
#[cfg(wind_down_loom)]
pub(crate) fn shared<T>(value: T) -> Shared<T> {
    std::mem::ManuallyDrop::new(value)
}
