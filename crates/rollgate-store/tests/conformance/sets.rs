//! Conformance: upgrade sets (`create_set`, `get_set_by_name`, `list_sets`, `live_set_ids`,
//! `set_members`, `member_states`, `change_set_state`).

use rollgate_core::member::{Member, MemberState};
use rollgate_core::set::{SetEvent, SetState, SetTransitionError};
use rollgate_store::{MemberRecord, NewSet, SetRecord, Store, StoreError};

use crate::{backends, fleet, install, new_set, online_endpoints, package, ranked, t, PARAMS, PRODUCT, TARGET};

/// The package and three online endpoints, the ground most set scenarios stand on.
async fn ground(s: &dyn Store) {
    s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
    online_endpoints(s, &["ep-a", "ep-b", "ep-c"]).await;
}

#[tokio::test]
async fn create_set_stores_spec_and_members_by_rank() {
    for b in backends().await {
        let s = b.start("create_set_stores_spec_and_members_by_rank");
        ground(s).await;
        let spec =
            NewSet { window: Some("Mon 01:00-02:00 UTC".to_string()), seed: u64::MAX - 1, ..new_set("wave-1", 2) };
        // Given out of rank order; read back in rank order.
        let members = vec![("ep-c".to_string(), 0), ("ep-a".to_string(), 2), ("ep-b".to_string(), 1)];
        let set = s.create_set(&spec, &members, t(10)).await.unwrap();

        assert_eq!(
            set,
            SetRecord {
                id: set.id,
                spec: spec.clone(),
                state: SetState::Active,
                state_reason: Some("created".to_string()),
                created_at: t(10),
                finished_at: None,
            }
        );
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), set);
        assert_eq!(s.list_sets().await.unwrap(), vec![set.clone()]);

        let pending = |id: &str, rank| MemberRecord {
            endpoint_id: id.to_string(),
            rank,
            member: Member::pending(),
            released_at: None,
            last_report_at: None,
        };
        assert_eq!(
            s.set_members(set.id).await.unwrap(),
            vec![pending("ep-c", 0), pending("ep-b", 1), pending("ep-a", 2)]
        );
        let states: Vec<(String, MemberState)> =
            ["ep-c", "ep-b", "ep-a"].iter().map(|id| (id.to_string(), MemberState::Pending)).collect();
        assert_eq!(s.member_states(set.id).await.unwrap(), states, "the same members, by rank");

        // A second set is listed after the first, with its own members.
        let second = s.create_set(&new_set("wave-2", 1), &ranked(&["ep-a"]), t(20)).await.unwrap();
        assert_ne!(second.id, set.id);
        assert_eq!(s.list_sets().await.unwrap(), vec![set, second.clone()]);
        assert_eq!(s.set_members(second.id).await.unwrap(), vec![pending("ep-a", 0)]);
    }
}

#[tokio::test]
async fn duplicate_set_name_conflicts() {
    for b in backends().await {
        let s = b.start("duplicate_set_name_conflicts");
        ground(s).await;
        let first = s.create_set(&new_set("wave-1", 2), &ranked(&["ep-a"]), t(10)).await.unwrap();
        let err = s.create_set(&new_set("wave-1", 5), &ranked(&["ep-b", "ep-c"]), t(20)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(s.list_sets().await.unwrap(), vec![first.clone()]);
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), first);
        assert_eq!(s.set_members(first.id).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn unknown_set_is_not_found() {
    for b in backends().await {
        let s = b.start("unknown_set_is_not_found");
        let err = s.get_set_by_name("nope").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = s.change_set_state("nope", SetEvent::Pause, "operator", t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = s.tick_set(4242, PARAMS, t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert!(s.set_members(4242).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn start_at_in_the_future_schedules_the_set() {
    for b in backends().await {
        let s = b.start("start_at_in_the_future_schedules_the_set");
        ground(s).await;
        let cases = [
            ("future", Some(t(101)), SetState::Scheduled),
            ("now", Some(t(100)), SetState::Active),
            ("past", Some(t(5)), SetState::Active),
            ("none", None, SetState::Active),
        ];
        for (name, start_at, state) in cases {
            let spec = NewSet { start_at, ..new_set(name, 1) };
            let set = s.create_set(&spec, &ranked(&["ep-a"]), t(100)).await.unwrap();
            assert_eq!(set.state, state, "start_at {start_at:?} at t(100)");
            assert_eq!(set.spec.start_at, start_at);
            assert_eq!(s.get_set_by_name(name).await.unwrap().state, state);
        }
    }
}

#[tokio::test]
async fn operator_commands_follow_the_state_machine() {
    for b in backends().await {
        let s = b.start("operator_commands_follow_the_state_machine");
        ground(s).await;
        let set = s.create_set(&new_set("wave-1", 1), &ranked(&["ep-a"]), t(0)).await.unwrap();

        let paused = s.change_set_state("wave-1", SetEvent::Pause, "change freeze", t(10)).await.unwrap();
        assert_eq!(
            paused,
            SetRecord { state: SetState::Paused, state_reason: Some("change freeze".to_string()), ..set.clone() }
        );
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), paused);

        let resumed = s.change_set_state("wave-1", SetEvent::Resume, "freeze over", t(20)).await.unwrap();
        assert_eq!(
            resumed,
            SetRecord { state: SetState::Active, state_reason: Some("freeze over".to_string()), ..set.clone() }
        );

        let cancelled = s.change_set_state("wave-1", SetEvent::Cancel, "wrong build", t(30)).await.unwrap();
        assert_eq!(
            cancelled,
            SetRecord {
                state: SetState::Cancelled,
                state_reason: Some("wrong build".to_string()),
                finished_at: Some(t(30)),
                ..set.clone()
            }
        );

        // A scheduled set can be paused, resumed straight to active, and cancelled.
        let later = s
            .create_set(&NewSet { start_at: Some(t(1000)), ..new_set("later", 1) }, &ranked(&["ep-b"]), t(0))
            .await
            .unwrap();
        assert_eq!(later.state, SetState::Scheduled);
        let p = s.change_set_state("later", SetEvent::Pause, "hold", t(40)).await.unwrap();
        assert_eq!(p.state, SetState::Paused);
        let c = s.change_set_state("later", SetEvent::Cancel, "dropped", t(50)).await.unwrap();
        assert_eq!((c.state, c.finished_at), (SetState::Cancelled, Some(t(50))));
    }
}

/// True when `err` is the typed refusal of `event` in `state`.
fn refused(err: &StoreError, state: SetState, event: SetEvent) -> bool {
    matches!(err, StoreError::SetTransition(e) if *e == SetTransitionError { state, event })
}

#[tokio::test]
async fn illegal_commands_are_refused_and_change_nothing() {
    for b in backends().await {
        let s = b.start("illegal_commands_are_refused_and_change_nothing");
        ground(s).await;
        s.create_set(&new_set("wave-1", 1), &ranked(&["ep-a"]), t(0)).await.unwrap();

        let before = s.get_set_by_name("wave-1").await.unwrap();
        let err = s.change_set_state("wave-1", SetEvent::Resume, "resume what?", t(10)).await.unwrap_err();
        assert!(refused(&err, SetState::Active, SetEvent::Resume), "{err:?}");
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), before);

        s.change_set_state("wave-1", SetEvent::Pause, "hold", t(20)).await.unwrap();
        let before = s.get_set_by_name("wave-1").await.unwrap();
        let err = s.change_set_state("wave-1", SetEvent::Pause, "hold again", t(30)).await.unwrap_err();
        assert!(refused(&err, SetState::Paused, SetEvent::Pause), "{err:?}");
        assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), before);

        s.change_set_state("wave-1", SetEvent::Cancel, "stop", t(40)).await.unwrap();
        let before = s.get_set_by_name("wave-1").await.unwrap();
        assert_eq!(before.finished_at, Some(t(40)));
        for event in [SetEvent::Start, SetEvent::Pause, SetEvent::Resume, SetEvent::Cancel, SetEvent::Finish] {
            let err = s.change_set_state("wave-1", event, "too late", t(50)).await.unwrap_err();
            assert!(refused(&err, SetState::Cancelled, event), "{event} on a cancelled set: {err:?}");
            assert_eq!(s.get_set_by_name("wave-1").await.unwrap(), before, "{event} changed a cancelled set");
        }
        assert_eq!(s.set_members(before.id).await.unwrap()[0].member, Member::pending());
    }
}

#[tokio::test]
async fn live_set_ids_exclude_completed_and_cancelled() {
    for b in backends().await {
        let s = b.start("live_set_ids_exclude_completed_and_cancelled");
        let scheduled = {
            ground(s).await;
            s.create_set(&NewSet { start_at: Some(t(1000)), ..new_set("scheduled", 1) }, &ranked(&["ep-a"]), t(0))
                .await
                .unwrap()
        };
        let active = s.create_set(&new_set("active", 1), &ranked(&["ep-a"]), t(0)).await.unwrap();
        let paused = s.create_set(&new_set("paused", 1), &ranked(&["ep-a"]), t(0)).await.unwrap();
        s.change_set_state("paused", SetEvent::Pause, "hold", t(1)).await.unwrap();
        let cancelled = s.create_set(&new_set("cancelled", 1), &ranked(&["ep-b"]), t(0)).await.unwrap();
        s.change_set_state("cancelled", SetEvent::Cancel, "stop", t(1)).await.unwrap();
        // ep-c already runs the target, so its set completes on the first tick.
        install(s, "ep-c", TARGET, t(0)).await;
        let completed = s.create_set(&new_set("completed", 1), &ranked(&["ep-c"]), t(0)).await.unwrap();
        assert!(s.tick_set(completed.id, PARAMS, t(2)).await.unwrap());
        assert_eq!(s.get_set_by_name("completed").await.unwrap().state, SetState::Completed);

        assert_eq!(s.live_set_ids().await.unwrap(), vec![scheduled.id, active.id, paused.id]);
        assert!(!s.live_set_ids().await.unwrap().contains(&cancelled.id));
    }
}

/// `fleet` is the fixture for the scheduler scenarios; check that it sets up what they assume.
#[tokio::test]
async fn fleet_fixture_is_online_and_pending() {
    for b in backends().await {
        let s = b.start("fleet_fixture_is_online_and_pending");
        let set = fleet(s, "wave-1", 2, &["ep-b", "ep-a"]).await;
        assert_eq!(set.state, SetState::Active);
        for e in s.list_endpoints().await.unwrap() {
            assert_eq!(e.last_seen, Some(t(0)));
        }
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members.iter().map(|m| (m.endpoint_id.as_str(), m.rank)).collect::<Vec<_>>(),
            [("ep-b", 0), ("ep-a", 1)]
        );
    }
}
