//! The state of one endpoint within one Upgrade Set, and its transitions.
//!
//! A member holds a slot of the set's max-in-flight exactly while it is [`MemberState::InProgress`].
//! An agent must have its "attempt started" report accepted before it installs anything, so an
//! endpoint whose slot was taken away (timed out) can never install outside the limit.

use std::fmt;
use std::str::FromStr;

/// Where one endpoint is within one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Waiting for a slot.
    Pending,
    /// Holds a slot: released to the agent, which is downloading, installing or retrying.
    InProgress,
    /// Upgraded and healthy.
    Succeeded,
    /// Gave up without changing the endpoint (e.g. every download failed verification), or
    /// was not eligible for this package.
    Failed,
    /// The new version was installed, failed, and the previous version was restored.
    RolledBack,
    /// Stopped reporting mid-upgrade; its slot was freed. A late final report still counts.
    TimedOut,
}

/// The final outcome an agent reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// See [`MemberState::Succeeded`].
    Succeeded,
    /// See [`MemberState::Failed`].
    Failed,
    /// See [`MemberState::RolledBack`].
    RolledBack,
}

impl From<Outcome> for MemberState {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded => MemberState::Succeeded,
            Outcome::Failed => MemberState::Failed,
            Outcome::RolledBack => MemberState::RolledBack,
        }
    }
}

/// A fact about a member, from the scheduler or from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// The scheduler gave the member a slot.
    Release,
    /// The scheduler decided without a slot (already at the version, or not eligible).
    Skip { outcome: Outcome, reason: String },
    /// The agent is about to start attempt `attempt` (1-based) of at most `max_attempts`.
    AttemptStarted { attempt: u32, max_attempts: u32 },
    /// The agent is still working on attempt `attempt` (keeps its slot from timing out).
    Heartbeat { attempt: u32 },
    /// Attempt `attempt` failed and will be retried or given up.
    AttemptFailed { attempt: u32, reason: String },
    /// The agent is done with this set.
    Finished { outcome: Outcome, reason: Option<String> },
    /// The member has not reported for the set's stuck timeout.
    TimedOut { silent_secs: u64 },
}

/// One endpoint's record within one set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Current state.
    pub state: MemberState,
    /// Attempts started so far.
    pub attempts: u32,
    /// Why the member is in its state, for people.
    pub reason: Option<String>,
    /// How often the member was released and timed out before starting; it then waits behind
    /// the members that never were, so a vanished endpoint cannot keep taking the first slot.
    pub deferrals: u32,
}

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The member changed; store it.
    Changed,
    /// The event repeats one already applied (a retried report); nothing to store.
    Unchanged,
}

/// An event the member's state does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemberError {
    /// The agent reported work on a member that holds no slot.
    #[error("endpoint holds no slot in this set (it is {0}); do not install")]
    NoSlot(MemberState),
    /// A final report contradicts the outcome already recorded.
    #[error("endpoint already finished this set as {recorded}; a different outcome `{reported}` cannot replace it")]
    Conflict { recorded: MemberState, reported: MemberState },
    /// An attempt number that skips ahead or goes past the set's limit.
    #[error("attempt {got} cannot start: the next attempt is {expected}, and the set allows {max_attempts}")]
    AttemptOutOfOrder { got: u32, expected: u32, max_attempts: u32 },
    /// A report about an attempt that was never started.
    #[error("attempt {got} was never started (attempts started: {started})")]
    AttemptNotStarted { got: u32, started: u32 },
    /// The scheduler tried something the state does not allow (a bug, never agent input).
    #[error("illegal member transition: {event} while {state}")]
    Illegal { state: MemberState, event: &'static str },
}

impl Member {
    /// A member that has not been released yet.
    pub fn pending() -> Member {
        Member { state: MemberState::Pending, attempts: 0, reason: None, deferrals: 0 }
    }

    /// True while the member holds a slot of the set's max-in-flight.
    pub fn holds_slot(&self) -> bool {
        self.state == MemberState::InProgress
    }

    /// Applies `event` in place.
    pub fn apply(&mut self, event: MemberEvent) -> Result<Applied, MemberError> {
        use MemberState::*;
        match (self.state, event) {
            (Pending, MemberEvent::Release) => {
                self.state = InProgress;
                self.reason = None;
            }
            (Pending, MemberEvent::Skip { outcome, reason }) => {
                self.state = outcome.into();
                self.reason = Some(reason);
            }
            (InProgress, MemberEvent::AttemptStarted { attempt, max_attempts }) => {
                if attempt <= self.attempts {
                    return Ok(Applied::Unchanged);
                }
                let expected = self.attempts + 1;
                if attempt != expected || attempt > max_attempts {
                    return Err(MemberError::AttemptOutOfOrder { got: attempt, expected, max_attempts });
                }
                self.attempts = attempt;
            }
            (Succeeded | Failed | RolledBack, MemberEvent::AttemptStarted { attempt, .. })
                if attempt <= self.attempts =>
            {
                return Ok(Applied::Unchanged);
            }
            (state, MemberEvent::AttemptStarted { .. }) => return Err(MemberError::NoSlot(state)),
            // Only the time of the last report changes, which the caller stores.
            (InProgress, MemberEvent::Heartbeat { attempt }) if attempt == self.attempts && attempt > 0 => {}
            (InProgress, MemberEvent::Heartbeat { attempt }) if attempt > self.attempts || attempt == 0 => {
                return Err(MemberError::AttemptNotStarted { got: attempt, started: self.attempts });
            }
            (InProgress | Succeeded | Failed | RolledBack, MemberEvent::Heartbeat { attempt })
                if attempt <= self.attempts =>
            {
                return Ok(Applied::Unchanged);
            }
            (state, MemberEvent::Heartbeat { .. }) => return Err(MemberError::NoSlot(state)),
            (InProgress | TimedOut, MemberEvent::AttemptFailed { attempt, .. })
                if attempt > self.attempts || attempt == 0 =>
            {
                // Only a started attempt can fail.
                return Err(MemberError::AttemptNotStarted { got: attempt, started: self.attempts });
            }
            (InProgress | TimedOut, MemberEvent::AttemptFailed { attempt, reason }) => {
                let text = format!("attempt {attempt} failed: {reason}");
                if self.reason.as_deref() == Some(text.as_str()) && attempt <= self.attempts {
                    return Ok(Applied::Unchanged);
                }
                self.reason = Some(text);
            }
            (Succeeded | Failed | RolledBack, MemberEvent::AttemptFailed { .. }) => return Ok(Applied::Unchanged),
            (Pending, MemberEvent::AttemptFailed { .. }) => return Err(MemberError::NoSlot(Pending)),
            (InProgress | TimedOut, MemberEvent::Finished { outcome, reason }) => {
                self.state = outcome.into();
                if reason.is_some() || outcome == Outcome::Succeeded {
                    self.reason = reason;
                }
            }
            (recorded @ (Succeeded | Failed | RolledBack), MemberEvent::Finished { outcome, .. }) => {
                let reported = MemberState::from(outcome);
                if recorded == reported {
                    return Ok(Applied::Unchanged);
                }
                return Err(MemberError::Conflict { recorded, reported });
            }
            (Pending, MemberEvent::Finished { .. }) => return Err(MemberError::NoSlot(Pending)),
            (InProgress, MemberEvent::TimedOut { silent_secs }) => {
                if self.attempts == 0 {
                    // It never started: nothing changed on the endpoint, so it may go again later.
                    self.state = Pending;
                    self.deferrals += 1;
                    self.reason =
                        Some(format!("released but silent for {silent_secs} s; will be released again later"));
                } else {
                    self.state = TimedOut;
                    self.reason =
                        Some(format!("no report for {silent_secs} s during attempt {}; slot freed", self.attempts));
                }
            }
            (state, MemberEvent::Release) => return Err(MemberError::Illegal { state, event: "release" }),
            (state, MemberEvent::Skip { .. }) => return Err(MemberError::Illegal { state, event: "skip" }),
            (state, MemberEvent::TimedOut { .. }) => return Err(MemberError::Illegal { state, event: "time out" }),
        }
        Ok(Applied::Changed)
    }
}

impl MemberState {
    /// The name used in storage, on the wire and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Pending => "pending",
            MemberState::InProgress => "in_progress",
            MemberState::Succeeded => "succeeded",
            MemberState::Failed => "failed",
            MemberState::RolledBack => "rolled_back",
            MemberState::TimedOut => "timed_out",
        }
    }

    /// The bucket a state is counted in for operators: a timed-out member is a failure until
    /// it reports otherwise.
    pub fn count_bucket(self) -> &'static str {
        match self {
            MemberState::TimedOut => "failed",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemberState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => MemberState::Pending,
            "in_progress" => MemberState::InProgress,
            "succeeded" => MemberState::Succeeded,
            "failed" => MemberState::Failed,
            "rolled_back" => MemberState::RolledBack,
            "timed_out" => MemberState::TimedOut,
            other => return Err(format!("unknown member state `{other}`")),
        })
    }
}

impl Outcome {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        MemberState::from(self).as_str()
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "succeeded" => Outcome::Succeeded,
            "failed" => Outcome::Failed,
            "rolled_back" => Outcome::RolledBack,
            other => return Err(format!("unknown outcome `{other}`: expected succeeded, failed or rolled_back")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a script of events from a pending member and prints each step.
    fn check(events: Vec<MemberEvent>, expect: expect_test::Expect) {
        let mut m = Member::pending();
        let mut out = String::new();
        for ev in events {
            let label = format!("{ev:?}");
            let result = m.apply(ev);
            let result = match result {
                Ok(a) => format!("{a:?}"),
                Err(e) => format!("error: {e}"),
            };
            out.push_str(&format!(
                "{label} -> {result}; {} attempts={} slot={} reason={:?}\n",
                m.state,
                m.attempts,
                m.holds_slot(),
                m.reason
            ));
        }
        expect.assert_eq(&out);
    }

    use MemberEvent::*;

    #[test]
    fn success_path_with_duplicate_reports() {
        check(
            vec![
                Release,
                AttemptStarted { attempt: 1, max_attempts: 3 },
                AttemptStarted { attempt: 1, max_attempts: 3 },
                Finished { outcome: Outcome::Succeeded, reason: None },
                Finished { outcome: Outcome::Succeeded, reason: None },
            ],
            expect_test::expect![[r#"
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                AttemptStarted { attempt: 1, max_attempts: 3 } -> Changed; in_progress attempts=1 slot=true reason=None
                AttemptStarted { attempt: 1, max_attempts: 3 } -> Unchanged; in_progress attempts=1 slot=true reason=None
                Finished { outcome: Succeeded, reason: None } -> Changed; succeeded attempts=1 slot=false reason=None
                Finished { outcome: Succeeded, reason: None } -> Unchanged; succeeded attempts=1 slot=false reason=None
            "#]],
        );
    }

    #[test]
    fn retries_then_rollback() {
        check(
            vec![
                Release,
                AttemptStarted { attempt: 1, max_attempts: 3 },
                AttemptFailed { attempt: 1, reason: "health: exit 1".into() },
                AttemptFailed { attempt: 1, reason: "health: exit 1".into() },
                AttemptStarted { attempt: 2, max_attempts: 3 },
                AttemptFailed { attempt: 2, reason: "health: exit 1".into() },
                Finished { outcome: Outcome::RolledBack, reason: Some("rolled back to 1.0.0 after 2 attempts".into()) },
                Finished { outcome: Outcome::Succeeded, reason: None },
            ],
            expect_test::expect![[r#"
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                AttemptStarted { attempt: 1, max_attempts: 3 } -> Changed; in_progress attempts=1 slot=true reason=None
                AttemptFailed { attempt: 1, reason: "health: exit 1" } -> Changed; in_progress attempts=1 slot=true reason=Some("attempt 1 failed: health: exit 1")
                AttemptFailed { attempt: 1, reason: "health: exit 1" } -> Unchanged; in_progress attempts=1 slot=true reason=Some("attempt 1 failed: health: exit 1")
                AttemptStarted { attempt: 2, max_attempts: 3 } -> Changed; in_progress attempts=2 slot=true reason=Some("attempt 1 failed: health: exit 1")
                AttemptFailed { attempt: 2, reason: "health: exit 1" } -> Changed; in_progress attempts=2 slot=true reason=Some("attempt 2 failed: health: exit 1")
                Finished { outcome: RolledBack, reason: Some("rolled back to 1.0.0 after 2 attempts") } -> Changed; rolled_back attempts=2 slot=false reason=Some("rolled back to 1.0.0 after 2 attempts")
                Finished { outcome: Succeeded, reason: None } -> error: endpoint already finished this set as rolled_back; a different outcome `succeeded` cannot replace it; rolled_back attempts=2 slot=false reason=Some("rolled back to 1.0.0 after 2 attempts")
            "#]],
        );
    }

    #[test]
    fn no_slot_means_no_install() {
        check(
            vec![
                AttemptStarted { attempt: 1, max_attempts: 3 },
                Release,
                TimedOut { silent_secs: 600 },
                AttemptStarted { attempt: 1, max_attempts: 3 },
                Release,
                Release,
            ],
            expect_test::expect![[r#"
                AttemptStarted { attempt: 1, max_attempts: 3 } -> error: endpoint holds no slot in this set (it is pending); do not install; pending attempts=0 slot=false reason=None
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                TimedOut { silent_secs: 600 } -> Changed; pending attempts=0 slot=false reason=Some("released but silent for 600 s; will be released again later")
                AttemptStarted { attempt: 1, max_attempts: 3 } -> error: endpoint holds no slot in this set (it is pending); do not install; pending attempts=0 slot=false reason=Some("released but silent for 600 s; will be released again later")
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                Release -> error: illegal member transition: release while in_progress; in_progress attempts=0 slot=true reason=None
            "#]],
        );
    }

    #[test]
    fn timed_out_mid_attempt_accepts_late_outcome_but_no_new_attempt() {
        check(
            vec![
                Release,
                AttemptStarted { attempt: 1, max_attempts: 3 },
                TimedOut { silent_secs: 900 },
                AttemptStarted { attempt: 2, max_attempts: 3 },
                Finished { outcome: Outcome::Succeeded, reason: None },
            ],
            expect_test::expect![[r#"
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                AttemptStarted { attempt: 1, max_attempts: 3 } -> Changed; in_progress attempts=1 slot=true reason=None
                TimedOut { silent_secs: 900 } -> Changed; timed_out attempts=1 slot=false reason=Some("no report for 900 s during attempt 1; slot freed")
                AttemptStarted { attempt: 2, max_attempts: 3 } -> error: endpoint holds no slot in this set (it is timed_out); do not install; timed_out attempts=1 slot=false reason=Some("no report for 900 s during attempt 1; slot freed")
                Finished { outcome: Succeeded, reason: None } -> Changed; succeeded attempts=1 slot=false reason=None
            "#]],
        );
    }

    #[test]
    fn heartbeats_keep_only_the_current_attempt_alive() {
        check(
            vec![
                Heartbeat { attempt: 1 },
                Release,
                AttemptStarted { attempt: 1, max_attempts: 3 },
                Heartbeat { attempt: 1 },
                Heartbeat { attempt: 2 },
                TimedOut { silent_secs: 900 },
                Heartbeat { attempt: 1 },
            ],
            expect_test::expect![[r#"
                Heartbeat { attempt: 1 } -> error: endpoint holds no slot in this set (it is pending); do not install; pending attempts=0 slot=false reason=None
                Release -> Changed; in_progress attempts=0 slot=true reason=None
                AttemptStarted { attempt: 1, max_attempts: 3 } -> Changed; in_progress attempts=1 slot=true reason=None
                Heartbeat { attempt: 1 } -> Changed; in_progress attempts=1 slot=true reason=None
                Heartbeat { attempt: 2 } -> error: attempt 2 was never started (attempts started: 1); in_progress attempts=1 slot=true reason=None
                TimedOut { silent_secs: 900 } -> Changed; timed_out attempts=1 slot=false reason=Some("no report for 900 s during attempt 1; slot freed")
                Heartbeat { attempt: 1 } -> error: endpoint holds no slot in this set (it is timed_out); do not install; timed_out attempts=1 slot=false reason=Some("no report for 900 s during attempt 1; slot freed")
            "#]],
        );
    }

    #[test]
    fn attempts_must_come_in_order_and_within_the_limit() {
        let mut m = Member::pending();
        m.apply(Release).unwrap();
        assert_eq!(
            m.apply(AttemptStarted { attempt: 2, max_attempts: 3 }),
            Err(MemberError::AttemptOutOfOrder { got: 2, expected: 1, max_attempts: 3 })
        );
        assert_eq!(
            m.apply(AttemptFailed { attempt: 1, reason: "x".into() }),
            Err(MemberError::AttemptNotStarted { got: 1, started: 0 })
        );
        assert_eq!(m.apply(Heartbeat { attempt: 1 }), Err(MemberError::AttemptNotStarted { got: 1, started: 0 }));
        m.apply(AttemptStarted { attempt: 1, max_attempts: 1 }).unwrap();
        assert_eq!(
            m.apply(AttemptStarted { attempt: 2, max_attempts: 1 }),
            Err(MemberError::AttemptOutOfOrder { got: 2, expected: 2, max_attempts: 1 })
        );
        assert_eq!(m.attempts, 1);
    }

    #[test]
    fn skip_does_not_take_a_slot() {
        check(
            vec![Skip { outcome: Outcome::Succeeded, reason: "already at 1.1.0".into() }, Release],
            expect_test::expect![[r#"
                Skip { outcome: Succeeded, reason: "already at 1.1.0" } -> Changed; succeeded attempts=0 slot=false reason=Some("already at 1.1.0")
                Release -> error: illegal member transition: release while succeeded; succeeded attempts=0 slot=false reason=Some("already at 1.1.0")
            "#]],
        );
    }

    #[test]
    fn names_round_trip() {
        use MemberState::*;
        for s in [Pending, InProgress, Succeeded, Failed, RolledBack, TimedOut] {
            assert_eq!(s.as_str().parse::<MemberState>(), Ok(s));
        }
        assert_eq!(TimedOut.count_bucket(), "failed");
    }
}
