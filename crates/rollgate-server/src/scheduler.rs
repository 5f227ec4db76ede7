//! The scheduler: ticks every live set, at a fixed interval and whenever something frees a slot
//! or creates work. The decisions are `rollgate-core`'s; this loop only says when to ask.
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

/// Runs forever.
pub async fn run(state: AppState) {
    let tick = Duration::from_millis(state.config.tick_ms.max(10));
    // Long enough to survive a slow tick, short enough that a dead holder is replaced quickly.
    let lease_ms = i64::try_from((tick * 5).max(Duration::from_secs(3)).as_millis()).unwrap_or(i64::MAX);
    let mut leading = false;
    // When this replica started watching without a gap; see `TickParams::observing_since`.
    let mut observing_since = Timestamp::now();
    let mut last_tick = Timestamp::now();
    loop {
        let now = Timestamp::now();
        let gap = now.duration_since(last_tick).unsigned_abs();
        if gap > tick * 5 {
            // Ticks were missed (database outage, overloaded machine): nobody was watching.
            observing_since = now;
        }
        match state.store.try_lease(LEASE, &state.replica_id, Timestamp::now(), lease_ms).await {
            Ok(held) => {
                if held && !leading {
                    // Taking over: the previous leader may have been gone for a while.
                    observing_since = now;
                }
                if held != leading {
                    tracing::info!(replica = %state.replica_id, "{} the scheduler lease", if held { "took" } else { "lost" });
                    leading = held;
                }
            }
            Err(err) => {
                tracing::error!("could not renew the scheduler lease: {err}");
                leading = false;
            }
        }
        if leading {
            let params = TickParams { offline_after_secs: state.config.offline_after_secs, observing_since };
            match tick_all(&state, params).await {
                Ok(true) => state.announce_change(),
                Ok(false) => {}
                Err(err) => tracing::error!("scheduler tick failed: {err:#}"),
            }
        }
        last_tick = Timestamp::now();
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = state.wake_scheduler.notified() => {}
        }
    }
}

async fn tick_all(state: &AppState, params: TickParams) -> anyhow::Result<bool> {
    let mut changed = false;
    for set_id in state.store.live_set_ids().await? {
        // One set failing (a damaged row, say) must not stop every set after it.
        match state.store.tick_set(set_id, params, Timestamp::now()).await {
            Ok(c) => changed |= c,
            Err(err) => tracing::error!(set_id, "scheduler tick of one set failed: {err}"),
        }
    }
    Ok(changed)
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
