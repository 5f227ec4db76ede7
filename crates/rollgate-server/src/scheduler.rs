//! The scheduler: ticks every live set, at a fixed interval and whenever something frees a slot
//! or creates work. The decisions are `rollgate-core`'s; this loop only says when to ask.

use std::time::Duration;

use jiff::Timestamp;
use rollgate_store::TickParams;

use crate::AppState;

/// Runs forever.
pub async fn run(state: AppState) {
    let tick = Duration::from_millis(state.config.tick_ms.max(10));
    let params = TickParams { offline_after_secs: state.config.offline_after_secs };
    loop {
        match tick_all(&state, params).await {
            Ok(true) => state.announce_change(),
            Ok(false) => {}
            Err(err) => tracing::error!("scheduler tick failed: {err:#}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = state.wake_scheduler.notified() => {}
        }
    }
}

async fn tick_all(state: &AppState, params: TickParams) -> anyhow::Result<bool> {
    let mut changed = false;
    for set_id in state.store.live_set_ids().await? {
        changed |= state.store.tick_set(set_id, params, Timestamp::now()).await?;
    }
    Ok(changed)
}
