//! Conformance: campaign months and what they drive (`create_month`, `save_month`,
//! `campaign_months`, `month_transitions`, `start_step_run`, `step_runs`, `create_campaign_set`,
//! `record_patch_health`, `patch_health`, `get_set`).

use jiff::Timestamp;
use rollgate_core::set::SetState;
use rollgate_store::{MonthRow, NewSet, PatchHealthRow, SetRecord, StepRunRow, Store, StoreError, TransitionRow};

use crate::{backends, enroll_all, new_set, package, ranked, t, PRODUCT, TARGET};

/// The campaign every scenario here drives.
const CAMPAIGN: &str = "monthly";

/// A month of [`CAMPAIGN`] as the driver would hand it in (version and times as given).
fn month(month: &str, state: &str, snapshot: &str, version: i64, at: Timestamp) -> MonthRow {
    MonthRow {
        campaign: CAMPAIGN.to_string(),
        month: month.to_string(),
        state: state.to_string(),
        snapshot: snapshot.to_string(),
        version,
        created_at: at,
        updated_at: at,
    }
}

/// One transition.
fn tr(at: Timestamp, from: &str, to: &str, step: u32, reason: &str) -> TransitionRow {
    TransitionRow { at, from: from.to_string(), to: to.to_string(), step, reason: reason.to_string() }
}

/// A step run with no sets, as it is started.
fn run(step: u32, run: u32, started_at: Timestamp, plan: &str) -> StepRunRow {
    StepRunRow { step, run, started_at, plan: plan.to_string(), sets: Vec::new() }
}

/// [`CAMPAIGN`] stored and its month `2027-01` created at `t(0)`.
async fn campaign_with_month(s: &dyn Store) {
    s.put_campaign(CAMPAIGN, "name = \"monthly\"\n", t(0)).await.unwrap();
    let m = month("2027-01", "planned", "{\"s\":0}", 0, t(0));
    assert!(s.create_month(&m, &tr(t(0), "created", "planned", 0, "scheduled")).await.unwrap());
}

/// A campaign set of [`PRODUCT`] [`TARGET`] with a soak, named after its place.
fn campaign_set(name: &str) -> NewSet {
    NewSet { watch_secs: 3600, ..new_set(name, 2) }
}

#[tokio::test]
async fn create_month_creates_once_and_needs_its_campaign() {
    for b in backends().await {
        let s = b.start("create_month_creates_once_and_needs_its_campaign");
        s.put_campaign(CAMPAIGN, "name = \"monthly\"\n", t(0)).await.unwrap();
        s.put_campaign("other", "name = \"other\"\n", t(0)).await.unwrap();
        assert!(s.campaign_months(CAMPAIGN).await.unwrap().is_empty());

        // Created out of month order: listed oldest first, each at version 1.
        let feb = month("2027-02", "planned", "{\"feb\":1}", 0, t(10));
        let feb_first = tr(t(10), "created", "planned", 0, "scheduled");
        assert!(s.create_month(&feb, &feb_first).await.unwrap(), "created");
        let jan = month("2027-01", "running", "{\"jan\":1}", 0, t(20));
        assert!(s.create_month(&jan, &tr(t(20), "created", "running", 0, "late start")).await.unwrap());
        s.create_month(
            &MonthRow { campaign: "other".into(), ..month("2026-12", "planned", "{}", 0, t(5)) },
            &feb_first,
        )
        .await
        .unwrap();

        let stored_feb = MonthRow { version: 1, ..feb.clone() };
        let stored_jan = MonthRow { version: 1, ..jan.clone() };
        assert_eq!(s.campaign_months(CAMPAIGN).await.unwrap(), [stored_jan.clone(), stored_feb.clone()]);

        // A second create of the same month changes nothing: not the snapshot, state or times,
        // and its first transition is not recorded.
        let again = month("2027-02", "failed", "{\"feb\":2}", 0, t(30));
        assert!(!s.create_month(&again, &tr(t(30), "created", "failed", 3, "again")).await.unwrap(), "exists");
        assert_eq!(s.campaign_months(CAMPAIGN).await.unwrap(), [stored_jan, stored_feb]);
        assert_eq!(s.month_transitions(CAMPAIGN, "2027-02").await.unwrap(), [feb_first]);

        // A month of a campaign that does not exist is refused, and nothing is listed for it.
        let ghost = MonthRow { campaign: "ghost".into(), ..month("2027-01", "planned", "{}", 0, t(40)) };
        assert!(s.create_month(&ghost, &tr(t(40), "created", "planned", 0, "x")).await.is_err());
        assert!(s.campaign_months("ghost").await.unwrap().is_empty());
        assert!(s.month_transitions("ghost", "2027-01").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn save_month_writes_only_over_the_version_it_read() {
    for b in backends().await {
        let s = b.start("save_month_writes_only_over_the_version_it_read");
        campaign_with_month(s).await;
        let first = tr(t(0), "created", "planned", 0, "scheduled");
        let read = s.campaign_months(CAMPAIGN).await.unwrap().remove(0);
        assert_eq!(read.version, 1);

        // Same instant and reasons out of alphabetical order: only the order given (seq) holds.
        let batch = [
            tr(t(100), "planned", "running", 0, "window opened"),
            tr(t(100), "running", "soaking", 1, "step 0 installed"),
            tr(t(100), "soaking", "running", 1, "advanced"),
        ];
        let next = MonthRow { state: "running".into(), snapshot: "{\"s\":1}".into(), ..read.clone() };
        s.save_month(&next, &batch, t(100)).await.unwrap();

        let saved = MonthRow { version: 2, updated_at: t(100), ..next.clone() };
        assert_eq!(s.campaign_months(CAMPAIGN).await.unwrap(), std::slice::from_ref(&saved), "created_at kept");
        let mut expected = vec![first];
        expected.extend(batch.iter().cloned());
        assert_eq!(s.month_transitions(CAMPAIGN, "2027-01").await.unwrap(), expected);

        // A writer still holding version 1 came second: refused, nothing written.
        let stale = MonthRow { state: "failed".into(), snapshot: "{\"stale\":1}".into(), ..read };
        let err = s.save_month(&stale, &[tr(t(200), "running", "failed", 1, "stale")], t(200)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(s.campaign_months(CAMPAIGN).await.unwrap(), std::slice::from_ref(&saved));
        assert_eq!(s.month_transitions(CAMPAIGN, "2027-01").await.unwrap(), expected);

        // The current version writes, and its transitions follow the earlier ones.
        let last = tr(t(300), "running", "completed", 2, "done");
        let done = MonthRow { state: "completed".into(), snapshot: "{\"s\":2}".into(), ..saved };
        s.save_month(&done, std::slice::from_ref(&last), t(300)).await.unwrap();
        assert_eq!(
            s.campaign_months(CAMPAIGN).await.unwrap(),
            [MonthRow { version: 3, updated_at: t(300), created_at: t(0), ..done }]
        );
        expected.push(last);
        assert_eq!(s.month_transitions(CAMPAIGN, "2027-01").await.unwrap(), expected);

        // A month that does not exist has no version to match.
        let missing = month("2030-01", "running", "{}", 1, t(400));
        assert!(matches!(s.save_month(&missing, &[], t(400)).await.unwrap_err(), StoreError::Conflict(_)));
        assert_eq!(s.campaign_months(CAMPAIGN).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn step_runs_are_recorded_once_and_listed_by_step_then_run() {
    for b in backends().await {
        let s = b.start("step_runs_are_recorded_once_and_listed_by_step_then_run");
        campaign_with_month(s).await;
        s.create_month(&month("2027-02", "planned", "{}", 0, t(0)), &tr(t(0), "created", "planned", 0, "x"))
            .await
            .unwrap();
        assert!(s.step_runs(CAMPAIGN, "2027-01").await.unwrap().is_empty());

        // Started out of order; run 10 after run 2 shows the order is numeric.
        let runs = [
            run(1, 1, t(50), "{\"plan\":\"1/1\"}"),
            run(0, 10, t(40), "{\"plan\":\"0/10\"}"),
            run(0, 2, t(30), "{\"plan\":\"0/2\"}"),
            run(0, 1, t(20), "{\"plan\":\"0/1\"}"),
        ];
        for r in &runs {
            assert!(s.start_step_run(CAMPAIGN, "2027-01", r).await.unwrap(), "recorded");
        }
        // Started again (a retried driver): not recorded, the first plan and time stay.
        let retry = run(0, 1, t(99), "{\"plan\":\"changed\"}");
        assert!(!s.start_step_run(CAMPAIGN, "2027-01", &retry).await.unwrap(), "already recorded");
        // The same step and run in another month is another run.
        assert!(s.start_step_run(CAMPAIGN, "2027-02", &run(0, 1, t(60), "{\"feb\":0}")).await.unwrap());

        let [r11, r0_10, r0_2, r0_1] = runs;
        assert_eq!(s.step_runs(CAMPAIGN, "2027-01").await.unwrap(), [r0_1, r0_2, r0_10, r11]);
        assert_eq!(s.step_runs(CAMPAIGN, "2027-02").await.unwrap(), [run(0, 1, t(60), "{\"feb\":0}")]);

        // A run of a month that does not exist is refused.
        assert!(s.start_step_run(CAMPAIGN, "2030-01", &run(0, 1, t(70), "{}")).await.is_err());
        assert!(s.step_runs(CAMPAIGN, "2030-01").await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn campaign_sets_are_created_and_linked_in_one_transaction() {
    for b in backends().await {
        let s = b.start("campaign_sets_are_created_and_linked_in_one_transaction");
        campaign_with_month(s).await;
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        enroll_all(s, &["ep-a", "ep-b", "ep-c"]).await;
        let step0 = run(0, 1, t(10), "{\"plan\":0}");
        let step1 = run(1, 1, t(10), "{\"plan\":1}");
        assert!(s.start_step_run(CAMPAIGN, "2027-01", &step0).await.unwrap());
        assert!(s.start_step_run(CAMPAIGN, "2027-01", &step1).await.unwrap());

        // Package #1 of step 0 first, then #0: the run lists them by their place.
        let spec1 = campaign_set("monthly-2027-01-s0-r1-p1");
        let set1 =
            s.create_campaign_set(CAMPAIGN, "2027-01", (0, 1, 1), &spec1, &ranked(&["ep-c"]), t(20)).await.unwrap();
        let spec0 = campaign_set("monthly-2027-01-s0-r1-p0");
        let members = ranked(&["ep-b", "ep-a"]);
        let set0 = s.create_campaign_set(CAMPAIGN, "2027-01", (0, 1, 0), &spec0, &members, t(30)).await.unwrap();
        assert_eq!(
            set0,
            SetRecord {
                id: set0.id,
                spec: spec0.clone(),
                state: SetState::Active,
                state_reason: Some("created".to_string()),
                created_at: t(30),
                finished_at: None,
            }
        );
        assert_eq!(set0.spec.watch_secs, 3600);
        assert_eq!(s.get_set(set0.id).await.unwrap(), set0, "watch_secs read back by id");
        assert_eq!(s.get_set_by_name(&spec0.name).await.unwrap(), set0, "and by name");
        assert_eq!(s.get_set(set1.id).await.unwrap(), set1);
        let member_ids: Vec<String> =
            s.set_members(set0.id).await.unwrap().into_iter().map(|m| m.endpoint_id).collect();
        assert_eq!(member_ids, ["ep-b", "ep-a"]);

        let linked = |sets: Vec<(u32, i64)>| StepRunRow { sets, ..step0.clone() };
        assert_eq!(
            s.step_runs(CAMPAIGN, "2027-01").await.unwrap(),
            [linked(vec![(0, set0.id), (1, set1.id)]), step1.clone()],
            "sets by seq, only on their own run"
        );

        // The same place again: refused, and the set it would have created is rolled back.
        let before = s.list_sets().await.unwrap();
        assert_eq!(before.len(), 2);
        let dup = campaign_set("monthly-2027-01-s0-r1-p0-again");
        let err = s.create_campaign_set(CAMPAIGN, "2027-01", (0, 1, 0), &dup, &members, t(40)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(s.list_sets().await.unwrap(), before, "no extra upgrade set");
        assert!(matches!(s.get_set_by_name(&dup.name).await.unwrap_err(), StoreError::NotFound(_)));

        // A package that does not exist: NotFound, nothing created or linked.
        let unknown = NewSet { version: "9.9.9".into(), ..campaign_set("monthly-2027-01-s1-r1-p0") };
        let err = s.create_campaign_set(CAMPAIGN, "2027-01", (1, 1, 0), &unknown, &members, t(50)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(s.list_sets().await.unwrap(), before);

        // A run that was never started cannot have sets: refused, and rolled back too.
        let orphan = campaign_set("monthly-2027-01-s2-r1-p0");
        assert!(s.create_campaign_set(CAMPAIGN, "2027-01", (2, 1, 0), &orphan, &members, t(60)).await.is_err());
        assert_eq!(s.list_sets().await.unwrap(), before);
        assert!(matches!(s.get_set_by_name(&orphan.name).await.unwrap_err(), StoreError::NotFound(_)));

        assert_eq!(
            s.step_runs(CAMPAIGN, "2027-01").await.unwrap(),
            [linked(vec![(0, set0.id), (1, set1.id)]), step1],
            "links unchanged"
        );
    }
}

#[tokio::test]
async fn patch_health_is_one_row_per_set_endpoint_and_source() {
    for b in backends().await {
        let s = b.start("patch_health_is_one_row_per_set_endpoint_and_source");
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        enroll_all(s, &["ep-a", "ep-b"]).await;
        let a = s.create_set(&new_set("wave-a", 2), &ranked(&["ep-a", "ep-b"]), t(0)).await.unwrap();
        let b2 = s.create_set(&new_set("wave-b", 2), &ranked(&["ep-a"]), t(0)).await.unwrap();
        assert!(s.patch_health(&[a.id, b2.id]).await.unwrap().is_empty());

        let health = |set_id, endpoint: &str, source: &str, healthy, reason: Option<&str>, at| PatchHealthRow {
            set_id,
            endpoint_id: endpoint.to_string(),
            source: source.to_string(),
            healthy,
            reason: reason.map(str::to_string),
            at,
        };
        s.record_patch_health(&health(a.id, "ep-a", "agent", true, None, t(100))).await.unwrap();
        // The agent changes its mind: the row is replaced, not added.
        let crashed = health(a.id, "ep-a", "agent", false, Some("exited with signal 11"), t(200));
        s.record_patch_health(&crashed).await.unwrap();
        // An operator's word is a row of its own.
        let operator = health(a.id, "ep-a", "operator", true, Some("looks fine"), t(300));
        s.record_patch_health(&operator).await.unwrap();
        let other_endpoint = health(a.id, "ep-b", "agent", true, None, t(150));
        s.record_patch_health(&other_endpoint).await.unwrap();
        let other_set = health(b2.id, "ep-a", "agent", true, None, t(400));
        s.record_patch_health(&other_set).await.unwrap();

        assert_eq!(
            s.patch_health(&[a.id]).await.unwrap(),
            [crashed.clone(), operator.clone(), other_endpoint.clone()],
            "only this set's rows, by endpoint and source"
        );
        assert_eq!(s.patch_health(&[b2.id]).await.unwrap(), std::slice::from_ref(&other_set));
        assert_eq!(s.patch_health(&[a.id, b2.id]).await.unwrap(), [crashed, operator, other_endpoint, other_set]);
        assert!(s.patch_health(&[]).await.unwrap().is_empty());
        assert!(s.patch_health(&[a.id + b2.id + 1000]).await.unwrap().is_empty(), "reading an unknown set is empty");

        // A report about a set that does not exist is refused and not stored.
        let ghost = a.id + b2.id + 1000;
        let err = s.record_patch_health(&health(ghost, "ep-a", "agent", true, None, t(500))).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert!(s.patch_health(&[ghost]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn get_set_reads_one_set_by_id() {
    for b in backends().await {
        let s = b.start("get_set_reads_one_set_by_id");
        assert!(matches!(s.get_set(1).await.unwrap_err(), StoreError::NotFound(_)));
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        enroll_all(s, &["ep-a"]).await;
        let first = s.create_set(&new_set("wave-1", 1), &ranked(&["ep-a"]), t(0)).await.unwrap();
        let second = s.create_set(&NewSet { watch_secs: 90, ..new_set("wave-2", 1) }, &[], t(5)).await.unwrap();
        assert_eq!(s.get_set(first.id).await.unwrap(), first);
        assert_eq!(s.get_set(second.id).await.unwrap(), second);
        assert_eq!(s.get_set(second.id).await.unwrap().spec.watch_secs, 90);
        assert_eq!(first.spec.watch_secs, 0, "outside campaigns there is no watch");
        let unknown = first.id.max(second.id) + 1;
        assert!(matches!(s.get_set(unknown).await.unwrap_err(), StoreError::NotFound(_)));
    }
}
