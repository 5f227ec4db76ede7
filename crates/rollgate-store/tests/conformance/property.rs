//! Conformance: a seeded random campaign. Two overlapping sets, a flaky fleet (endpoints going
//! offline, agents going silent or sending heartbeats, reports arriving late, twice, or from
//! members without a slot) and operators pausing and resuming; after every operation the
//! invariants must hold, and once the fleet behaves, both sets must finish with every member
//! decided.
//!
//! A failure names its seed and step; rerunning that seed replays the same campaign.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rollgate_core::member::{MemberError, MemberState, Outcome};
use rollgate_core::set::{SetEvent, SetState};
use rollgate_store::{NewSet, ReportKindRecord, SetRecord, Store, StoreError, TickParams};

use crate::{backends, enroll_all, install, map, new_set, package, report, t, FROM, PRODUCT, TARGET};

const SEEDS: std::ops::Range<u64> = 0..8;
/// Random operations per seed before the fleet settles down.
const CHAOS_STEPS: usize = 250;
/// Ticks allowed for the sets to finish once every agent behaves.
const SETTLE_ROUNDS: usize = 200;
const PARAMS: TickParams = TickParams { offline_after_secs: 120, observing_since: jiff::Timestamp::UNIX_EPOCH };

#[tokio::test]
async fn random_campaigns_keep_the_invariants_and_leave_no_member_undecided() {
    run_campaigns("random_campaigns_keep_the_invariants_and_leave_no_member_undecided").await;
}

async fn run_campaigns(scenario: &str) {
    for b in backends().await {
        b.start(scenario);
        let mut total = Stats::default();
        for seed in SEEDS {
            // A fresh store per seed, so each seed replays on its own.
            let fresh = backends().await.into_iter().find(|x| x.name == b.name).unwrap();
            let stats = Campaign::new(&*fresh.store, seed).await.run().await;
            println!("seed {seed}: {stats:?}");
            total.add(&stats);
        }
        // The seeds must reach the situations the invariants are about, or they prove nothing.
        assert!(total.at_limit > 0, "no set ever had all its slots taken: {total:?}");
        assert!(total.refused > 0 && total.accepted > 0, "reports were never both accepted and refused: {total:?}");
        assert!(total.timed_out > 0, "no member ever timed out: {total:?}");
    }
}

/// What a campaign went through, to show that the seeds exercise the invariants.
#[derive(Debug, Default)]
struct Stats {
    /// Checks that found a set with every slot taken.
    at_limit: usize,
    /// Reports the store applied (changed or unchanged).
    accepted: usize,
    /// Reports refused as `NoSlot`, `Conflict`, `AttemptOutOfOrder` or `AttemptNotStarted`.
    refused: usize,
    /// Members seen losing their slot to the stuck timeout (timed out, or back to pending).
    timed_out: usize,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.at_limit += other.at_limit;
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
    }
}

struct Campaign<'a> {
    s: &'a dyn Store,
    seed: u64,
    rng: ChaCha8Rng,
    now: i64,
    ids: Vec<String>,
    online: Vec<bool>,
    /// When each endpoint was last touched; an online one is touched again after 60 s, well
    /// inside `offline_after_secs` (fewer writes keep the suite fast).
    touched: Vec<i64>,
    sets: Vec<SetRecord>,
    /// What every member looked like after the last operation: (attempts, state).
    seen: BTreeMap<(i64, String), (u32, MemberState)>,
    step: String,
    stats: Stats,
}

impl<'a> Campaign<'a> {
    async fn new(s: &'a dyn Store, seed: u64) -> Campaign<'a> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = rng.random_range(6..=16);
        let ids: Vec<String> = (0..n).map(|i| format!("ep-{i:02}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        s.insert_package(&package(PRODUCT, TARGET, t(0))).await.unwrap();
        enroll_all(s, &refs).await;
        for id in &refs {
            match rng.random_range(0..20) {
                0..=11 => install(s, id, FROM, t(0)).await,
                12..=14 => install(s, id, TARGET, t(0)).await,
                15..=16 => install(s, id, "3.0.0", t(0)).await,
                _ => s.update_inventory(id, &crate::facts("host", "linux", &map(&[]), &map(&[])), t(0)).await.unwrap(),
            }
        }
        let mut sets = Vec::new();
        for (name, share) in [("a", 0.8), ("b", 0.5)] {
            let mut members: Vec<&str> = refs.iter().copied().filter(|_| rng.random_bool(share)).collect();
            if members.is_empty() {
                members.push(refs[0]);
            }
            members.shuffle(&mut rng);
            let ranked: Vec<(String, u32)> =
                members.iter().enumerate().map(|(i, id)| (id.to_string(), i as u32)).collect();
            let spec = NewSet { stuck_timeout_secs: 300, ..new_set(name, rng.random_range(1..=3)) };
            sets.push(s.create_set(&spec, &ranked, t(0)).await.unwrap());
        }
        let online = vec![true; ids.len()];
        let touched = vec![0; ids.len()];
        Campaign {
            s,
            seed,
            rng,
            now: 0,
            ids,
            online,
            touched,
            sets,
            seen: BTreeMap::new(),
            step: "setup".to_string(),
            stats: Stats::default(),
        }
    }

    async fn run(mut self) -> Stats {
        self.check().await;
        for step in 0..CHAOS_STEPS {
            self.now += self.rng.random_range(1..=60);
            for i in 0..self.ids.len() {
                if self.rng.random_ratio(1, 20) {
                    self.online[i] = !self.online[i];
                }
                if self.online[i] && self.now - self.touched[i] >= 60 {
                    self.s.touch_endpoint(&self.ids[i], t(self.now)).await.unwrap();
                    self.touched[i] = self.now;
                }
            }
            let k = self.rng.random_range(0..self.sets.len());
            match self.rng.random_range(0..20) {
                0..=6 => self.tick(k, step).await,
                7 => self.operator(k, step).await,
                _ => self.random_report(k, step).await,
            }
            self.check().await;
        }
        self.settle().await;
        self.stats
    }

    async fn tick(&mut self, k: usize, step: usize) {
        self.step = format!("step {step}: tick `{}` at t({})", self.sets[k].spec.name, self.now);
        self.s
            .tick_set(self.sets[k].id, PARAMS, t(self.now))
            .await
            .unwrap_or_else(|e| panic!("seed {}, {}: {e}", self.seed, self.step));
    }

    /// Pause or resume; either may be refused by the state machine, never otherwise.
    async fn operator(&mut self, k: usize, step: usize) {
        let event = if self.rng.random_bool(0.5) { SetEvent::Pause } else { SetEvent::Resume };
        self.step = format!("step {step}: {event} `{}`", self.sets[k].spec.name);
        match self.s.change_set_state(&self.sets[k].spec.name, event, "chaos", t(self.now)).await {
            Ok(_) | Err(StoreError::SetTransition(_)) => {}
            Err(e) => panic!("seed {}, {}: {e}", self.seed, self.step),
        }
    }

    /// A report from a random member, slot or not, for a plausible or stale attempt.
    async fn random_report(&mut self, k: usize, step: usize) {
        let set_id = self.sets[k].id;
        let members = self.s.set_members(set_id).await.unwrap();
        let m = &members[self.rng.random_range(0..members.len())];
        let attempt = (m.member.attempts + self.rng.random_range(0..=2)).max(1);
        let kind = match self.rng.random_range(0..10) {
            0..=2 => ReportKindRecord::AttemptStarted,
            3 => ReportKindRecord::Heartbeat,
            4..=5 => ReportKindRecord::AttemptFailed,
            6..=7 => ReportKindRecord::Finished(Outcome::Succeeded),
            8 => ReportKindRecord::Finished(Outcome::RolledBack),
            _ => ReportKindRecord::Finished(Outcome::Failed),
        };
        let reason = (kind != ReportKindRecord::Finished(Outcome::Succeeded)).then_some("chaos");
        let at = t(self.now - self.rng.random_range(0..=30));
        self.step = format!(
            "step {step}: {} reports {kind:?} attempt {attempt} to `{}`",
            m.endpoint_id, self.sets[k].spec.name
        );
        let r = report(set_id, attempt, kind, reason, at);
        match self.s.record_report(&m.endpoint_id, &r, t(self.now)).await {
            Ok(_) => self.stats.accepted += 1,
            Err(StoreError::Member(
                MemberError::NoSlot(_)
                | MemberError::Conflict { .. }
                | MemberError::AttemptOutOfOrder { .. }
                | MemberError::AttemptNotStarted { .. },
            )) => self.stats.refused += 1,
            Err(e) => panic!("seed {}, {}: unexpected error {e:?}", self.seed, self.step),
        }
    }

    /// Every agent comes back and behaves: each released member starts and succeeds at once.
    async fn settle(&mut self) {
        for set in self.sets.clone() {
            // Resuming an active set is refused; that is fine here.
            let _ = self.s.change_set_state(&set.spec.name, SetEvent::Resume, "settle", t(self.now)).await;
        }
        for round in 0..SETTLE_ROUNDS {
            self.now += 5;
            for id in &self.ids {
                self.s.touch_endpoint(id, t(self.now)).await.unwrap();
            }
            let mut live = 0;
            for set in self.sets.clone() {
                self.step = format!("settle round {round}: tick `{}`", set.spec.name);
                self.s.tick_set(set.id, PARAMS, t(self.now)).await.unwrap();
                self.check().await;
                for m in self.s.set_members(set.id).await.unwrap() {
                    if m.member.state != MemberState::InProgress {
                        continue;
                    }
                    self.step = format!("settle round {round}: {} finishes `{}`", m.endpoint_id, set.spec.name);
                    // Start the next attempt if the set allows one, else finish the last.
                    let attempt = (m.member.attempts + 1).min(set.spec.max_attempts);
                    let started = report(set.id, attempt, ReportKindRecord::AttemptStarted, None, t(self.now));
                    self.s.record_report(&m.endpoint_id, &started, t(self.now)).await.unwrap();
                    let done =
                        report(set.id, attempt, ReportKindRecord::Finished(Outcome::Succeeded), None, t(self.now));
                    self.s.record_report(&m.endpoint_id, &done, t(self.now)).await.unwrap();
                    self.check().await;
                }
                if !self.s.get_set_by_name(&set.spec.name).await.unwrap().state.is_terminal() {
                    live += 1;
                }
            }
            if live == 0 {
                break;
            }
        }
        for set in &self.sets {
            let record = self.s.get_set_by_name(&set.spec.name).await.unwrap();
            assert_eq!(
                record.state,
                SetState::Completed,
                "seed {}: set `{}` did not complete",
                self.seed,
                set.spec.name
            );
            for m in self.s.set_members(set.id).await.unwrap() {
                assert!(
                    matches!(
                        m.member.state,
                        MemberState::Succeeded | MemberState::Failed | MemberState::RolledBack | MemberState::TimedOut
                    ),
                    "seed {}: set `{}` is {} but member {} is {:?}",
                    self.seed,
                    set.spec.name,
                    record.state,
                    m.endpoint_id,
                    m.member
                );
            }
        }
    }

    /// The invariants, read back through the trait after every operation.
    async fn check(&mut self) {
        let ctx = format!("seed {}, after {}", self.seed, self.step);
        let mut holders: BTreeMap<String, i64> = BTreeMap::new();
        for set in &self.sets {
            let members = self.s.set_members(set.id).await.unwrap();
            let in_progress = members.iter().filter(|m| m.member.state == MemberState::InProgress).count();
            assert!(
                in_progress <= set.spec.max_in_flight as usize,
                "{ctx}: set `{}` has {in_progress} in progress, limit {}",
                set.spec.name,
                set.spec.max_in_flight
            );
            self.stats.at_limit += usize::from(in_progress == set.spec.max_in_flight as usize);
            for m in members {
                if m.member.state == MemberState::InProgress {
                    if let Some(other) = holders.insert(m.endpoint_id.clone(), set.id) {
                        panic!("{ctx}: {} holds slots in sets {other} and {} at once", m.endpoint_id, set.id);
                    }
                }
                let key = (set.id, m.endpoint_id.clone());
                let now = (m.member.attempts, m.member.state);
                if let Some((attempts, state)) = self.seen.insert(key, now) {
                    assert!(now.0 >= attempts, "{ctx}: {} attempts went from {attempts} to {}", m.endpoint_id, now.0);
                    let decided =
                        matches!(state, MemberState::Succeeded | MemberState::Failed | MemberState::RolledBack);
                    let lost_slot = state == MemberState::InProgress
                        && matches!(now.1, MemberState::TimedOut | MemberState::Pending);
                    self.stats.timed_out += usize::from(lost_slot);
                    assert!(
                        !decided || now.1 == state,
                        "{ctx}: {} changed its outcome from {state} to {}",
                        m.endpoint_id,
                        now.1
                    );
                }
            }
        }
    }
}
