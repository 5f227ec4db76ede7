//! The scheduler: ticks every live set, at a fixed interval and whenever something frees a slot
//! or creates work. The decisions are `rollgate-core`'s; this loop only says when to ask. (The
//! campaign driver, [`crate::campaign_months`], runs beside it under a lease of its own.)
//!
//! With several replicas on one database, exactly one runs the scheduler at a time: the holder
//! of the `scheduler` lease, renewed at every tick. When the holder stops, its lease expires and
//! another replica takes over. (Ticks are safe to run concurrently anyway: each one decides
//! inside a locked transaction. The lease keeps replicas from doing the same work twice.)

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use rollgate_store::TickParams;

use crate::AppState;

/// The name of the scheduler's lease.
pub const LEASE: &str = "scheduler";

/// Tracks whether this replica could reach the database without a gap, which decides
/// `TickParams::observing_since`: silence counts against an endpoint only while reports could
/// have been recorded. Every successful database call of the scheduler (a lease renewal, even
/// one that finds another holder, or a tick) proves the database was reachable; a longer gap
/// between two of them, or a failed call, means agents may not have been able to report
/// either, so the watch starts again. A change of leader alone resets nothing: the database
/// was reachable throughout, and reports were recorded by whichever replica received them.
struct Watch {
    since: Timestamp,
    last_ok: Option<Timestamp>,
    max_gap: Duration,
}

impl Watch {
    fn new(now: Timestamp, max_gap: Duration) -> Watch {
        // A starting process has watched nothing yet (a single server may have been down).
        Watch { since: now, last_ok: None, max_gap }
    }

    fn ok(&mut self, now: Timestamp) {
        let gap = self.last_ok.map_or(Duration::MAX, |t| now.duration_since(t).unsigned_abs());
        if gap > self.max_gap {
            self.since = now;
        }
        self.last_ok = Some(now);
    }

    fn failed(&mut self) {
        self.last_ok = None;
    }
}

/// Runs forever.
pub async fn run(state: AppState) {
    let tick = Duration::from_millis(state.config.tick_ms.max(10));
    // Long enough to survive a slow tick or a process starved of CPU for a few seconds (a
    // loaded 2-core machine did starve one for 3 s, and leadership moved), short enough that a
    // dead holder is replaced within seconds.
    let lease = (tick * 5).max(Duration::from_secs(10));
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut leading = false;
    let mut watch = Watch::new(Timestamp::now(), lease.max(Duration::from_secs(10)));
    loop {
        match state.store.try_lease(LEASE, &state.replica_id, Timestamp::now(), lease_ms).await {
            Ok(held) => {
                watch.ok(Timestamp::now());
                if held != leading {
                    tracing::info!(replica = %state.replica_id, "{} the scheduler lease", if held { "took" } else { "lost" });
                    leading = held;
                }
            }
            Err(err) => {
                tracing::error!("could not renew the scheduler lease: {err}");
                watch.failed();
                leading = false;
            }
        }
        if leading {
            leading = tick_all(&state, &mut watch, lease, lease_ms).await;
        }

        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = state.wake_scheduler.notified() => {}
        }
    }
}

/// Ticks every live set, renewing the lease between sets when half of it has passed; returns
/// whether this replica still leads.
async fn tick_all(state: &AppState, watch: &mut Watch, lease: Duration, lease_ms: i64) -> bool {
    let set_ids = match state.store.live_set_ids().await {
        Ok(ids) => ids,
        Err(err) => {
            tracing::error!("scheduler could not list live sets: {err}");
            watch.failed();
            return true;
        }
    };
    let mut renewed = std::time::Instant::now();
    let mut changed = false;
    for set_id in set_ids {
        if renewed.elapsed() > lease / 2 {
            match state.store.try_lease(LEASE, &state.replica_id, Timestamp::now(), lease_ms).await {
                Ok(true) => renewed = std::time::Instant::now(),
                Ok(false) => return false,
                Err(err) => {
                    tracing::error!("could not renew the scheduler lease: {err}");
                    watch.failed();
                    return false;
                }
            }
        }
        let params = TickParams { offline_after_secs: state.config.offline_after_secs, observing_since: watch.since };
        // One set failing must not stop every set after it; a failure may be the database's,
        // so the watch starts again.
        match state.store.tick_set(set_id, params, Timestamp::now()).await {
            Ok(c) => {
                watch.ok(Timestamp::now());
                changed |= c;
            }
            Err(err) => {
                tracing::error!(set_id, "scheduler tick of one set failed: {err}");
                watch.failed();
            }
        }
    }
    if changed {
        state.announce_change();
    }
    true
}

/// Wakes this replica's scheduler and held polls when another replica changed something
/// (a report freed a slot, a tick released endpoints). Runs forever, reconnecting as needed.
pub async fn follow_other_replicas(state: AppState) {
    let wake = {
        let state = state.clone();
        Arc::new(move || {
            state.wake_scheduler.notify_one();
            state.announce_change();
        })
    };
    loop {
        if let Err(err) = state.store.listen_changes(wake.clone()).await {
            tracing::warn!("lost the database's change notifications ({err}); reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn the_watch_restarts_only_after_a_gap_or_a_failure() {
        let mut w = Watch::new(at(0), Duration::from_secs(10));
        w.ok(at(1));
        assert_eq!(w.since, at(1), "the first success starts the watch");
        for s in 2..100 {
            w.ok(at(s));
        }
        assert_eq!(w.since, at(1), "steady calls keep it, whoever leads");
        w.ok(at(111));
        assert_eq!(w.since, at(111), "a gap longer than 10 s restarts it");
        w.failed();
        w.ok(at(112));
        assert_eq!(w.since, at(112), "so does a failed call");
    }
}
