//! Synchronisation primitives, swapped for loom's under `--cfg wind_down_loom`.
//!
//! The coordinator's atomics and locks, its shards and its phases' waker lists all
//! go through these, so loom models the code that ships. `Arc` stays std because
//! loom's has no `Weak`. (The accept loop's `event-listener` is not modelled.)

#[cfg(not(wind_down_loom))]
pub(crate) use std::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

#[cfg(wind_down_loom)]
pub(crate) use loom::sync::{
    Mutex,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};
