//! Reports waiting for the server's acknowledgement, kept on disk so that neither a network
//! failure nor an agent restart loses one. The server treats a repeated report as a no-op, so
//! sending one twice is safe.

use rollgate_wire::Report;

use crate::client::{ApiFailure, Client};
use crate::state::StateDir;

const FILE: &str = "outbox.json";

/// Most reports kept: a job makes at most a few per attempt, so this is never reached unless
/// the server has been unreachable for a very long time; the oldest are dropped then.
const MAX_REPORTS: usize = 1000;

/// Appends a report.
pub fn push(state: &StateDir, report: Report) -> anyhow::Result<()> {
    let mut queue: Vec<Report> = state.read_json(FILE)?.unwrap_or_default();
    queue.push(report);
    if queue.len() > MAX_REPORTS {
        let excess = queue.len() - MAX_REPORTS;
        queue.drain(..excess);
    }
    state.write_json(FILE, &queue)
}

/// Reports still waiting.
pub fn pending(state: &StateDir) -> anyhow::Result<usize> {
    Ok(state.read_json::<Vec<Report>>(FILE)?.map_or(0, |q| q.len()))
}

/// Sends waiting reports in order until one fails to reach the server. A report the server
/// refuses for good (a 4xx answer) is dropped with a warning: resending cannot help.
pub async fn flush(state: &StateDir, client: &Client) -> anyhow::Result<()> {
    loop {
        let mut queue: Vec<Report> = state.read_json(FILE)?.unwrap_or_default();
        let Some(first) = queue.first().cloned() else { return Ok(()) };
        match client.report(&first).await {
            Ok(()) => {}
            Err(ApiFailure::Refused { status, message, .. }) => {
                tracing::warn!("server refused report {first:?} ({status}): {message}; dropping it");
            }
            Err(other) => return Err(other.into()),
        }
        queue.remove(0);
        state.write_json(FILE, &queue)?;
    }
}
