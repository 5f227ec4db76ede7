//! Which endpoints an advisory affects, and which advisories affect an endpoint: stored
//! inventories (platform facts, distribution packages, managed products) put through
//! `rollgate_advisories::matching` (pure) here, in the shell.

use std::collections::BTreeMap;

use rollgate_advisories::matching::{cve_findings, findings, Finding, Inventory};
use rollgate_advisories::{Advisory, CveRecord};
use rollgate_store::{EndpointRecord, Store};
use rollgate_wire::AffectedEndpoint;

/// An endpoint's installed software: its packages and the products Rollgate manages there.
fn software_of(endpoint: &EndpointRecord, packages: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut software = packages;
    for (product, version) in &endpoint.products {
        software.entry(product.clone()).or_insert_with(|| version.clone());
    }
    software
}

fn findings_for(advisory: &Advisory, endpoint: &EndpointRecord, software: &BTreeMap<String, String>) -> Vec<Finding> {
    let inventory =
        Inventory { os_id: endpoint.os_id.as_deref(), os_version: endpoint.os_version.as_deref(), software };
    findings(advisory, &inventory)
}

/// The endpoints `advisory` affects now.
pub async fn affected_endpoints(store: &dyn Store, advisory: &Advisory) -> anyhow::Result<Vec<AffectedEndpoint>> {
    affected_by(store, &advisory.product_names(), |endpoint, software| findings_for(advisory, endpoint, software)).await
}

/// The endpoints a CVE record's affected products match now.
pub async fn affected_by_cve(store: &dyn Store, record: &CveRecord) -> anyhow::Result<Vec<AffectedEndpoint>> {
    let names: Vec<String> = record
        .affected
        .iter()
        .flat_map(|a| std::iter::once(&a.product).chain(&a.package_names))
        .map(|n| n.to_lowercase())
        .collect();
    affected_by(store, &names, |endpoint, software| {
        let inventory =
            Inventory { os_id: endpoint.os_id.as_deref(), os_version: endpoint.os_version.as_deref(), software };
        cve_findings(record, &inventory)
    })
    .await
}

/// Every endpoint for which `find` gives findings, over the packages named in `names`.
async fn affected_by(
    store: &dyn Store,
    names: &[String],
    find: impl Fn(&EndpointRecord, &BTreeMap<String, String>) -> Vec<Finding>,
) -> anyhow::Result<Vec<AffectedEndpoint>> {
    let mut packages: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (endpoint, name, version) in store.software_named(names).await? {
        packages.entry(endpoint).or_default().insert(name, version);
    }
    let mut affected = Vec::new();
    for endpoint in store.list_endpoints().await? {
        let software = software_of(&endpoint, packages.remove(&endpoint.id).unwrap_or_default());
        let found = find(&endpoint, &software);
        if !found.is_empty() {
            affected.push(AffectedEndpoint {
                endpoint: endpoint.id.clone(),
                hostname: endpoint.hostname.clone(),
                findings: found.iter().filter_map(|f| serde_json::to_value(f).ok()).collect(),
            });
        }
    }
    Ok(affected)
}

/// The advisories that affect `endpoint` now, each with its findings.
pub async fn open_for(store: &dyn Store, endpoint: &EndpointRecord) -> anyhow::Result<Vec<(Advisory, Vec<Finding>)>> {
    let software = software_of(endpoint, store.endpoint_software(&endpoint.id).await?);
    let names: Vec<String> = software.keys().map(|n| n.to_lowercase()).collect();
    let mut open = Vec::new();
    for record in store.advisories_naming(&names).await? {
        let advisory: Advisory = serde_json::from_str(&record.document)
            .map_err(|e| anyhow::anyhow!("stored advisory {} is damaged: {e}", record.id))?;
        let found = findings_for(&advisory, endpoint, &software);
        if !found.is_empty() {
            open.push((advisory, found));
        }
    }
    Ok(open)
}
