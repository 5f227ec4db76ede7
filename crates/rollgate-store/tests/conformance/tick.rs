//! Conformance: the scheduler tick (`tick_set`): the in-flight limit, rank order, offline
//! endpoints, skips, stuck timeouts, completion, pause, start time and one slot per endpoint.

use rollgate_core::member::{Member, MemberState::*, Outcome};
use rollgate_core::set::{SetEvent, SetState};
use rollgate_store::{MemberRecord, NewSet, PackageRecord, ReportKindRecord, SetRecord, TickParams};

use crate::{
    backends, enroll_all, expect, fleet, in_flight, install, new_set, online_endpoints, package, ranked, report,
    states, t, FROM, PARAMS, PRODUCT, TARGET,
};

#[tokio::test]
async fn tick_releases_up_to_the_limit_in_rank_order() {
    for b in backends().await {
        let s = b.start("tick_releases_up_to_the_limit_in_rank_order");
        let set = fleet(s, "wave-1", 2, &["ep-3", "ep-1", "ep-4", "ep-0", "ep-2"]).await;

        assert!(s.tick_set(set.id, PARAMS, t(5)).await.unwrap());
        assert_eq!(
            states(s, set.id).await,
            expect(&[
                ("ep-3", InProgress),
                ("ep-1", InProgress),
                ("ep-4", Pending),
                ("ep-0", Pending),
                ("ep-2", Pending)
            ])
        );
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members[0],
            MemberRecord {
                endpoint_id: "ep-3".to_string(),
                rank: 0,
                member: Member { state: InProgress, attempts: 0, reason: None, deferrals: 0 },
                released_at: Some(t(5)),
                last_report_at: None,
            }
        );
        assert_eq!(members[2].released_at, None);

        // Full: a second tick changes nothing and says so.
        assert!(!s.tick_set(set.id, PARAMS, t(6)).await.unwrap());
        assert_eq!(s.set_members(set.id).await.unwrap(), members);
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap().state, SetState::Active);
    }
}

#[tokio::test]
async fn tick_releases_only_online_endpoints() {
    for b in backends().await {
        let s = b.start("tick_releases_only_online_endpoints");
        let params = TickParams { offline_after_secs: 300, observing_since: jiff::Timestamp::UNIX_EPOCH };
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        enroll_all(s, &["ep-0", "ep-1", "ep-2", "ep-3"]).await;
        s.touch_endpoint("ep-0", t(700)).await.unwrap(); // 300 s before the tick: offline.
        s.touch_endpoint("ep-1", t(701)).await.unwrap(); // 299 s before: online.
        s.touch_endpoint("ep-3", t(1000)).await.unwrap();
        // ep-2 was never seen at all.
        let set = s.create_set(&new_set("wave-1", 4), &ranked(&["ep-0", "ep-1", "ep-2", "ep-3"]), t(0)).await.unwrap();

        assert!(s.tick_set(set.id, params, t(1000)).await.unwrap());
        assert_eq!(
            states(s, set.id).await,
            expect(&[("ep-0", Pending), ("ep-1", InProgress), ("ep-2", Pending), ("ep-3", InProgress)])
        );
        assert!(!s.tick_set(set.id, params, t(1000)).await.unwrap());

        // Back online: released on the next tick, though slots were free all along.
        s.touch_endpoint("ep-0", t(1001)).await.unwrap();
        assert!(s.tick_set(set.id, params, t(1001)).await.unwrap());
        assert_eq!(
            states(s, set.id).await,
            expect(&[("ep-0", InProgress), ("ep-1", InProgress), ("ep-2", Pending), ("ep-3", InProgress)])
        );
    }
}

#[tokio::test]
async fn tick_settles_members_already_at_the_version_without_a_slot() {
    for b in backends().await {
        let s = b.start("tick_settles_members_already_at_the_version_without_a_slot");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1", "ep-2", "ep-3"]).await;
        install(s, "ep-0", TARGET, t(0)).await;
        install(s, "ep-1", FROM, t(0)).await;
        install(s, "ep-2", "3.0.0", t(0)).await;
        // ep-3 does not have the product yet: it is upgraded like any other.

        assert!(s.tick_set(set.id, PARAMS, t(1)).await.unwrap());
        assert_eq!(
            states(s, set.id).await,
            expect(&[("ep-0", Succeeded), ("ep-1", InProgress), ("ep-2", Failed), ("ep-3", Pending)])
        );
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members[0],
            MemberRecord {
                endpoint_id: "ep-0".to_string(),
                rank: 0,
                member: Member {
                    state: Succeeded,
                    attempts: 0,
                    reason: Some("already at 2.0.0".to_string()),
                    deferrals: 0
                },
                released_at: None,
                last_report_at: None,
            }
        );
        assert_eq!(
            members[2].member.reason.as_deref(),
            Some("installed 3.0.0 is newer than 2.0.0; an Upgrade Set never downgrades")
        );
        // The skips took no slot: ep-1 holds the only one.
        assert_eq!(in_flight(s, set.id).await, ["ep-1"]);
    }
}

#[tokio::test]
async fn tick_refuses_endpoints_older_than_min_from() {
    for b in backends().await {
        let s = b.start("tick_refuses_endpoints_older_than_min_from");
        let pkg = PackageRecord { min_from: Some("1.5.0".to_string()), ..package(PRODUCT, TARGET, t(0)) };
        s.insert_package(&pkg).await.unwrap();
        online_endpoints(s, &["ep-0", "ep-1"]).await;
        install(s, "ep-0", FROM, t(0)).await;
        install(s, "ep-1", "1.5.0", t(0)).await;
        let set = s.create_set(&new_set("wave-1", 2), &ranked(&["ep-0", "ep-1"]), t(0)).await.unwrap();

        assert!(s.tick_set(set.id, PARAMS, t(1)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Failed), ("ep-1", InProgress)]));
        assert_eq!(
            s.set_members(set.id).await.unwrap()[0].member.reason.as_deref(),
            Some("installed 1.0.0 is older than 1.5.0, the oldest version this package upgrades from")
        );
    }
}

#[tokio::test]
async fn tick_times_out_silent_members_and_frees_their_slots() {
    for b in backends().await {
        let s = b.start("tick_times_out_silent_members_and_frees_their_slots");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1", "ep-2"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        let started = report(set.id, 1, ReportKindRecord::AttemptStarted, None, t(3));
        s.record_report("ep-0", &started, t(10)).await.unwrap();

        // Silence is counted from the last report the server received (t(10)), not the release.
        assert!(!s.tick_set(set.id, PARAMS, t(609)).await.unwrap());
        assert_eq!(in_flight(s, set.id).await, ["ep-0"]);
        assert!(s.tick_set(set.id, PARAMS, t(610)).await.unwrap());
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members[0],
            MemberRecord {
                endpoint_id: "ep-0".to_string(),
                rank: 0,
                member: Member {
                    state: TimedOut,
                    attempts: 1,
                    reason: Some("no report for 600 s during attempt 1; slot freed".to_string()),
                    deferrals: 0,
                },
                released_at: Some(t(0)),
                last_report_at: Some(t(10)),
            }
        );
        // The freed slot went to the next member in the same tick.
        assert_eq!((members[1].member.state, members[1].released_at), (InProgress, Some(t(610))));

        // A member that never started goes back to pending, behind those never released.
        assert!(!s.tick_set(set.id, PARAMS, t(1209)).await.unwrap());
        assert!(s.tick_set(set.id, PARAMS, t(1210)).await.unwrap());
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members[1].member,
            Member {
                state: Pending,
                attempts: 0,
                reason: Some("released but silent for 600 s; will be released again later".to_string()),
                deferrals: 1,
            }
        );
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", TimedOut), ("ep-1", Pending), ("ep-2", InProgress)]));
    }
}

/// A member released but silent before starting goes back to pending; when it is the last
/// member without an outcome, the same tick must not declare the set complete.
#[tokio::test]
async fn set_is_not_completed_while_a_timed_out_member_waits_again() {
    for b in backends().await {
        let s = b.start("set_is_not_completed_while_a_timed_out_member_waits_again");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        // The agent never reports; at the stuck timeout the member loses its slot.
        assert!(s.tick_set(set.id, PARAMS, t(600)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Pending)]));
        let record = s.get_set_by_name("wave-1").await.unwrap();
        assert_eq!(record.state, SetState::Active, "completed with a member that never got the package");
        // And it is released again on a later tick.
        assert!(s.tick_set(set.id, PARAMS, t(601)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", InProgress)]));
    }
}

#[tokio::test]
async fn tick_completes_the_set_when_every_member_is_done() {
    for b in backends().await {
        let s = b.start("tick_completes_the_set_when_every_member_is_done");
        let set = fleet(s, "wave-1", 2, &["ep-0", "ep-1"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        for (id, outcome) in [("ep-0", Outcome::Succeeded), ("ep-1", Outcome::RolledBack)] {
            s.record_report(id, &report(set.id, 1, ReportKindRecord::AttemptStarted, None, t(1)), t(1)).await.unwrap();
            // One member still in flight: not complete yet.
            assert!(!s.tick_set(set.id, PARAMS, t(2)).await.unwrap());
            let finished = report(set.id, 1, ReportKindRecord::Finished(outcome), Some("health check"), t(3));
            s.record_report(id, &finished, t(3)).await.unwrap();
        }

        assert!(s.tick_set(set.id, PARAMS, t(20)).await.unwrap());
        let done = s.get_set_by_name("wave-1").await.unwrap();
        assert_eq!(
            done,
            SetRecord {
                state: SetState::Completed,
                state_reason: Some("every endpoint has an outcome".to_string()),
                finished_at: Some(t(20)),
                ..set.clone()
            }
        );
        assert!(s.live_set_ids().await.unwrap().is_empty());
        assert!(!s.tick_set(set.id, PARAMS, t(30)).await.unwrap());
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), done);
    }
}

#[tokio::test]
async fn tick_does_nothing_while_paused() {
    for b in backends().await {
        let s = b.start("tick_does_nothing_while_paused");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1"]).await;
        s.change_set_state("wave-1", SetEvent::Pause, "hold", t(1)).await.unwrap();
        let before = s.set_members(set.id).await.unwrap();
        assert!(!s.tick_set(set.id, PARAMS, t(2)).await.unwrap());
        assert_eq!(s.set_members(set.id).await.unwrap(), before);
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap().state, SetState::Paused);

        s.change_set_state("wave-1", SetEvent::Resume, "go", t(3)).await.unwrap();
        assert!(s.tick_set(set.id, PARAMS, t(4)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", InProgress), ("ep-1", Pending)]));

        // Paused with a member in flight: it may finish, but its slot is not handed on.
        s.change_set_state("wave-1", SetEvent::Pause, "hold", t(5)).await.unwrap();
        s.record_report("ep-0", &report(set.id, 1, ReportKindRecord::AttemptStarted, None, t(6)), t(6)).await.unwrap();
        let finished = report(set.id, 1, ReportKindRecord::Finished(Outcome::Succeeded), None, t(7));
        s.record_report("ep-0", &finished, t(7)).await.unwrap();
        assert!(!s.tick_set(set.id, PARAMS, t(8)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Succeeded), ("ep-1", Pending)]));
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap().state, SetState::Paused);
    }
}

#[tokio::test]
async fn scheduled_set_starts_at_its_start_time() {
    for b in backends().await {
        let s = b.start("scheduled_set_starts_at_its_start_time");
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        online_endpoints(s, &["ep-0", "ep-1"]).await;
        let spec = NewSet { start_at: Some(t(100)), ..new_set("wave-1", 1) };
        let set = s.create_set(&spec, &ranked(&["ep-0", "ep-1"]), t(0)).await.unwrap();
        assert_eq!(set.state, SetState::Scheduled);

        assert!(!s.tick_set(set.id, PARAMS, t(99)).await.unwrap());
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), set);
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Pending), ("ep-1", Pending)]));

        assert!(s.tick_set(set.id, PARAMS, t(100)).await.unwrap());
        let started = s.get_set_by_name("wave-1").await.unwrap();
        assert_eq!(
            (started.state, started.state_reason.as_deref(), started.finished_at),
            (SetState::Active, Some("start time reached"), None)
        );
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", InProgress), ("ep-1", Pending)]));
    }
}

#[tokio::test]
async fn one_slot_per_endpoint_across_sets() {
    for b in backends().await {
        let s = b.start("one_slot_per_endpoint_across_sets");
        let a = fleet(s, "a", 1, &["ep-0"]).await;
        online_endpoints(s, &["ep-1"]).await;
        let b_set = s.create_set(&new_set("b", 2), &ranked(&["ep-0", "ep-1"]), t(0)).await.unwrap();

        assert!(s.tick_set(a.id, PARAMS, t(1)).await.unwrap());
        assert!(s.tick_set(b_set.id, PARAMS, t(2)).await.unwrap());
        // ep-0 upgrades in `a`, so `b` leaves it waiting though it has a free slot.
        assert_eq!(states(s, b_set.id).await, expect(&[("ep-0", Pending), ("ep-1", InProgress)]));
        assert!(!s.tick_set(b_set.id, PARAMS, t(3)).await.unwrap());
        assert_eq!(s.assignment_for("ep-0").await.unwrap().map(|(set, _)| set.id), Some(a.id));

        s.record_report("ep-0", &report(a.id, 1, ReportKindRecord::AttemptStarted, None, t(4)), t(4)).await.unwrap();
        let finished = report(a.id, 1, ReportKindRecord::Finished(Outcome::Succeeded), None, t(5));
        s.record_report("ep-0", &finished, t(5)).await.unwrap();
        assert!(in_flight(s, a.id).await.is_empty());
        assert!(s.tick_set(b_set.id, PARAMS, t(6)).await.unwrap());
        assert_eq!(
            states(s, b_set.id).await,
            expect(&[("ep-0", InProgress), ("ep-1", InProgress)]),
            "free of `a`, ep-0 gets its slot in `b`"
        );
        assert_eq!(s.assignment_for("ep-0").await.unwrap().map(|(set, _)| set.id), Some(b_set.id));
    }
}

/// Cancelling lets members already released finish, but a silent one must still lose its slot
/// at the stuck timeout: otherwise the endpoint stays "busy elsewhere" for every other set.
#[tokio::test]
async fn cancelled_set_still_frees_a_silent_slot() {
    for b in backends().await {
        let s = b.start("cancelled_set_still_frees_a_silent_slot");
        let a = fleet(s, "a", 1, &["ep-0"]).await;
        assert!(s.tick_set(a.id, PARAMS, t(0)).await.unwrap());
        s.change_set_state("a", SetEvent::Cancel, "wrong build", t(1)).await.unwrap();
        let b_set = s.create_set(&new_set("b", 1), &ranked(&["ep-0"]), t(2)).await.unwrap();

        // Long past the stuck timeout (600 s) of the silent member in `a`.
        s.touch_endpoint("ep-0", t(5000)).await.unwrap();
        for set_id in s.live_set_ids().await.unwrap() {
            s.tick_set(set_id, PARAMS, t(5000)).await.unwrap();
        }
        s.tick_set(a.id, PARAMS, t(5000)).await.unwrap();
        assert_eq!(in_flight(s, a.id).await, Vec::<String>::new(), "the cancelled set still holds ep-0's slot");
        assert_eq!(states(s, b_set.id).await, expect(&[("ep-0", InProgress)]));
    }
}

#[tokio::test]
async fn tick_releases_only_inside_the_maintenance_window() {
    for b in backends().await {
        let s = b.start("tick_releases_only_inside_the_maintenance_window");
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        online_endpoints(s, &["ep-0"]).await;
        // t(0) is Friday 2027-01-15 08:00 UTC: the window opens an hour later.
        let spec = NewSet { window: Some("Fri 09:00-10:00 UTC".to_string()), ..new_set("windowed", 1) };
        let set = s.create_set(&spec, &ranked(&["ep-0"]), t(0)).await.unwrap();
        assert!(!s.tick_set(set.id, PARAMS, t(3599)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Pending)]));
        assert!(s.tick_set(set.id, PARAMS, t(3600)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", InProgress)]));
    }
}
