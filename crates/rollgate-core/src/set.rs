//! The Upgrade Set state machine.
//!
//! ```text
//!  Scheduled ──Start──► Active ──Finish──► Completed
//!      │ ▲                │ ▲
//!      │ └───Resume───┐   │ │Resume
//!      └──Pause──► Paused ◄┘─Pause
//!  Scheduled | Active | Paused ──Cancel──► Cancelled
//! ```
//! Pausing stops new releases; endpoints already upgrading finish. Cancelling does the same,
//! for good.

use std::fmt;
use std::str::FromStr;

/// Where an Upgrade Set is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetState {
    /// Waiting for its start time.
    Scheduled,
    /// Releasing endpoints (when its window is open).
    Active,
    /// No new releases until resumed.
    Paused,
    /// Stopped by an operator; endpoints not yet released never will be.
    Cancelled,
    /// Every targeted endpoint has an outcome.
    Completed,
}

/// What can happen to a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetEvent {
    /// The start time has come.
    Start,
    /// An operator paused the set.
    Pause,
    /// An operator resumed the set.
    Resume,
    /// An operator cancelled the set.
    Cancel,
    /// No endpoint is pending or in flight any more.
    Finish,
}

/// An event that is not allowed in the set's current state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot {event} a set that is {state}")]
pub struct SetTransitionError {
    /// The state the set was in.
    pub state: SetState,
    /// The refused event.
    pub event: SetEvent,
}

impl SetState {
    /// Applies `event`; illegal transitions are errors, never silent no-ops.
    pub fn apply(self, event: SetEvent) -> Result<SetState, SetTransitionError> {
        use SetEvent::*;
        use SetState::*;
        let next = match (self, event) {
            (Scheduled, Start) => Active,
            (Scheduled | Active, Pause) => Paused,
            (Paused, Resume) => Active,
            (Scheduled | Active | Paused, Cancel) => Cancelled,
            (Active | Paused, Finish) => Completed,
            (state, event) => return Err(SetTransitionError { state, event }),
        };
        Ok(next)
    }

    /// True once nothing more will happen to the set.
    pub fn is_terminal(self) -> bool {
        matches!(self, SetState::Cancelled | SetState::Completed)
    }

    /// The name used in storage, on the wire and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            SetState::Scheduled => "scheduled",
            SetState::Active => "active",
            SetState::Paused => "paused",
            SetState::Cancelled => "cancelled",
            SetState::Completed => "completed",
        }
    }
}

impl fmt::Display for SetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetEvent::Start => "start",
            SetEvent::Pause => "pause",
            SetEvent::Resume => "resume",
            SetEvent::Cancel => "cancel",
            SetEvent::Finish => "finish",
        })
    }
}

impl FromStr for SetState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "scheduled" => SetState::Scheduled,
            "active" => SetState::Active,
            "paused" => SetState::Paused,
            "cancelled" => SetState::Cancelled,
            "completed" => SetState::Completed,
            other => return Err(format!("unknown set state `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints the whole transition table, so a change to it shows up as a diff.
    #[test]
    fn transition_table() {
        use SetEvent::*;
        use SetState::*;
        let mut out = String::new();
        for state in [Scheduled, Active, Paused, Cancelled, Completed] {
            for event in [Start, Pause, Resume, Cancel, Finish] {
                let result = match state.apply(event) {
                    Ok(next) => next.to_string(),
                    Err(err) => format!("error: {err}"),
                };
                out.push_str(&format!("{state} + {event} -> {result}\n"));
            }
        }
        expect_test::expect![[r#"
            scheduled + start -> active
            scheduled + pause -> paused
            scheduled + resume -> error: cannot resume a set that is scheduled
            scheduled + cancel -> cancelled
            scheduled + finish -> error: cannot finish a set that is scheduled
            active + start -> error: cannot start a set that is active
            active + pause -> paused
            active + resume -> error: cannot resume a set that is active
            active + cancel -> cancelled
            active + finish -> completed
            paused + start -> error: cannot start a set that is paused
            paused + pause -> error: cannot pause a set that is paused
            paused + resume -> active
            paused + cancel -> cancelled
            paused + finish -> completed
            cancelled + start -> error: cannot start a set that is cancelled
            cancelled + pause -> error: cannot pause a set that is cancelled
            cancelled + resume -> error: cannot resume a set that is cancelled
            cancelled + cancel -> error: cannot cancel a set that is cancelled
            cancelled + finish -> error: cannot finish a set that is cancelled
            completed + start -> error: cannot start a set that is completed
            completed + pause -> error: cannot pause a set that is completed
            completed + resume -> error: cannot resume a set that is completed
            completed + cancel -> error: cannot cancel a set that is completed
            completed + finish -> error: cannot finish a set that is completed
        "#]]
        .assert_eq(&out);
    }

    #[test]
    fn names_round_trip() {
        for s in [SetState::Scheduled, SetState::Active, SetState::Paused, SetState::Cancelled, SetState::Completed] {
            assert_eq!(s.as_str().parse::<SetState>(), Ok(s));
        }
        assert!("bogus".parse::<SetState>().is_err());
    }
}
