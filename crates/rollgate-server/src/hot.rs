//! What a check-in needs, held in memory, so that a poll with nothing new touches no database.
//!
//! * **Assignments.** The work of every member holding a slot, serialized once with its ETag.
//!   There are at most as many as the live sets' max-in-flight added up, so the whole map is
//!   reloaded from the database whenever something may have changed it (this replica's
//!   scheduler or reports, or another replica's, announced through the store). Held polls wait
//!   for the reload, not for the raw change, so they never see the old map after a change.
//! * **Certificate fingerprints.** Checked on every agent request; read from the database only
//!   the first time an endpoint is seen by this replica.
//! * **Last seen.** Noted in memory and written for all endpoints at once, every
//!   `FLUSH_EVERY`. A crash loses at most that much of `last_seen`, which only decides whether
//!   an endpoint counts as online; no acknowledged write depends on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use rollgate_store::{PackageRecord, SetRecord, Store, StoreError};
use rollgate_wire::{Assignment, WorkResponse};
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

/// How often noted `last_seen` times are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How often the assignments are reloaded even when nothing announced a change.
pub const SAFETY_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// A serialized work answer and its ETag.
#[derive(Clone, Debug)]
pub struct Work {
    /// The JSON body.
    pub body: Bytes,
    /// The quoted ETag.
    pub etag: Arc<str>,
}

impl Work {
    fn of(response: &WorkResponse) -> Work {
        let body = serde_json::to_vec(response).unwrap_or_default();
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        Work { body: Bytes::from(body), etag: etag.into() }
    }
}

/// The in-memory side of check-ins for one replica.
pub struct Hot {
    store: Arc<dyn Store>,
    assignments: RwLock<Arc<HashMap<String, Work>>>,
    nothing: Work,
    fingerprints: RwLock<HashMap<String, String>>,
    seen: Mutex<HashMap<String, Timestamp>>,
    reload_wanted: Notify,
    /// Moves when what polls can see changed; held polls wait on it.
    generation: watch::Sender<u64>,
    /// Moves after every reload, changed or not; [`Hot::reloaded`] waits on it.
    reloads: watch::Sender<u64>,
}

impl std::fmt::Debug for Hot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hot")
    }
}

/// The assignment an agent is given for a member's slot.
pub fn assignment(set: &SetRecord, package: &PackageRecord) -> Assignment {
    Assignment {
        set_id: set.id,
        set_name: set.spec.name.clone(),
        product: package.product.clone(),
        version: package.version.clone(),
        module: package.module.clone(),
        download_path: format!("/v1/agent/packages/{}", package.sha256),
        sha256: package.sha256.clone(),
        size: package.size,
        max_attempts: set.spec.max_attempts,
        backoff_initial_secs: set.spec.backoff_secs,
        backoff_max_secs: set.spec.backoff_secs.saturating_mul(16).max(set.spec.backoff_secs),
        step_timeout_secs: set.spec.step_timeout_secs,
        heartbeat_secs: (set.spec.stuck_timeout_secs / 4).clamp(1, 300),
        watch_secs: set.spec.watch_secs,
    }
}

impl Hot {
    /// Loads the assignments once; call [`Hot::run`] to keep everything current.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<Hot>, StoreError> {
        let hot = Arc::new(Hot {
            store,
            assignments: RwLock::new(Arc::new(HashMap::new())),
            nothing: Work::of(&WorkResponse { assignment: None }),
            fingerprints: RwLock::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            reload_wanted: Notify::new(),
            generation: watch::channel(0).0,
            reloads: watch::channel(0).0,
        });
        hot.reload().await?;
        Ok(hot)
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let mut map = HashMap::new();
        for (endpoint, set, package) in self.store.in_flight_assignments().await? {
            // One slot per endpoint across sets; if ever two, the oldest set goes first, as
            // the rows are ordered by set.
            map.entry(endpoint)
                .or_insert_with(|| Work::of(&WorkResponse { assignment: Some(assignment(&set, &package)) }));
        }
        let same = {
            let current = self.assignments.read().unwrap_or_else(|p| p.into_inner());
            current.len() == map.len() && map.iter().all(|(k, w)| current.get(k).is_some_and(|c| c.etag == w.etag))
        };
        *self.assignments.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        // Held polls wake only when something they could see changed.
        if !same {
            self.generation.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.reloads.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Asks for a reload: something may have changed the assignments.
    pub fn changed(&self) {
        self.reload_wanted.notify_one();
    }

    /// Drops an endpoint's assignment at once (its final report was recorded), before the
    /// full reload that follows, so the agent is never handed a finished job again.
    pub fn finished(&self, endpoint_id: &str) {
        {
            let mut guard = self.assignments.write().unwrap_or_else(|p| p.into_inner());
            if guard.contains_key(endpoint_id) {
                let mut map = (**guard).clone();
                map.remove(endpoint_id);
                *guard = Arc::new(map);
            }
        }
        self.changed();
    }

    /// Waits until the assignments were reloaded after this call (tests; handlers that must
    /// read their own writes).
    pub async fn reloaded(&self) {
        let mut reloads = self.reloads.subscribe();
        reloads.borrow_and_update();
        self.changed();
        let _ = reloads.changed().await;
    }

    /// Held polls wait on this; it moves after every reload.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The work an endpoint should do now.
    pub fn work_for(&self, endpoint_id: &str) -> Work {
        let map = self.assignments.read().unwrap_or_else(|p| p.into_inner()).clone();
        map.get(endpoint_id).cloned().unwrap_or_else(|| self.nothing.clone())
    }

    /// Whether `presented` is the certificate fingerprint an endpoint was issued: Some(true)
    /// or Some(false), or None when the endpoint is unknown. A mismatch with the cached value is
    /// checked again against the database, since a re-enrolled endpoint (on any replica) has a
    /// new certificate.
    pub async fn certificate_matches(&self, endpoint_id: &str, presented: &str) -> Result<Option<bool>, StoreError> {
        let cached = self.fingerprints.read().unwrap_or_else(|p| p.into_inner()).get(endpoint_id).cloned();
        if cached.as_deref() == Some(presented) {
            return Ok(Some(true));
        }
        Ok(self.fingerprint_from_store(endpoint_id).await?.map(|f| f == presented))
    }

    async fn fingerprint_from_store(&self, endpoint_id: &str) -> Result<Option<String>, StoreError> {
        match self.store.get_endpoint(endpoint_id).await {
            Ok(e) => {
                self.fingerprints
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(endpoint_id.to_string(), e.cert_fingerprint.clone());
                Ok(Some(e.cert_fingerprint))
            }
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Notes that an endpoint talked to this replica.
    pub fn seen(&self, endpoint_id: &str, now: Timestamp) {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert(endpoint_id.to_string(), now);
    }

    async fn flush_seen(&self) -> Result<(), StoreError> {
        let mut batch: Vec<(String, Timestamp)> =
            std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
        // One order for every replica, so that their batches cannot deadlock on row locks.
        batch.sort_unstable();
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.store.touch_endpoints(&batch).await;
        if result.is_err() {
            // Keep them for the next flush, unless the endpoint was seen again meanwhile.
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for (id, at) in batch {
                seen.entry(id).or_insert(at);
            }
        }
        result
    }

    /// Writes the noted `last_seen` times now (tests and shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_seen().await
    }

    /// Keeps the assignments and `last_seen` current. Runs forever.
    pub async fn run(self: Arc<Hot>) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        // A safety net under the announcements: a notification lost while another replica's
        // listener reconnected must not leave this map stale for longer than this.
        let mut safety =
            tokio::time::interval_at(tokio::time::Instant::now() + SAFETY_RELOAD_EVERY, SAFETY_RELOAD_EVERY);
        loop {
            tokio::select! {
                _ = safety.tick() => self.changed(),
                _ = self.reload_wanted.notified() => {
                    if let Err(err) = self.reload().await {
                        tracing::error!("could not reload assignments: {err}");
                        // Try again soon rather than serve a stale map until the next change.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        self.changed();
                    }
                }
                _ = flush.tick() => {
                    if let Err(err) = self.flush_seen().await {
                        tracing::warn!("could not record last-seen times: {err}");
                    }
                }
            }
        }
    }
}
