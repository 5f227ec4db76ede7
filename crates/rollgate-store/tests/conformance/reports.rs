//! Conformance: agent reports (`record_report`), attempt history (`history`) and assignments
//! (`assignment_for`).

use rollgate_core::member::{Applied, Member, MemberError, MemberState, MemberState::*, Outcome};
use rollgate_store::{AttemptRecord, MemberRecord, ReportKindRecord, Store, StoreError};

use crate::{backends, expect, fleet, in_flight, report, states, t, FROM, PARAMS, PRODUCT, TARGET};

use ReportKindRecord::{AttemptFailed, AttemptStarted, Finished, Heartbeat};

/// Everything a report could change: the set's members and the endpoint's history.
async fn snapshot(s: &dyn Store, set_id: i64, endpoint_id: &str) -> (Vec<MemberRecord>, Vec<AttemptRecord>) {
    (s.set_members(set_id).await.unwrap(), s.history(endpoint_id).await.unwrap())
}

fn no_slot(err: &StoreError, state: MemberState) -> bool {
    matches!(err, StoreError::Member(MemberError::NoSlot(s)) if *s == state)
}

#[tokio::test]
async fn attempt_started_needs_a_slot() {
    for b in backends().await {
        let s = b.start("attempt_started_needs_a_slot");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1"]).await;
        let start_1 = report(set.id, 1, AttemptStarted, None, t(5));

        let before = snapshot(s, set.id, "ep-0").await;
        let err = s.record_report("ep-0", &start_1, t(1)).await.unwrap_err();
        assert!(no_slot(&err, Pending), "{err:?}");
        assert_eq!(snapshot(s, set.id, "ep-0").await, before, "a refused report changed something");

        assert!(s.tick_set(set.id, PARAMS, t(2)).await.unwrap());
        let err = s.record_report("ep-1", &start_1, t(3)).await.unwrap_err();
        assert!(no_slot(&err, Pending), "{err:?}");
        assert!(s.history("ep-1").await.unwrap().is_empty());

        assert_eq!(s.record_report("ep-0", &start_1, t(6)).await.unwrap(), Applied::Changed);
        let members = s.set_members(set.id).await.unwrap();
        assert_eq!(
            members[0],
            MemberRecord {
                endpoint_id: "ep-0".to_string(),
                rank: 0,
                member: Member { state: InProgress, attempts: 1, reason: None, deferrals: 0 },
                released_at: Some(t(2)),
                last_report_at: Some(t(6)),
            }
        );
        assert_eq!(
            s.history("ep-0").await.unwrap(),
            vec![AttemptRecord {
                set_id: set.id,
                set_name: "wave-1".to_string(),
                attempt: 1,
                product: PRODUCT.to_string(),
                from_version: Some(FROM.to_string()),
                to_version: TARGET.to_string(),
                started_at: t(5),
                finished_at: None,
                outcome: "in_progress".to_string(),
                reason: None,
            }]
        );

        // Timed out mid-attempt, the slot is gone: no new attempt may start.
        assert!(s.tick_set(set.id, PARAMS, t(606)).await.unwrap());
        let before = snapshot(s, set.id, "ep-0").await;
        let err = s.record_report("ep-0", &report(set.id, 2, AttemptStarted, None, t(607)), t(607)).await.unwrap_err();
        assert!(no_slot(&err, TimedOut), "{err:?}");
        assert_eq!(snapshot(s, set.id, "ep-0").await, before);
    }
}

#[tokio::test]
async fn reports_for_unknown_sets_or_non_members_are_not_found() {
    for b in backends().await {
        let s = b.start("reports_for_unknown_sets_or_non_members_are_not_found");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        crate::online_endpoints(s, &["outsider"]).await;
        let err =
            s.record_report("ep-0", &report(set.id + 100, 1, AttemptStarted, None, t(1)), t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = s.record_report("outsider", &report(set.id, 1, AttemptStarted, None, t(1)), t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert!(s.history("outsider").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn duplicate_reports_are_unchanged_and_leave_history_alone() {
    for b in backends().await {
        let s = b.start("duplicate_reports_are_unchanged_and_leave_history_alone");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());

        let script = [
            report(set.id, 1, AttemptStarted, None, t(1)),
            report(set.id, 1, AttemptFailed, Some("download: hash mismatch"), t(2)),
            report(set.id, 2, AttemptStarted, None, t(3)),
            report(set.id, 2, Finished(Outcome::Succeeded), None, t(4)),
        ];
        for (i, r) in script.iter().enumerate() {
            let now = t(10 + i as i64);
            assert_eq!(s.record_report("ep-0", r, now).await.unwrap(), Applied::Changed, "{r:?}");
            let after_first = snapshot(s, set.id, "ep-0").await;
            // A retry of the same report (and later, of every earlier one) changes nothing,
            // not even the time of the last report.
            for retry in &script[..=i] {
                let later = t(100 + i as i64);
                assert_eq!(
                    s.record_report("ep-0", retry, later).await.unwrap(),
                    Applied::Unchanged,
                    "retry of {retry:?}"
                );
                assert_eq!(snapshot(s, set.id, "ep-0").await, after_first, "retry of {retry:?} changed something");
            }
        }
        let (members, history) = snapshot(s, set.id, "ep-0").await;
        assert_eq!(members[0].member, Member { state: Succeeded, attempts: 2, reason: None, deferrals: 0 });
        assert_eq!(members[0].last_report_at, Some(t(13)));
        let outcomes: Vec<_> = history.iter().map(|a| (a.attempt, a.outcome.as_str(), a.finished_at)).collect();
        assert_eq!(outcomes, [(1, "failed", Some(t(2))), (2, "succeeded", Some(t(4)))]);
    }
}

#[tokio::test]
async fn failure_then_rollback_is_recorded_in_history() {
    for b in backends().await {
        let s = b.start("failure_then_rollback_is_recorded_in_history");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());

        // The agent's clock runs 1000 s ahead of the server's; history keeps the agent's.
        let rollback_reason = "rolled back to 1.0.0 after 2 attempt(s); last: health: exit 1";
        let script = [
            (report(set.id, 1, AttemptStarted, None, t(1001)), t(1)),
            (report(set.id, 1, AttemptFailed, Some("health: exit 1"), t(1002)), t(2)),
            (report(set.id, 2, AttemptStarted, None, t(1003)), t(3)),
            (report(set.id, 2, Finished(Outcome::RolledBack), Some(rollback_reason), t(1004)), t(4)),
        ];
        for (r, now) in &script {
            assert_eq!(s.record_report("ep-0", r, *now).await.unwrap(), Applied::Changed, "{r:?}");
        }

        let attempt = |n, started, finished, outcome: &str, reason: &str| AttemptRecord {
            set_id: set.id,
            set_name: "wave-1".to_string(),
            attempt: n,
            product: PRODUCT.to_string(),
            from_version: Some(FROM.to_string()),
            to_version: TARGET.to_string(),
            started_at: started,
            finished_at: Some(finished),
            outcome: outcome.to_string(),
            reason: Some(reason.to_string()),
        };
        assert_eq!(
            s.history("ep-0").await.unwrap(),
            vec![
                attempt(1, t(1001), t(1002), "failed", "health: exit 1"),
                attempt(2, t(1003), t(1004), "rolled_back", rollback_reason),
            ]
        );
        assert_eq!(
            s.set_members(set.id).await.unwrap()[0],
            MemberRecord {
                endpoint_id: "ep-0".to_string(),
                rank: 0,
                member: Member {
                    state: RolledBack,
                    attempts: 2,
                    reason: Some(rollback_reason.to_string()),
                    deferrals: 0
                },
                released_at: Some(t(0)),
                last_report_at: Some(t(4)),
            }
        );
        assert!(s.history("ep-1").await.unwrap().is_empty(), "history is per endpoint");
    }
}

#[tokio::test]
async fn finished_report_frees_the_slot_for_the_next_tick() {
    for b in backends().await {
        let s = b.start("finished_report_frees_the_slot_for_the_next_tick");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1", "ep-2"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        assert!(!s.tick_set(set.id, PARAMS, t(1)).await.unwrap());

        s.record_report("ep-0", &report(set.id, 1, AttemptStarted, None, t(2)), t(2)).await.unwrap();
        assert!(!s.tick_set(set.id, PARAMS, t(3)).await.unwrap(), "a started attempt still holds its slot");
        let gave_up = report(set.id, 1, Finished(Outcome::Failed), Some("gave up after 1 attempt(s)"), t(4));
        assert_eq!(s.record_report("ep-0", &gave_up, t(4)).await.unwrap(), Applied::Changed);
        assert!(in_flight(s, set.id).await.is_empty());

        assert!(s.tick_set(set.id, PARAMS, t(5)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Failed), ("ep-1", InProgress), ("ep-2", Pending)]));
    }
}

#[tokio::test]
async fn conflicting_final_outcome_is_refused() {
    for b in backends().await {
        let s = b.start("conflicting_final_outcome_is_refused");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        s.record_report("ep-0", &report(set.id, 1, AttemptStarted, None, t(1)), t(1)).await.unwrap();
        s.record_report("ep-0", &report(set.id, 1, Finished(Outcome::Succeeded), None, t(2)), t(2)).await.unwrap();

        let before = snapshot(s, set.id, "ep-0").await;
        for (outcome, reported) in [(Outcome::RolledBack, RolledBack), (Outcome::Failed, Failed)] {
            let err = s
                .record_report("ep-0", &report(set.id, 1, Finished(outcome), Some("late"), t(3)), t(3))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Member(MemberError::Conflict { recorded: Succeeded, reported: r }) if r == reported),
                "{err:?}"
            );
            assert_eq!(snapshot(s, set.id, "ep-0").await, before, "a refused outcome changed something");
        }
    }
}

#[tokio::test]
async fn assignment_only_while_in_progress() {
    for b in backends().await {
        let s = b.start("assignment_only_while_in_progress");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1"]).await;
        assert_eq!(s.assignment_for("ep-0").await.unwrap(), None, "pending");
        assert_eq!(s.assignment_for("nobody").await.unwrap(), None, "unknown endpoint");

        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        let expected =
            Some((s.get_set_by_name("wave-1").await.unwrap(), s.get_package(PRODUCT, TARGET).await.unwrap()));
        assert_eq!(s.assignment_for("ep-0").await.unwrap(), expected);
        assert_eq!(s.assignment_for("ep-1").await.unwrap(), None, "still waiting for a slot");

        s.record_report("ep-0", &report(set.id, 1, AttemptStarted, None, t(1)), t(1)).await.unwrap();
        assert_eq!(s.assignment_for("ep-0").await.unwrap(), expected);
        s.record_report("ep-0", &report(set.id, 1, Finished(Outcome::Succeeded), None, t(2)), t(2)).await.unwrap();
        assert_eq!(s.assignment_for("ep-0").await.unwrap(), None, "finished");

        // Released, silent, timed out: back to pending and no longer assigned.
        assert!(s.tick_set(set.id, PARAMS, t(3)).await.unwrap());
        assert!(s.assignment_for("ep-1").await.unwrap().is_some());
        assert!(s.tick_set(set.id, PARAMS, t(603)).await.unwrap());
        assert_eq!(states(s, set.id).await[1], ("ep-1".to_string(), Pending));
        assert_eq!(s.assignment_for("ep-1").await.unwrap(), None, "timed out");
    }
}

#[tokio::test]
async fn heartbeats_keep_the_slot_and_a_timeout_closes_the_attempt() {
    for b in backends().await {
        let s = b.start("heartbeats_keep_the_slot_and_a_timeout_closes_the_attempt");
        let set = fleet(s, "wave-1", 1, &["ep-0", "ep-1"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        s.record_report("ep-0", &report(set.id, 1, AttemptStarted, None, t(10)), t(10)).await.unwrap();
        assert_eq!(
            s.record_report("ep-0", &report(set.id, 1, Heartbeat, None, t(500)), t(500)).await.unwrap(),
            Applied::Changed
        );
        assert_eq!(s.set_members(set.id).await.unwrap()[0].last_report_at, Some(t(500)));

        // Silence counts from the heartbeat: 500 s at t(1000), 600 s at t(1100).
        assert!(!s.tick_set(set.id, PARAMS, t(1000)).await.unwrap());
        assert!(s.tick_set(set.id, PARAMS, t(1100)).await.unwrap());
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", TimedOut), ("ep-1", InProgress)]));
        let timed_out = AttemptRecord {
            set_id: set.id,
            set_name: "wave-1".to_string(),
            attempt: 1,
            product: PRODUCT.to_string(),
            from_version: Some(FROM.to_string()),
            to_version: TARGET.to_string(),
            started_at: t(10),
            finished_at: Some(t(1100)),
            outcome: "timed_out".to_string(),
            reason: Some("no report for 600 s during attempt 1; slot freed".to_string()),
        };
        assert_eq!(s.history("ep-0").await.unwrap(), vec![timed_out.clone()]);

        // The slot is gone: a heartbeat is refused, but a late outcome still counts.
        let err = s.record_report("ep-0", &report(set.id, 1, Heartbeat, None, t(1101)), t(1101)).await.unwrap_err();
        assert!(no_slot(&err, TimedOut), "{err:?}");
        let late = report(set.id, 1, Finished(Outcome::Succeeded), None, t(1150));
        assert_eq!(s.record_report("ep-0", &late, t(1150)).await.unwrap(), Applied::Changed);
        assert_eq!(states(s, set.id).await, expect(&[("ep-0", Succeeded), ("ep-1", InProgress)]));
        let succeeded =
            AttemptRecord { finished_at: Some(t(1150)), outcome: "succeeded".to_string(), reason: None, ..timed_out };
        assert_eq!(s.history("ep-0").await.unwrap(), vec![succeeded]);
    }
}

#[tokio::test]
async fn attempts_must_come_in_order_within_the_limit() {
    for b in backends().await {
        let s = b.start("attempts_must_come_in_order_within_the_limit");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        let out_of_order = |err: &StoreError, got, expected| matches!(err, StoreError::Member(MemberError::AttemptOutOfOrder { got: g, expected: e, .. }) if *g == got && *e == expected);

        let before = snapshot(s, set.id, "ep-0").await;
        let err = s.record_report("ep-0", &report(set.id, 2, AttemptStarted, None, t(1)), t(1)).await.unwrap_err();
        assert!(out_of_order(&err, 2, 1), "skipping attempt 1: {err:?}");
        let err = s.record_report("ep-0", &report(set.id, 1, AttemptFailed, Some("x"), t(1)), t(1)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Member(MemberError::AttemptNotStarted { got: 1, started: 0 })),
            "failing an attempt never started: {err:?}"
        );
        assert_eq!(snapshot(s, set.id, "ep-0").await, before);

        // The set allows 3 attempts (see `new_set`); a fourth is refused.
        for n in 1..=3 {
            s.record_report(
                "ep-0",
                &report(set.id, n, AttemptStarted, None, t(i64::from(n) * 10)),
                t(i64::from(n) * 10),
            )
            .await
            .unwrap();
            s.record_report(
                "ep-0",
                &report(set.id, n, AttemptFailed, Some("boom"), t(i64::from(n) * 10 + 1)),
                t(i64::from(n) * 10 + 1),
            )
            .await
            .unwrap();
        }
        let before = snapshot(s, set.id, "ep-0").await;
        let err = s.record_report("ep-0", &report(set.id, 4, AttemptStarted, None, t(50)), t(50)).await.unwrap_err();
        assert!(out_of_order(&err, 4, 4), "beyond max_attempts: {err:?}");
        assert_eq!(snapshot(s, set.id, "ep-0").await, before);
        assert_eq!(before.1.len(), 3);
    }
}

#[tokio::test]
async fn report_for_another_version_is_invalid_and_changes_nothing() {
    for b in backends().await {
        let s = b.start("report_for_another_version_is_invalid_and_changes_nothing");
        let set = fleet(s, "wave-1", 1, &["ep-0"]).await;
        assert!(s.tick_set(set.id, PARAMS, t(0)).await.unwrap());
        let before = snapshot(s, set.id, "ep-0").await;
        let wrong = rollgate_store::ReportRecord {
            to_version: "2.0.1".to_string(),
            ..report(set.id, 1, AttemptStarted, None, t(1))
        };
        let err = s.record_report("ep-0", &wrong, t(1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert_eq!(snapshot(s, set.id, "ep-0").await, before);
    }
}
