//! The seeded random order in which a set releases its endpoints.
//!
//! The seed says an operator's random order is random but reproducible: the same seed and the
//! same endpoints give the same order, whatever order the endpoints were listed in.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Returns `endpoint_ids` shuffled by `seed`, each id exactly once (duplicates are dropped).
///
/// The ids are sorted first so that the result depends only on the set of ids and the seed.
/// ChaCha8 is used because its stream is specified and stable across platforms and releases.
pub fn release_order(seed: u64, endpoint_ids: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = endpoint_ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ids.shuffle(&mut rng);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ep-{i:04}")).collect()
    }

    #[test]
    fn same_seed_same_order_regardless_of_input_order() {
        let forward = ids(200);
        let mut backward = forward.clone();
        backward.reverse();
        assert_eq!(release_order(7, &forward), release_order(7, &backward));
    }

    #[test]
    fn every_endpoint_exactly_once() {
        let mut input = ids(500);
        input.push("ep-0003".to_string());
        let mut order = release_order(42, &input);
        assert_eq!(order.len(), 500);
        order.sort();
        assert_eq!(order, ids(500));
    }

    #[test]
    fn different_seeds_differ_and_order_is_not_sorted() {
        let input = ids(100);
        let a = release_order(1, &input);
        let b = release_order(2, &input);
        assert_ne!(a, b);
        assert_ne!(a, input);
    }

    #[test]
    fn order_is_stable_across_releases() {
        // Pins the stream: a change here means existing sets would change their order on upgrade.
        let order = release_order(42, &ids(6));
        expect_test::expect![[r#"["ep-0002", "ep-0001", "ep-0005", "ep-0004", "ep-0003", "ep-0000"]"#]]
            .assert_eq(&format!("{order:?}"));
    }

    #[test]
    fn empty_input() {
        assert!(release_order(9, &[]).is_empty());
    }
}
