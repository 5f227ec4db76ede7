//! Planning a campaign step: the advisories a month collects, what they need on which
//! endpoints, the stored packages that fix them, and global autofix's late endpoints.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use jiff::Timestamp;
use rollgate_advisories::Advisory;
use rollgate_core::campaign::dispatch::{self, Need};
use rollgate_core::campaign::month::Month;
use rollgate_core::campaign::schedule::{advisory_window, YearMonth};
use rollgate_core::campaign::spec::{Severity, ValidCampaign};
use rollgate_store::{AdvisoryFilter, AdvisoryRecord, EndpointRecord, Store};

use super::{current_place, Ctx, Loaded, StoredDeployment, StoredPlan};
use crate::api::advisories::severity_matches;

impl Ctx<'_> {
    /// The advisories `month` collects (its window, the campaign's products and severities).
    pub async fn collected(&self, month: YearMonth) -> anyhow::Result<Vec<AdvisoryRecord>> {
        collected(self.store(), self.campaign, month, self.first).await
    }

    /// The needs of the month's deployable advisories on `endpoints`.
    pub async fn needs(&self, month: &Month, endpoints: &[EndpointRecord]) -> anyhow::Result<Vec<Need>> {
        let records = self.collected(month.month()).await?;
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        let deployable: BTreeSet<&str> = month.deployable(ids).into_iter().collect();
        let mut needs = Vec::new();
        for record in records.iter().filter(|r| deployable.contains(r.id.as_str())) {
            let advisory: Advisory = serde_json::from_str(&record.document)
                .with_context(|| format!("stored advisory {} is damaged", record.id))?;
            needs.extend(self.needs_of(&advisory, endpoints).await?);
        }
        Ok(needs)
    }

    async fn needs_of(&self, advisory: &Advisory, endpoints: &[EndpointRecord]) -> anyhow::Result<Vec<Need>> {
        let found = crate::vulnerabilities::advisory_findings_on(self.store(), advisory, endpoints).await?;
        Ok(found
            .into_iter()
            .flat_map(|(endpoint, findings)| {
                findings.into_iter().map(|f| Need {
                    endpoint: endpoint.id.clone(),
                    advisory: advisory.id.clone(),
                    software: f.software,
                    fixed_version: f.fixed_version,
                })
            })
            .collect())
    }

    /// Stored packages by product.
    pub async fn packages(&self) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let mut by_product: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in self.store().list_packages().await? {
            by_product.entry(p.product).or_default().push(p.version);
        }
        Ok(by_product)
    }

    /// The endpoints step `step` of `month` targets.
    pub async fn targeted(&self, month: &Month, step: usize) -> anyhow::Result<Vec<EndpointRecord>> {
        let selector = self.step_of(month, step)?.targets().clone();
        Ok(self.endpoints().await?.iter().filter(|e| selector.matches(&e.id, &e.labels)).cloned().collect())
    }

    /// What step `step` of `month` would deploy if it started now.
    pub async fn plan_step(&self, month: &Month, step: usize) -> anyhow::Result<StoredPlan> {
        let targeted = self.targeted(month, step).await?;
        let needs = self.needs(month, &targeted).await?;
        let plan = dispatch::plan(&needs, &self.packages().await?);
        Ok(StoredPlan {
            deployments: plan
                .deployments
                .into_iter()
                .map(|d| StoredDeployment { product: d.product, version: d.version, endpoints: d.endpoints })
                .collect(),
            needs_package: plan.needs_package.into_iter().collect(),
        })
    }

    pub(super) async fn autofix_if_last(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        if loaded.month.step() + 1 != loaded.month.plan().len() {
            return Ok(false);
        }
        self.autofix(loaded, now).await
    }

    /// Adds a set for targeted endpoints of the last step that need an approved patch and are in
    /// no set of its current run for that package (or missed it while offline): endpoints that
    /// enrolled, came to need it, or came back after the step planned. One package per scan,
    /// once the run's planned sets exist and the latest has done what it can.
    pub async fn autofix(&self, loaded: &Loaded, now: Timestamp) -> anyhow::Result<bool> {
        let step = loaded.month.plan().len().saturating_sub(1);
        if !self.autofix_due || loaded.month.step() != step || !self.step_of(&loaded.month, step)?.global_autofix() {
            return Ok(false);
        }
        let Some(facts) = self.current_run(loaded).await? else { return Ok(false) };
        if facts.sets.len() < facts.plan.deployments.len() {
            return Ok(false);
        }
        let latest_live = facts.sets.values().next_back().filter(|(set, _)| !set.state.is_terminal());
        if let Some((_, members)) = latest_live {
            if !self.settled(members, now).await? {
                return Ok(false);
            }
        }
        let targeted = self.targeted(&loaded.month, step).await?;
        let plan = dispatch::plan(&self.needs(&loaded.month, &targeted).await?, &self.packages().await?);
        let covered: BTreeSet<(String, String, String)> = facts
            .sets
            .values()
            .flat_map(|(set, members)| {
                // A member still waiting in a set that ended missed the package: not covered.
                let live = !set.state.is_terminal();
                members
                    .iter()
                    .filter(move |(_, state)| live || *state != rollgate_core::member::MemberState::Pending)
                    .map(move |(endpoint, _)| (set.spec.product.clone(), set.spec.version.clone(), endpoint.clone()))
            })
            .collect();
        let Some(d) = dispatch::late(&plan, &covered).into_iter().next() else { return Ok(false) };
        if let Some((set, _)) = latest_live {
            let reason = format!("campaign {}: global autofix moves on to endpoints that came later", self.name);
            self.store().change_set_state(&set.spec.name, rollgate_core::set::SetEvent::Cancel, &reason, now).await?;
        }
        tracing::info!(
            campaign = self.name,
            "global autofix: {}@{} for {} endpoints that came later",
            d.product,
            d.version,
            d.endpoints.len()
        );
        let (_, run) = current_place(&loaded.month);
        let seq = u32::try_from(facts.sets.len()).unwrap_or(u32::MAX);
        let deployment = StoredDeployment { product: d.product, version: d.version, endpoints: d.endpoints };
        self.create_set(loaded, (step, run, seq), &deployment, now).await?;
        Ok(true)
    }
}

/// The advisories `month` of `campaign` collects.
pub async fn collected(
    store: &dyn Store,
    campaign: &ValidCampaign,
    month: YearMonth,
    first: YearMonth,
) -> anyhow::Result<Vec<AdvisoryRecord>> {
    let window = advisory_window(campaign, month, first)?;
    let records = store.list_advisories(&AdvisoryFilter { product: None, since: Some(window.from), cve: None }).await?;
    Ok(records
        .into_iter()
        .filter(|r| r.published_at.or(r.updated_at).is_some_and(|at| window.contains(at)))
        .filter(|r| campaign.products().is_empty() || r.products.iter().any(|p| campaign.includes_product(p)))
        .filter(|r| campaign.severities().is_empty() || campaign.severities().iter().any(|s| has_severity(r, *s)))
        .collect())
}

/// Whether `r` has `severity`: as the advisory list filters it (rating word or CVSS band), or
/// through a publisher's own word for it (`important`, `moderate`).
fn has_severity(r: &AdvisoryRecord, severity: Severity) -> bool {
    severity_matches(r, severity.as_str()) || r.rating.as_deref().and_then(Severity::of_rating) == Some(severity)
}
