//! The scheduler's decision for one Upgrade Set at one instant: which members time out, which
//! are skipped, which get a slot, and whether the set itself moves on.
//!
//! **Invariant:** after applying a plan, the members holding a slot never exceed
//! `max_in_flight` (if they already did, because the limit was lowered, none is added).

use std::cmp::Ordering;

use jiff::Timestamp;

use crate::member::{Member, MemberEvent, MemberState, Outcome};
use crate::set::{SetEvent, SetState};
use crate::version;
use crate::window::Window;

/// What the planner knows about the set.
#[derive(Clone, Debug)]
pub struct SetFacts<'a> {
    /// The set's current state.
    pub state: SetState,
    /// Most members holding a slot at once.
    pub max_in_flight: u32,
    /// No release before this instant.
    pub start_at: Option<Timestamp>,
    /// Releases only while this window is open.
    pub window: Option<&'a Window>,
    /// A member in flight that has not reported for this long loses its slot.
    pub stuck_timeout_secs: u64,
    /// An endpoint not seen for this long is not released (it would only hold a slot).
    pub offline_after_secs: u64,
    /// The package's version.
    pub target_version: &'a str,
    /// The package may only upgrade endpoints at this version or newer.
    pub min_from: Option<&'a str>,
    /// Since when the scheduler has been watching without a gap. Silence before this instant
    /// is not the members' fault (the server or its database was down, or another replica led
    /// and died), so no member times out before `observing_since + stuck_timeout_secs`.
    pub observing_since: Timestamp,
}

/// What the planner knows about one member.
#[derive(Clone, Debug)]
pub struct MemberFacts<'a> {
    /// The endpoint.
    pub endpoint_id: &'a str,
    /// Its record in the set.
    pub member: &'a Member,
    /// Its place in the set's seeded order.
    pub rank: u32,
    /// When it was released or last reported, whichever is later.
    pub last_activity: Option<Timestamp>,
    /// When the endpoint last talked to the server at all.
    pub last_seen: Option<Timestamp>,
    /// The product version the endpoint reports, if installed.
    pub installed_version: Option<&'a str>,
    /// It holds a slot in another set right now (one upgrade at a time per endpoint).
    pub busy_elsewhere: bool,
}

/// One decision, to be applied in one transaction with the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply this event to the set.
    Set(SetEvent),
    /// Apply this event to this member.
    Member { endpoint_id: String, event: MemberEvent },
}

/// Plans one scheduler tick for a set.
pub fn plan(set: &SetFacts<'_>, members: &[MemberFacts<'_>], now: Timestamp) -> Vec<Decision> {
    let mut decisions = Vec::new();
    if set.state == SetState::Completed {
        return decisions;
    }
    let mut in_flight: u32 = 0;
    // Members that go back to Pending in this tick (released, silent, never started).
    let mut requeued: usize = 0;
    for m in members.iter().filter(|m| m.member.holds_slot()) {
        let heard_or_watched = m.last_activity.map_or(set.observing_since, |t| t.max(set.observing_since));
        let silent_secs = secs_between(heard_or_watched, now);
        if silent_secs >= set.stuck_timeout_secs {
            decisions.push(member(
                m,
                MemberEvent::TimedOut { silent_secs: silent_secs.min(set.stuck_timeout_secs.max(1) * 1000) },
            ));
            if m.member.attempts == 0 {
                requeued += 1;
            }
        } else {
            in_flight += 1;
        }
    }
    if set.state == SetState::Cancelled {
        // A cancelled set releases nothing, but its silent members must still give back their
        // slots, or their endpoints would be busy for every other set for good.
        return decisions;
    }

    let mut state = set.state;
    if state == SetState::Scheduled && set.start_at.is_none_or(|t| now >= t) {
        state = SetState::Active;
        decisions.push(Decision::Set(SetEvent::Start));
    }

    let mut pending: Vec<&MemberFacts<'_>> =
        members.iter().filter(|m| m.member.state == MemberState::Pending).collect();
    let mut still_pending = pending.len() + requeued;
    let may_release =
        state == SetState::Active && set.start_at.is_none_or(|t| now >= t) && set.window.is_none_or(|w| w.is_open(now));
    if may_release {
        pending.sort_by_key(|m| (m.member.deferrals, m.rank));
        for m in pending {
            if let Some(skip) = eligibility(set, m.installed_version) {
                decisions.push(member(m, skip));
                still_pending -= 1;
                continue;
            }
            let online = m.last_seen.is_some_and(|t| secs_between(t, now) < set.offline_after_secs);
            if in_flight < set.max_in_flight && online && !m.busy_elsewhere {
                decisions.push(member(m, MemberEvent::Release));
                in_flight += 1;
            }
        }
    }
    debug_assert!(in_flight <= set.max_in_flight.max(members.iter().filter(|m| m.member.holds_slot()).count() as u32));

    if still_pending == 0 && in_flight == 0 && matches!(state, SetState::Active | SetState::Paused) {
        let releases = decisions.iter().any(|d| matches!(d, Decision::Member { event: MemberEvent::Release, .. }));
        if !releases {
            decisions.push(Decision::Set(SetEvent::Finish));
        }
    }
    decisions
}

/// Why an endpoint must not get this package, as a skip event; None when it may.
fn eligibility(set: &SetFacts<'_>, installed: Option<&str>) -> Option<MemberEvent> {
    let installed = installed?;
    let skip = |outcome, reason| Some(MemberEvent::Skip { outcome, reason });
    match version::compare(installed, set.target_version) {
        Ordering::Equal => skip(Outcome::Succeeded, format!("already at {installed}")),
        Ordering::Greater => skip(
            Outcome::Failed,
            format!("installed {installed} is newer than {}; an Upgrade Set never downgrades", set.target_version),
        ),
        Ordering::Less => match set.min_from {
            Some(min) if version::compare(installed, min) == Ordering::Less => skip(
                Outcome::Failed,
                format!("installed {installed} is older than {min}, the oldest version this package upgrades from"),
            ),
            _ => None,
        },
    }
}

fn member(m: &MemberFacts<'_>, event: MemberEvent) -> Decision {
    Decision::Member { endpoint_id: m.endpoint_id.to_string(), event }
}

fn secs_between(earlier: Timestamp, later: Timestamp) -> u64 {
    let diff = later.as_second().saturating_sub(earlier.as_second());
    u64::try_from(diff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::Applied;
    use crate::order::release_order;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("valid")
    }

    fn facts(state: SetState, max: u32) -> SetFacts<'static> {
        SetFacts {
            state,
            max_in_flight: max,
            start_at: None,
            window: None,
            stuck_timeout_secs: 600,
            offline_after_secs: 300,
            target_version: "2.0",
            min_from: Some("1.0"),
            observing_since: ts(-1_000_000),
        }
    }

    struct Fleet {
        ids: Vec<String>,
        members: Vec<Member>,
        installed: Vec<Option<String>>,
        activity: Vec<Option<Timestamp>>,
    }

    impl Fleet {
        fn new(n: usize) -> Fleet {
            let ids: Vec<String> = (0..n).map(|i| format!("ep-{i:03}")).collect();
            Fleet {
                members: vec![Member::pending(); n],
                installed: vec![Some("1.0".into()); n],
                activity: vec![None; n],
                ids,
            }
        }

        fn plan(&self, set: &SetFacts<'_>, now: Timestamp, online: bool) -> Vec<Decision> {
            let facts: Vec<MemberFacts<'_>> = self
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| MemberFacts {
                    endpoint_id: id,
                    member: &self.members[i],
                    rank: i as u32,
                    last_activity: self.activity[i],
                    last_seen: online.then_some(now),
                    installed_version: self.installed[i].as_deref(),
                    busy_elsewhere: false,
                })
                .collect();
            plan(set, &facts, now)
        }

        fn apply(&mut self, decisions: &[Decision], now: Timestamp) -> Option<SetEvent> {
            let mut set_event = None;
            for d in decisions {
                match d {
                    Decision::Set(e) => set_event = Some(*e),
                    Decision::Member { endpoint_id, event } => {
                        let i = self.ids.iter().position(|x| x == endpoint_id).expect("known");
                        assert_eq!(self.members[i].apply(event.clone()), Ok(Applied::Changed));
                        self.activity[i] = Some(now);
                    }
                }
            }
            set_event
        }

        fn in_flight(&self) -> usize {
            self.members.iter().filter(|m| m.holds_slot()).count()
        }
    }

    fn summary(decisions: &[Decision]) -> String {
        decisions
            .iter()
            .map(|d| match d {
                Decision::Set(e) => format!("set {e}"),
                Decision::Member { endpoint_id, event } => format!("{endpoint_id} {event:?}"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn releases_up_to_the_limit_in_rank_order() {
        let fleet = Fleet::new(5);
        let d = fleet.plan(&facts(SetState::Scheduled, 2), ts(0), true);
        expect_test::expect![[r#"
            set start
            ep-000 Release
            ep-001 Release"#]]
        .assert_eq(&summary(&d));
    }

    #[test]
    fn skips_already_current_too_old_and_newer_without_slots() {
        let mut fleet = Fleet::new(4);
        fleet.installed = vec![Some("2.0".into()), Some("0.9".into()), Some("3.0".into()), None];
        let d = fleet.plan(&facts(SetState::Active, 1), ts(0), true);
        expect_test::expect![[r#"
            ep-000 Skip { outcome: Succeeded, reason: "already at 2.0" }
            ep-001 Skip { outcome: Failed, reason: "installed 0.9 is older than 1.0, the oldest version this package upgrades from" }
            ep-002 Skip { outcome: Failed, reason: "installed 3.0 is newer than 2.0; an Upgrade Set never downgrades" }
            ep-003 Release"#]]
        .assert_eq(&summary(&d));
    }

    #[test]
    fn nothing_released_while_paused_before_start_outside_window_or_offline() {
        let fleet = Fleet::new(3);
        assert!(fleet.plan(&facts(SetState::Paused, 3), ts(0), true).is_empty());
        let mut later = facts(SetState::Scheduled, 3);
        later.start_at = Some(ts(100));
        assert!(fleet.plan(&later, ts(0), true).is_empty());
        let window: Window = "Mon 01:00-02:00 UTC".parse().expect("valid window");
        let mut windowed = facts(SetState::Active, 3);
        windowed.window = Some(&window);
        // ts(0) is 2027-01-15T08:00:00Z, a Friday morning.
        assert!(fleet.plan(&windowed, ts(0), true).is_empty());
        assert!(fleet.plan(&facts(SetState::Active, 3), ts(0), false).is_empty());
    }

    #[test]
    fn stuck_member_times_out_and_frees_its_slot() {
        let mut fleet = Fleet::new(3);
        let set = facts(SetState::Active, 1);
        fleet.apply(&fleet.plan(&set, ts(0), true), ts(0));
        let started = fleet.members[0].apply(MemberEvent::AttemptStarted { attempt: 1, max_attempts: 3 });
        assert_eq!(started, Ok(Applied::Changed));
        assert!(fleet.plan(&set, ts(599), true).is_empty());
        let d = fleet.plan(&set, ts(600), true);
        expect_test::expect![[r#"
            ep-000 TimedOut { silent_secs: 600 }
            ep-001 Release"#]]
        .assert_eq(&summary(&d));
    }

    #[test]
    fn a_member_requeued_by_a_timeout_keeps_the_set_open() {
        let mut fleet = Fleet::new(1);
        let set = facts(SetState::Active, 1);
        fleet.apply(&fleet.plan(&set, ts(0), true), ts(0));
        let d = fleet.plan(&set, ts(600), true);
        expect_test::expect!["ep-000 TimedOut { silent_secs: 600 }"].assert_eq(&summary(&d));
    }

    #[test]
    fn a_cancelled_set_still_times_out_its_silent_members() {
        let mut fleet = Fleet::new(2);
        fleet.apply(&fleet.plan(&facts(SetState::Active, 1), ts(0), true), ts(0));
        let d = fleet.plan(&facts(SetState::Cancelled, 1), ts(600), true);
        expect_test::expect!["ep-000 TimedOut { silent_secs: 600 }"].assert_eq(&summary(&d));
        assert!(fleet.plan(&facts(SetState::Cancelled, 1), ts(10), true).is_empty());
    }

    #[test]
    fn silence_while_nobody_watched_does_not_time_anyone_out() {
        let mut fleet = Fleet::new(2);
        let mut set = facts(SetState::Active, 1);
        fleet.apply(&fleet.plan(&set, ts(0), true), ts(0));
        // The server was down from ts(10) to ts(5000) and watches again from ts(5000).
        set.observing_since = ts(5000);
        assert!(fleet.plan(&set, ts(5000 + 599), true).is_empty(), "a full stuck timeout of grace");
        let d = fleet.plan(&set, ts(5000 + 600), true);
        expect_test::expect![[r#"
            ep-000 TimedOut { silent_secs: 600 }
            ep-001 Release"#]]
        .assert_eq(&summary(&d));
    }

    #[test]
    fn finishes_when_nothing_pending_or_in_flight() {
        let mut fleet = Fleet::new(1);
        fleet.members[0].state = MemberState::Succeeded;
        assert_eq!(fleet.plan(&facts(SetState::Active, 1), ts(0), true), vec![Decision::Set(SetEvent::Finish)]);
        assert!(fleet.plan(&facts(SetState::Cancelled, 1), ts(0), true).is_empty());
    }

    /// Drives many random fleets to the end in virtual time and checks the invariants: the
    /// limit always holds, every member ends with an outcome, and the set completes.
    #[test]
    fn seeded_simulation_never_exceeds_the_limit() {
        for seed in 0..200u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let n = rng.random_range(1..40);
            let max = rng.random_range(1..6);
            let mut fleet = Fleet::new(n);
            let order = release_order(seed, &fleet.ids);
            fleet.ids = order;
            let mut set = facts(SetState::Scheduled, max);
            set.stuck_timeout_secs = 30;
            let mut now = ts(0);
            let mut state = SetState::Scheduled;
            for _tick in 0..10_000 {
                set.state = state;
                let d = fleet.plan(&set, now, true);
                if let Some(ev) = fleet.apply(&d, now) {
                    state = state.apply(ev).expect("legal set transition");
                }
                assert!(fleet.in_flight() <= max as usize, "seed {seed}: limit exceeded");
                if state == SetState::Completed {
                    break;
                }
                // Agents act: start, fail, succeed, or go silent.
                for i in 0..fleet.members.len() {
                    if !fleet.members[i].holds_slot() {
                        continue;
                    }
                    let roll: u32 = rng.random_range(0..10);
                    let attempt = fleet.members[i].attempts + 1;
                    let event = match roll {
                        0..=2 => MemberEvent::AttemptStarted { attempt, max_attempts: 100 },
                        3..=5 => MemberEvent::Finished { outcome: Outcome::Succeeded, reason: None },
                        6 => MemberEvent::Finished { outcome: Outcome::RolledBack, reason: Some("health".into()) },
                        _ => continue,
                    };
                    fleet.members[i].apply(event).expect("legal report");
                    fleet.activity[i] = Some(now);
                }
                now = ts(now.as_second() - 1_800_000_000 + 5);
            }
            assert_eq!(state, SetState::Completed, "seed {seed}: set did not complete");
            for m in &fleet.members {
                assert!(!matches!(m.state, MemberState::Pending | MemberState::InProgress), "seed {seed}: {m:?}");
            }
        }
    }
}
