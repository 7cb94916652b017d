//! [`Outcome`] of a drain; [`Refused`] and [`Stopped`], why work did not run to
//! its end.

use std::fmt;
use std::process::ExitCode;

use super::report::Report;

/// How a drain ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every watcher finished on its own.
    Drained,
    /// The deadline (or an explicit [`Shutdown::force`](crate::Shutdown::force))
    /// came first. Watched connections and tracked futures still running were
    /// dropped; the report says what was running at the force.
    Forced(Report),
}

impl Outcome {
    pub(crate) fn from_report(report: Report) -> Outcome {
        if report.remaining == 0 {
            Outcome::Drained
        } else {
            Outcome::Forced(report)
        }
    }

    /// `true` for [`Outcome::Drained`].
    pub fn is_drained(&self) -> bool {
        matches!(self, Outcome::Drained)
    }

    /// The watchers still running at the force: `0` when drained.
    pub fn remaining(&self) -> usize {
        self.report().map_or(0, |report| report.remaining)
    }

    /// What was still running at the force, if forced.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Outcome::Drained => None,
            Outcome::Forced(report) => Some(report),
        }
    }
}

impl From<Outcome> for ExitCode {
    /// A conventional process exit status: `0` when drained, `1` when forced, so
    /// that `main` can return it.
    ///
    /// ```
    /// use std::process::ExitCode;
    /// assert_eq!(ExitCode::from(wind_down::Outcome::Drained), ExitCode::SUCCESS);
    /// ```
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Drained => ExitCode::SUCCESS,
            Outcome::Forced(_) => ExitCode::FAILURE,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Drained => f.write_str("drained"),
            Outcome::Forced(report) => write!(f, "forced with {report}"),
        }
    }
}

/// Why a coordinator did not admit new work (a guard, a watched or tracked future).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refused {
    /// It had already drained: nothing is admitted after the drain, so that drained
    /// stays true.
    Drained,
    /// It was forced: nothing is admitted after a force.
    Forced,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Drained => f.write_str("refused: shutdown had already drained"),
            Refused::Forced => f.write_str("refused: shutdown was forced"),
        }
    }
}

impl std::error::Error for Refused {}

/// Why a watched connection or tracked future ended without its own output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stopped {
    /// It never ran: the coordinator refused it when it was created.
    Refused(Refused),
    /// The drain was forced while it ran: it was dropped before it finished.
    Forced,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::Refused(refused) => write!(f, "never ran, {refused}"),
            Stopped::Forced => f.write_str("dropped: shutdown was forced"),
        }
    }
}

impl std::error::Error for Stopped {}
