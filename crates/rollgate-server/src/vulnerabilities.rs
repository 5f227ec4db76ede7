//! Which endpoints an advisory affects, and which advisories affect an endpoint: stored
//! inventories (platform facts, distribution packages, managed products) put through
//! `rollgate_advisories::matching` (pure) here, in the shell.

use std::collections::BTreeMap;

use rollgate_advisories::matching::{cve_findings, findings, Finding, Inventory};
use rollgate_advisories::{Advisory, CveRecord};
use rollgate_store::{EndpointRecord, Store};
use rollgate_wire::AffectedEndpoint;

/// What matching sees of an endpoint: its platform, the packages given, its managed products.
fn inventory<'a>(endpoint: &'a EndpointRecord, packages: &'a BTreeMap<String, String>) -> Inventory<'a> {
    Inventory {
        os_id: endpoint.os_id.as_deref(),
        os_version: endpoint.os_version.as_deref(),
        packages,
        products: &endpoint.products,
    }
}

/// Names to look packages up by: each name, and its source package entry (`src:<name>`, which
/// the agent reports for dpkg).
fn lookup_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    names.into_iter().flat_map(|n| [n.to_lowercase(), format!("src:{}", n.to_lowercase())]).collect()
}

/// The endpoints `advisory` affects now.
pub async fn affected_endpoints(store: &dyn Store, advisory: &Advisory) -> anyhow::Result<Vec<AffectedEndpoint>> {
    let names = lookup_names(&advisory.product_names());
    affected_by(store, &names, |endpoint, packages| findings(advisory, &inventory(endpoint, packages))).await
}

/// The endpoints a CVE record's affected products match now.
pub async fn affected_by_cve(store: &dyn Store, record: &CveRecord) -> anyhow::Result<Vec<AffectedEndpoint>> {
    let names = lookup_names(record.affected.iter().flat_map(|a| std::iter::once(&a.product).chain(&a.package_names)));
    affected_by(store, &names, |endpoint, packages| cve_findings(record, &inventory(endpoint, packages))).await
}

/// Every endpoint for which `find` gives findings, given its packages named in `names`.
async fn affected_by(
    store: &dyn Store,
    names: &[String],
    find: impl Fn(&EndpointRecord, &BTreeMap<String, String>) -> Vec<Finding>,
) -> anyhow::Result<Vec<AffectedEndpoint>> {
    let endpoints = store.list_endpoints().await?;
    Ok(findings_by_endpoint(store, names, &endpoints, find)
        .await?
        .into_iter()
        .map(|(endpoint, found)| AffectedEndpoint {
            endpoint: endpoint.id.clone(),
            hostname: endpoint.hostname.clone(),
            findings: found.iter().filter_map(|f| serde_json::to_value(f).ok()).collect(),
        })
        .collect())
}

/// The findings of `advisory` on each of `endpoints` it affects now (the campaign driver's
/// question, over a step's targeted endpoints).
pub async fn advisory_findings_on<'e>(
    store: &dyn Store,
    advisory: &Advisory,
    endpoints: &'e [EndpointRecord],
) -> anyhow::Result<Vec<(&'e EndpointRecord, Vec<Finding>)>> {
    let names = lookup_names(&advisory.product_names());
    findings_by_endpoint(store, &names, endpoints, |endpoint, packages| {
        findings(advisory, &inventory(endpoint, packages))
    })
    .await
}

/// The endpoints among `endpoints` for which `find` gives findings, with them, given each
/// endpoint's packages named in `names`.
async fn findings_by_endpoint<'e>(
    store: &dyn Store,
    names: &[String],
    endpoints: &'e [EndpointRecord],
    find: impl Fn(&EndpointRecord, &BTreeMap<String, String>) -> Vec<Finding>,
) -> anyhow::Result<Vec<(&'e EndpointRecord, Vec<Finding>)>> {
    let mut packages: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (endpoint, name, version) in store.software_named(names).await? {
        packages.entry(endpoint).or_default().insert(name, version);
    }
    let none = BTreeMap::new();
    Ok(endpoints
        .iter()
        .filter_map(|endpoint| {
            let found = find(endpoint, packages.get(&endpoint.id).unwrap_or(&none));
            (!found.is_empty()).then_some((endpoint, found))
        })
        .collect())
}

/// The advisories that affect `endpoint` now, each with its findings.
pub async fn open_for(store: &dyn Store, endpoint: &EndpointRecord) -> anyhow::Result<Vec<(Advisory, Vec<Finding>)>> {
    let packages = store.endpoint_software(&endpoint.id).await?;
    // Advisories name binaries, sources (without the `src:` the agent puts before them) and
    // managed products.
    let names: Vec<String> = packages
        .keys()
        .chain(endpoint.products.keys())
        .map(|n| n.strip_prefix("src:").unwrap_or(n).to_lowercase())
        .collect();
    let mut open = Vec::new();
    for record in store.advisories_naming(&names).await? {
        let advisory: Advisory = serde_json::from_str(&record.document)
            .map_err(|e| anyhow::anyhow!("stored advisory {} is damaged: {e}", record.id))?;
        let found = findings(&advisory, &inventory(endpoint, &packages));
        if !found.is_empty() {
            open.push((advisory, found));
        }
    }
    Ok(open)
}
