//! [`Outcome`] of a drain and [`Cancelled`], why work was cut short.

use std::fmt;

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Every watcher finished on its own.
    Drained,
    /// The deadline (or an explicit [`Shutdown::force`](crate::Shutdown::force)) came
    /// first. Watched connections and tracked futures still running were dropped.
    Forced {
        /// Watchers still counted at the moment of the force: guards, watched
        /// connections, tracked futures and undrained child scopes.
        remaining: usize,
    },
}

impl Outcome {
    /// `true` for [`Outcome::Drained`].
    pub fn is_drained(&self) -> bool {
        matches!(self, Outcome::Drained)
    }

    /// A conventional process exit status: `0` when drained, `1` when forced.
    ///
    /// ```
    /// assert_eq!(wind_down::Outcome::Drained.exit_code(), 0);
    /// assert_eq!(wind_down::Outcome::Forced { remaining: 2 }.exit_code(), 1);
    /// ```
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Drained => 0,
            Outcome::Forced { .. } => 1,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Drained => f.write_str("drained"),
            Outcome::Forced { remaining } => write!(f, "forced with {remaining} still running"),
        }
    }
}

/// Why a guard was refused or a watched future ended without its own result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cancelled {
    /// The coordinator was forced: the future was dropped before it finished, or no
    /// new work is admitted.
    Forced,
    /// The coordinator had already drained, so new work is not admitted and never ran.
    Drained,
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cancelled::Forced => f.write_str("shutdown was forced"),
            Cancelled::Drained => f.write_str("shutdown had already drained"),
        }
    }
}

impl std::error::Error for Cancelled {}
