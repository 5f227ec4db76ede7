//! Tests of the campaign month: event scripts in virtual time, each line printed with the state
//! and reason it led to, and the whole transition table.

use expect_test::{expect, Expect};
use jiff::SignedDuration;

use super::*;

/// The month starts at this instant; script times are minutes after it.
const START: &str = "2025-03-12T17:00:00Z";

fn start() -> Timestamp {
    START.parse().unwrap()
}

/// pilot (auto, 60 min soak), extended (manual, 30 min), production (auto, 10 min).
fn three_steps() -> Vec<StepPlan> {
    let step = |name: &str, progression, soak_mins: u64| StepPlan {
        name: name.to_owned(),
        progression,
        soak_secs: soak_mins * 60,
    };
    vec![
        step("pilot", Progression::Auto, 60),
        step("extended", Progression::Manual, 30),
        step("production", Progression::Auto, 10),
    ]
}

fn month() -> Month {
    Month::new("2025-03".parse().unwrap(), start(), three_steps()).unwrap()
}

/// Parses one script line, `MINUTES EVENT [ARGS]`, into a time and an event. Besides events,
/// `soak` prints the soak clock and `vuln ...` / `deployable ...` work on approvals.
fn event(words: &[&str]) -> MonthEvent {
    let num = |i: usize| words[i].parse::<usize>().unwrap();
    match words[0] {
        "start" => MonthEvent::Start,
        "start-early" => MonthEvent::StartEarly,
        "pass" => MonthEvent::StepGatePassed { step: num(1), summary: "ok".to_owned() },
        "fail" => MonthEvent::StepGateFailed { step: num(1), in_flight: num(2) as u32, reason: words[3..].join(" ") },
        "approve" => MonthEvent::ApproveStep { step: num(1) },
        "retry" => MonthEvent::RetryStep { step: num(1) },
        "pause" => MonthEvent::Pause { in_flight: num(1) as u32 },
        "drained" => MonthEvent::InFlightDrained,
        "resume" => MonthEvent::Resume,
        "stop" => MonthEvent::Stop,
        other => panic!("unknown event {other}"),
    }
}

fn mins(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}

/// Runs `script` against a fresh three-step month and prints one line per script line.
fn check(script: &str, expect: Expect) {
    let mut m = month();
    let mut out = String::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let minutes: i64 = words[0].parse().unwrap();
        let now = start().checked_add(SignedDuration::from_mins(minutes)).unwrap();
        let rest = &words[1..];
        let result = match rest[0] {
            "soak" => format!(
                "soak {} done={} due={}",
                mins(m.soak_elapsed_at(now)),
                m.soak_done_at(now),
                m.soak_due_at().map_or("-".to_owned(), |t| format!("+{}m", t.duration_since(start()).as_mins()))
            ),
            "vuln" => {
                let decision = match rest[1] {
                    "approve" => VulnDecision::Approve,
                    "disapprove" => VulnDecision::Disapprove,
                    _ => VulnDecision::Reset,
                };
                match m.decide_vuln(rest[2], decision) {
                    Ok(c) => format!("{}: {} -> {}", c.advisory, c.from.as_str(), c.to.as_str()),
                    Err(e) => format!("error: {e}"),
                }
            }
            "deployable" => format!("deployable {:?}", m.deployable(rest[1..].iter().copied())),
            _ => match m.apply(now, event(rest)) {
                Ok(t) => {
                    let requested = if m.requested() != m.effective() {
                        format!(" (requested {})", m.requested())
                    } else {
                        String::new()
                    };
                    format!("{}{requested} [step {} {}]: {}", t.to, t.step, m.phase().as_str(), t.reason)
                }
                Err(e) => format!("error: {e}"),
            },
        };
        out.push_str(&format!("{line:<28} -> {result}\n"));
        // Every state a script reaches survives storage unchanged.
        assert_eq!(Month::restore(&m.snapshot()).as_ref(), Ok(&m), "after `{line}`");
    }
    expect.assert_eq(&out);
}

#[test]
fn damaged_snapshots_are_refused() {
    let mut m = month();
    m.apply(start(), MonthEvent::Start).unwrap();
    let good = m.snapshot();
    type Damage = fn(&mut MonthSnapshot);
    let damage: [(&str, Damage); 6] = [
        ("step past the plan", |s| s.step = 3),
        ("hold without a pause", |s| s.hold = Some(HoldSnapshot::Operator)),
        ("pause without a hold", |s| s.state = "paused".to_owned()),
        ("unknown state", |s| s.state = "sleeping".to_owned()),
        ("soak running while awaiting approval", |s| s.phase = "awaiting-approval".to_owned()),
        ("unreviewed stored", |s| {
            s.vulns.insert("RHSA-1".to_owned(), "unreviewed".to_owned());
        }),
    ];
    for (what, damage) in damage {
        let mut s = good.clone();
        damage(&mut s);
        let err = Month::restore(&s).expect_err(what);
        assert!(err.to_string().starts_with("stored campaign month 2025-03 cannot be restored: "), "{what}: {err}");
    }
    assert_eq!(Month::restore(&good), Ok(m));
}

#[test]
fn a_month_runs_through_all_steps() {
    check(
        "
        -5 start
        0 start
        30 soak
        30 pass 0
        60 pass 0
        60 soak
        89 pass 1
        90 pass 1
        95 pass 2
        95 approve 1
        100 pass 2
        100 soak
        100 pause 0
        ",
        expect![[r#"
            -5 start                     -> error: cannot start in campaign month 2025-03: it starts at 2025-03-12T17:00:00Z
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            30 soak                      -> soak 30m00s done=false due=+60m
            30 pass 0                    -> error: cannot pass the gate of step pilot in campaign month 2025-03: step pilot has soaked 1800 s of 3600 s; a gate passes only after the soak
            60 pass 0                    -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
            60 soak                      -> soak 0m00s done=false due=+90m
            89 pass 1                    -> error: cannot pass the gate of step extended in campaign month 2025-03: step extended has soaked 1740 s of 1800 s; a gate passes only after the soak
            90 pass 1                    -> active [step 1 awaiting-approval]: step extended passed its gate (ok); waiting for approval to start step production
            95 pass 2                    -> error: cannot pass the gate of step production in campaign month 2025-03: the current step is 1 (extended)
            95 approve 1                 -> active [step 2 running]: operator approved step extended; step production is running
            100 pass 2                   -> error: cannot pass the gate of step production in campaign month 2025-03: step production has soaked 300 s of 600 s; a gate passes only after the soak
            100 soak                     -> soak 5m00s done=false due=+105m
            100 pause 0                  -> paused [step 2 running]: paused by operator
        "#]],
    );
    check(
        "
        0 start
        60 pass 0
        90 pass 1
        91 approve 1
        101 pass 2
        102 pause 0
        102 stop
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            60 pass 0                    -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
            90 pass 1                    -> active [step 1 awaiting-approval]: step extended passed its gate (ok); waiting for approval to start step production
            91 approve 1                 -> active [step 2 running]: operator approved step extended; step production is running
            101 pass 2                   -> completed [step 2 running]: step production passed its gate (ok); all 3 steps done
            102 pause 0                  -> error: cannot pause in campaign month 2025-03: it is completed
            102 stop                     -> error: cannot stop in campaign month 2025-03: it is completed
        "#]],
    );
}

/// The soak clock stops at the pause request (Pausing included) and resumes with the month.
#[test]
fn pause_during_soak_stops_the_soak_clock() {
    check(
        "
        0 start
        20 pause 3
        20 soak
        25 pause 1
        30 drained
        30 drained
        200 soak
        200 pass 0
        200 resume
        200 soak
        239 pass 0
        240 soak
        240 pass 0
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            20 pause 3                   -> pausing (requested paused) [step 0 running]: paused by operator; pausing until 3 installs in flight finish
            20 soak                      -> soak 20m00s done=false due=-
            25 pause 1                   -> error: cannot pause in campaign month 2025-03: it is pausing
            30 drained                   -> paused [step 0 running]: in-flight installs finished; paused by operator
            30 drained                   -> error: cannot finish draining in campaign month 2025-03: it is paused
            200 soak                     -> soak 20m00s done=false due=-
            200 pass 0                   -> error: cannot pass the gate of step pilot in campaign month 2025-03: it is paused
            200 resume                   -> active [step 0 running]: resumed by operator; step pilot is running
            200 soak                     -> soak 20m00s done=false due=+240m
            239 pass 0                   -> error: cannot pass the gate of step pilot in campaign month 2025-03: step pilot has soaked 3540 s of 3600 s; a gate passes only after the soak
            240 soak                     -> soak 60m00s done=true due=+240m
            240 pass 0                   -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
        "#]],
    );
}

#[test]
fn resume_while_still_draining_and_pause_while_awaiting_approval() {
    check(
        "
        0 start
        10 pause 2
        15 resume
        60 soak
        65 pass 0
        95 pass 1
        96 pause 0
        97 approve 1
        98 resume
        99 approve 1
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            10 pause 2                   -> pausing (requested paused) [step 0 running]: paused by operator; pausing until 2 installs in flight finish
            15 resume                    -> active [step 0 running]: resumed by operator; step pilot is running
            60 soak                      -> soak 55m00s done=false due=+65m
            65 pass 0                    -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
            95 pass 1                    -> active [step 1 awaiting-approval]: step extended passed its gate (ok); waiting for approval to start step production
            96 pause 0                   -> paused [step 1 awaiting-approval]: paused by operator
            97 approve 1                 -> error: cannot approve step extended in campaign month 2025-03: it was paused by an operator, not by a failed gate; resume it
            98 resume                    -> active [step 1 awaiting-approval]: resumed by operator; step extended is waiting for approval
            99 approve 1                 -> active [step 2 running]: operator approved step extended; step production is running
        "#]],
    );
}

#[test]
fn failed_gate_then_approve_anyway() {
    check(
        "
        0 start
        60 fail 0 4 success rate 0.82 is below 0.95 (41 of 50)
        61 resume
        61 approve 1
        62 approve 0
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            60 fail 0 4 success rate 0.82 is below 0.95 (41 of 50) -> pausing (requested paused) [step 0 running]: step pilot failed its gate: success rate 0.82 is below 0.95 (41 of 50); pausing until 4 installs in flight finish
            61 resume                    -> error: cannot resume in campaign month 2025-03: step pilot failed its gate; approve it anyway, retry it, or stop the month
            61 approve 1                 -> error: cannot approve step extended in campaign month 2025-03: the current step is 0 (pilot)
            62 approve 0                 -> active [step 1 running]: operator approved step pilot despite its failed gate (success rate 0.82 is below 0.95 (41 of 50)); step extended is running
        "#]],
    );
}

#[test]
fn failed_gate_then_retry_restarts_the_soak() {
    check(
        "
        0 start
        60 fail 0 0 error rate 0.2 is above 0.03 (10 of 50 failed)
        70 drained
        80 retry 0
        80 soak
        100 fail 0 0 error rate 0.1 is above 0.03 (5 of 50 failed)
        110 retry 0
        170 pass 0
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            60 fail 0 0 error rate 0.2 is above 0.03 (10 of 50 failed) -> paused [step 0 running]: step pilot failed its gate: error rate 0.2 is above 0.03 (10 of 50 failed)
            70 drained                   -> error: cannot finish draining in campaign month 2025-03: it is paused
            80 retry 0                   -> active [step 0 running]: operator retried step pilot (run 2); its soak starts over
            80 soak                      -> soak 0m00s done=false due=+140m
            100 fail 0 0 error rate 0.1 is above 0.03 (5 of 50 failed) -> paused [step 0 running]: step pilot failed its gate: error rate 0.1 is above 0.03 (5 of 50 failed)
            110 retry 0                  -> active [step 0 running]: operator retried step pilot (run 3); its soak starts over
            170 pass 0                   -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
        "#]],
    );
}

#[test]
fn failed_gate_then_stop() {
    check(
        "
        0 start
        60 fail 0 2 sample 3 can no longer reach the minimum 10
        61 stop
        62 resume
        62 retry 0
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            60 fail 0 2 sample 3 can no longer reach the minimum 10 -> pausing (requested paused) [step 0 running]: step pilot failed its gate: sample 3 can no longer reach the minimum 10; pausing until 2 installs in flight finish
            61 stop                      -> failed [step 0 running]: stopped by operator during step pilot
            62 resume                    -> error: cannot resume in campaign month 2025-03: it is failed
            62 retry 0                   -> error: cannot retry step pilot in campaign month 2025-03: it is failed
        "#]],
    );
}

#[test]
fn paused_before_its_start() {
    check(
        "
        -60 pause 0
        0 start
        10 resume
        10 start
        11 retry 0
        12 approve 0
        ",
        expect![[r#"
            -60 pause 0                  -> paused [step 0 running]: paused by operator before its start
            0 start                      -> error: cannot start in campaign month 2025-03: it is paused
            10 resume                    -> scheduled [step 0 running]: resumed by operator; starts at 2025-03-12T17:00:00Z
            10 start                     -> active [step 0 running]: month 2025-03 started; step pilot is running
            11 retry 0                   -> error: cannot retry step pilot in campaign month 2025-03: it is active
            12 approve 0                 -> error: cannot approve step pilot in campaign month 2025-03: step pilot is still running; its gate has not passed
        "#]],
    );
}

#[test]
fn an_operator_starts_a_month_early() {
    check(
        "
        -600 start
        -600 start-early
        -590 start-early
        ",
        expect![[r#"
            -600 start                   -> error: cannot start in campaign month 2025-03: it starts at 2025-03-12T17:00:00Z
            -600 start-early             -> active [step 0 running]: month 2025-03 started by operator (scheduled for 2025-03-12T17:00:00Z); step pilot is running
            -590 start-early             -> error: cannot start early in campaign month 2025-03: it is active
        "#]],
    );
}

#[test]
fn stale_and_unknown_steps_are_refused() {
    check(
        "
        0 start
        60 pass 5
        60 fail 1 0 late verdict
        60 pass 0
        61 fail 0 0 late verdict
        120 pass 1
        121 pass 1
        122 fail 1 0 verdict after the pass
        ",
        expect![[r#"
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            60 pass 5                    -> error: cannot pass the gate of step #5 in campaign month 2025-03: there is no step 5; the campaign has 3 steps
            60 fail 1 0 late verdict     -> error: cannot fail the gate of step extended in campaign month 2025-03: the current step is 0 (pilot)
            60 pass 0                    -> active [step 1 running]: step pilot passed its gate (ok); step extended is running
            61 fail 0 0 late verdict     -> error: cannot fail the gate of step pilot in campaign month 2025-03: the current step is 1 (extended)
            120 pass 1                   -> active [step 1 awaiting-approval]: step extended passed its gate (ok); waiting for approval to start step production
            121 pass 1                   -> error: cannot pass the gate of step extended in campaign month 2025-03: step extended already passed its gate and is waiting for approval
            122 fail 1 0 verdict after the pass -> error: cannot fail the gate of step extended in campaign month 2025-03: step extended already passed its gate and is waiting for approval
        "#]],
    );
}

#[test]
fn disapproved_vulnerabilities_are_not_deployed() {
    check(
        "
        -10 vuln disapprove CVE-2025-0002
        -10 vuln approve CVE-2025-0003
        -10 deployable CVE-2025-0001 CVE-2025-0002 CVE-2025-0003
        0 start
        10 vuln disapprove CVE-2025-0001
        10 vuln reset CVE-2025-0002
        10 vuln reset CVE-2025-0009
        10 deployable CVE-2025-0001 CVE-2025-0002 CVE-2025-0003
        10 stop
        11 vuln approve CVE-2025-0001
        ",
        expect![[r#"
            -10 vuln disapprove CVE-2025-0002 -> CVE-2025-0002: unreviewed -> disapproved
            -10 vuln approve CVE-2025-0003 -> CVE-2025-0003: unreviewed -> approved
            -10 deployable CVE-2025-0001 CVE-2025-0002 CVE-2025-0003 -> deployable ["CVE-2025-0001", "CVE-2025-0003"]
            0 start                      -> active [step 0 running]: month 2025-03 started; step pilot is running
            10 vuln disapprove CVE-2025-0001 -> CVE-2025-0001: unreviewed -> disapproved
            10 vuln reset CVE-2025-0002  -> CVE-2025-0002: disapproved -> unreviewed
            10 vuln reset CVE-2025-0009  -> CVE-2025-0009: unreviewed -> unreviewed
            10 deployable CVE-2025-0001 CVE-2025-0002 CVE-2025-0003 -> deployable ["CVE-2025-0002", "CVE-2025-0003"]
            10 stop                      -> failed [step 0 running]: stopped by operator during step pilot
            11 vuln approve CVE-2025-0001 -> error: cannot approve vulnerability CVE-2025-0001 in campaign month 2025-03: it is failed
        "#]],
    );
}

#[test]
fn bad_advisory_ids_are_refused() {
    let mut m = month();
    for id in ["", "CVE 2025", "a\nb", &"x".repeat(129)] {
        assert_eq!(m.decide_vuln(id, VulnDecision::Approve), Err(MonthError::BadAdvisoryId { id: id.to_owned() }));
    }
    expect!["bad advisory id `a b`: expected 1 to 128 characters without spaces"]
        .assert_eq(&m.decide_vuln("a b", VulnDecision::Disapprove).unwrap_err().to_string());
    assert_eq!(m.vuln_approval("x"), VulnApproval::Unreviewed);
}

/// A last step with manual progression completes the month only on approval.
#[test]
fn a_manual_last_step_completes_on_approval() {
    let plan = vec![StepPlan { name: "only".to_owned(), progression: Progression::Manual, soak_secs: 0 }];
    let mut m = Month::new("2025-03".parse().unwrap(), start(), plan).unwrap();
    let t = m.apply(start(), MonthEvent::Start).unwrap();
    assert_eq!(t.to_string(), "scheduled -> active: month 2025-03 started; step only is running");
    assert!(m.soak_done_at(start()), "a zero soak is done at once");
    let t = m.apply(start(), MonthEvent::StepGatePassed { step: 0, summary: "ok".to_owned() }).unwrap();
    assert_eq!(t.reason, "step only passed its gate (ok); waiting for approval to complete the month");
    assert!(!m.dispatching());
    let t = m.apply(start(), MonthEvent::ApproveStep { step: 0 }).unwrap();
    assert_eq!(t.to_string(), "active -> completed: operator approved step only; all 1 steps done");
    assert_eq!(Month::new("2025-03".parse().unwrap(), start(), Vec::new()), Err(MonthError::EmptyPlan));
}

/// A refused event leaves the month exactly as it was.
#[test]
fn refusals_change_nothing() {
    let mut m = month();
    m.apply(start(), MonthEvent::Start).unwrap();
    let before = m.clone();
    let later = start().checked_add(SignedDuration::from_mins(5)).unwrap();
    for event in [MonthEvent::Resume, MonthEvent::InFlightDrained, MonthEvent::RetryStep { step: 0 }, MonthEvent::Start]
    {
        assert!(m.apply(later, event).is_err());
        assert_eq!(m, before);
    }
}

/// A clock that steps back (a replica slightly behind) neither panics nor runs the soak back.
#[test]
fn a_clock_stepping_back_does_not_run_the_soak_backwards() {
    let mut m = month();
    let t = |mins: i64| start().checked_add(SignedDuration::from_mins(mins)).unwrap();
    m.apply(t(0), MonthEvent::Start).unwrap();
    m.apply(t(10), MonthEvent::Pause { in_flight: 0 }).unwrap();
    m.apply(t(20), MonthEvent::Resume).unwrap();
    assert_eq!(m.soak_elapsed_at(t(15)), Duration::from_secs(600));
    assert_eq!(m.soak_elapsed_at(t(25)), Duration::from_secs(900));
}

#[test]
fn gate_verdicts_become_events() {
    let passed = GateResult::Passed { summary: "s".to_owned() };
    let failed = GateResult::Failed { reason: "r".to_owned() };
    assert_eq!(
        MonthEvent::from_gate(1, &passed, 0),
        Some(MonthEvent::StepGatePassed { step: 1, summary: "s".to_owned() })
    );
    assert_eq!(
        MonthEvent::from_gate(1, &failed, 2),
        Some(MonthEvent::StepGateFailed { step: 1, reason: "r".to_owned(), in_flight: 2 })
    );
    assert_eq!(MonthEvent::from_gate(1, &GateResult::Soaking, 0), None);
    assert_eq!(MonthEvent::from_gate(1, &GateResult::Waiting { reason: "w".to_owned() }, 0), None);
}

/// Every event in every situation a month can be in, so a change to the table shows as a diff.
#[test]
fn transition_table() {
    let t = |mins: i64| start().checked_add(SignedDuration::from_mins(mins)).unwrap();
    let after = |events: &[MonthEvent]| {
        let mut m = month();
        for (i, e) in events.iter().enumerate() {
            m.apply(t(100 * i as i64), e.clone()).unwrap();
        }
        m
    };
    let failed_gate = MonthEvent::StepGateFailed { step: 0, reason: "bad".to_owned(), in_flight: 0 };
    let situations = [
        ("scheduled", after(&[])),
        ("paused before start", after(&[MonthEvent::Pause { in_flight: 0 }])),
        ("active, running", after(&[MonthEvent::Start])),
        (
            "active, awaiting",
            after(&[
                MonthEvent::Start,
                MonthEvent::StepGatePassed { step: 0, summary: "ok".to_owned() },
                MonthEvent::StepGatePassed { step: 1, summary: "ok".to_owned() },
            ]),
        ),
        ("pausing by operator", after(&[MonthEvent::Start, MonthEvent::Pause { in_flight: 1 }])),
        ("paused by operator", after(&[MonthEvent::Start, MonthEvent::Pause { in_flight: 0 }])),
        (
            "pausing, gate failed",
            after(&[MonthEvent::Start, MonthEvent::StepGateFailed { step: 0, reason: "bad".to_owned(), in_flight: 1 }]),
        ),
        ("paused, gate failed", after(&[MonthEvent::Start, failed_gate.clone()])),
        ("failed", after(&[MonthEvent::Start, MonthEvent::Stop])),
        ("failed before start", after(&[MonthEvent::Stop])),
    ];
    let events = |step: usize| {
        [
            MonthEvent::Start,
            MonthEvent::StartEarly,
            MonthEvent::StepGatePassed { step, summary: "ok".to_owned() },
            MonthEvent::StepGateFailed { step, reason: "bad".to_owned(), in_flight: 0 },
            MonthEvent::ApproveStep { step },
            MonthEvent::RetryStep { step },
            MonthEvent::Pause { in_flight: 0 },
            MonthEvent::InFlightDrained,
            MonthEvent::Resume,
            MonthEvent::Stop,
        ]
    };
    let mut out = String::new();
    for (name, m) in &situations {
        out.push_str(&format!("{name}:\n"));
        for event in events(m.step()) {
            let mut m = m.clone();
            let label = format!("{event:?}");
            let label = label.split([' ', '{']).next().unwrap_or_default().to_owned();
            let result = match m.apply(t(1000), event) {
                Ok(tr) => format!("{} -> {}", tr.from, tr.to),
                Err(MonthError::Refused { why, .. }) => format!("refused: {why}"),
                Err(e) => format!("error: {e}"),
            };
            out.push_str(&format!("  {label:<15} {result}\n"));
        }
    }
    expect![[r#"
        scheduled:
          Start           scheduled -> active
          StartEarly      scheduled -> active
          StepGatePassed  refused: it is scheduled
          StepGateFailed  refused: it is scheduled
          ApproveStep     refused: it is scheduled
          RetryStep       refused: it is scheduled
          Pause           scheduled -> paused
          InFlightDrained refused: it is scheduled
          Resume          refused: it is scheduled
          Stop            scheduled -> failed
        paused before start:
          Start           refused: it is paused
          StartEarly      refused: it is paused
          StepGatePassed  refused: it is paused
          StepGateFailed  refused: it is paused
          ApproveStep     refused: it was paused by an operator, not by a failed gate; resume it
          RetryStep       refused: it was paused by an operator, not by a failed gate; resume it
          Pause           refused: it is paused
          InFlightDrained refused: it is paused
          Resume          paused -> scheduled
          Stop            paused -> failed
        active, running:
          Start           refused: it is active
          StartEarly      refused: it is active
          StepGatePassed  active -> active
          StepGateFailed  active -> paused
          ApproveStep     refused: step pilot is still running; its gate has not passed
          RetryStep       refused: it is active
          Pause           active -> paused
          InFlightDrained refused: it is active
          Resume          refused: it is active
          Stop            active -> failed
        active, awaiting:
          Start           refused: it is active
          StartEarly      refused: it is active
          StepGatePassed  refused: step extended already passed its gate and is waiting for approval
          StepGateFailed  refused: step extended already passed its gate and is waiting for approval
          ApproveStep     active -> active
          RetryStep       refused: it is active
          Pause           active -> paused
          InFlightDrained refused: it is active
          Resume          refused: it is active
          Stop            active -> failed
        pausing by operator:
          Start           refused: it is pausing
          StartEarly      refused: it is pausing
          StepGatePassed  refused: it is pausing
          StepGateFailed  refused: it is pausing
          ApproveStep     refused: it was paused by an operator, not by a failed gate; resume it
          RetryStep       refused: it was paused by an operator, not by a failed gate; resume it
          Pause           refused: it is pausing
          InFlightDrained pausing -> paused
          Resume          pausing -> active
          Stop            pausing -> failed
        paused by operator:
          Start           refused: it is paused
          StartEarly      refused: it is paused
          StepGatePassed  refused: it is paused
          StepGateFailed  refused: it is paused
          ApproveStep     refused: it was paused by an operator, not by a failed gate; resume it
          RetryStep       refused: it was paused by an operator, not by a failed gate; resume it
          Pause           refused: it is paused
          InFlightDrained refused: it is paused
          Resume          paused -> active
          Stop            paused -> failed
        pausing, gate failed:
          Start           refused: it is pausing
          StartEarly      refused: it is pausing
          StepGatePassed  refused: it is pausing
          StepGateFailed  refused: it is pausing
          ApproveStep     pausing -> active
          RetryStep       pausing -> active
          Pause           refused: it is pausing
          InFlightDrained pausing -> paused
          Resume          refused: step pilot failed its gate; approve it anyway, retry it, or stop the month
          Stop            pausing -> failed
        paused, gate failed:
          Start           refused: it is paused
          StartEarly      refused: it is paused
          StepGatePassed  refused: it is paused
          StepGateFailed  refused: it is paused
          ApproveStep     paused -> active
          RetryStep       paused -> active
          Pause           refused: it is paused
          InFlightDrained refused: it is paused
          Resume          refused: step pilot failed its gate; approve it anyway, retry it, or stop the month
          Stop            paused -> failed
        failed:
          Start           refused: it is failed
          StartEarly      refused: it is failed
          StepGatePassed  refused: it is failed
          StepGateFailed  refused: it is failed
          ApproveStep     refused: it is failed
          RetryStep       refused: it is failed
          Pause           refused: it is failed
          InFlightDrained refused: it is failed
          Resume          refused: it is failed
          Stop            refused: it is failed
        failed before start:
          Start           refused: it is failed
          StartEarly      refused: it is failed
          StepGatePassed  refused: it is failed
          StepGateFailed  refused: it is failed
          ApproveStep     refused: it is failed
          RetryStep       refused: it is failed
          Pause           refused: it is failed
          InFlightDrained refused: it is failed
          Resume          refused: it is failed
          Stop            refused: it is failed
    "#]]
    .assert_eq(&out);
}
