//! Synchronisation primitives, swapped for loom's under `--cfg wind_down_loom`.
//!
//! Only the coordinator's own atomics and locks are modelled. `event-listener`
//! keeps its std primitives (its notifications act as opaque, linearisable
//! steps to loom), and `Arc` stays std because loom's has no `Weak`.

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
