//! The state word: a coordinator's whole lifecycle in one `AtomicU64`.
//!
//! ```text
//! bit 0        ANNOUNCED  set once, never cleared: not ready any more
//! bit 1        TRIGGERED  set once, never cleared (implies ANNOUNCED)
//! bit 2        FORCED     set once, never cleared (implies TRIGGERED)
//! bits 3..36   watchers   guards, watched and tracked futures counted here directly
//! bits 36..64  holds      what keeps the coordinator from draining without being a
//!                         watcher: a shard with guards of its own (see `shard.rs`),
//!                         an undrained child scope
//! ```
//!
//! Invariants:
//! - *Drained* is derived, never stored: `TRIGGERED`, no watcher and no hold.
//! - Adding a watcher or a hold is refused once drained or forced, so a drained
//!   coordinator stays drained; a caller that already holds a count adds without
//!   the check (it keeps the coordinator from draining).
//! - The release that takes a triggered word to zero is the drain; it happens once.

/// Shutdown was announced: readiness is `false`.
pub(crate) const ANNOUNCED: u64 = 1;
/// Shutdown was triggered.
pub(crate) const TRIGGERED: u64 = 2;
/// The drain was forced.
pub(crate) const FORCED: u64 = 4;
/// One directly counted watcher.
pub(crate) const WATCHER: u64 = 1 << 3;
/// One hold (a shard with guards, or an undrained child scope).
pub(crate) const HOLD: u64 = 1 << 36;

/// Counts beyond these abort the process, as `Arc`'s reference count does: half of
/// each field, so that racing additions cannot carry into the next field.
const MAX_WATCHERS: u64 = (HOLD / WATCHER) / 2;
const MAX_HOLDS: u64 = (u64::MAX / HOLD) / 2;

/// The watchers counted directly on this word.
pub(crate) const fn watchers(word: u64) -> u64 {
    (word & (HOLD - 1)) / WATCHER
}

/// Whether nothing is counted: no watcher and no hold.
pub(crate) const fn is_empty(word: u64) -> bool {
    word < WATCHER
}

/// Whether the word says drained: triggered, and nothing counted.
pub(crate) const fn is_drained(word: u64) -> bool {
    word & TRIGGERED != 0 && is_empty(word)
}

/// Aborts if `word` is past a field's limit. Called before every addition.
pub(crate) fn check_overflow(word: u64) {
    if watchers(word) > MAX_WATCHERS || word / HOLD > MAX_HOLDS {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        assert_eq!(ANNOUNCED | TRIGGERED | FORCED, WATCHER - 1);
        let word = TRIGGERED + 3 * WATCHER + 2 * HOLD;
        assert_eq!(watchers(word), 3);
        assert_eq!(word / HOLD, 2);
        assert!(!is_drained(word));
        assert!(is_drained(TRIGGERED | ANNOUNCED | FORCED));
        assert!(!is_drained(ANNOUNCED));
    }
}
