//! Which node should lead what: rendezvous (highest random weight)
//! hashing. Each (node, item) pair gets a score; an item goes to the live
//! node with the highest score. When a node leaves, only its items move,
//! each to its next-ranked node; when one joins, it takes about 1/n of the
//! items, from every node evenly. Every node computes the same answer from
//! the same member list, with no coordination.
//!
//! The score must be the same on every node and in every version: FNV-1a
//! over the two names (a zero byte between them), then a 64-bit finaliser
//! (splitmix64's) to spread FNV's weak low bits.

/// The score of `node` for `item`.
pub fn score(node: &str, item: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in node.bytes().chain([0]).chain(item.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The nodes in the order they should lead `item`: the first is its
/// leader, the next takes over when the first is gone. Ties (never seen
/// in practice) go to the smaller name, so every node agrees.
pub fn ranked<'a>(item: &str, nodes: &'a [String]) -> Vec<&'a str> {
    let mut v: Vec<(u64, &str)> = nodes.iter().map(|n| (score(n, item), n.as_str())).collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    v.into_iter().map(|(_, n)| n).collect()
}

/// The node that should lead `item`, if any node is live.
pub fn leader<'a>(item: &str, nodes: &'a [String]) -> Option<&'a str> {
    nodes
        .iter()
        .map(|n| (score(n, item), n.as_str()))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    fn items() -> Vec<String> {
        (0..6000).map(|p| format!("orders/{p}")).collect()
    }

    #[test]
    fn scores_are_fixed_across_builds() {
        // Pinned: a change here moves partitions between nodes of a
        // cluster running two versions.
        assert_eq!(score("node-1", "orders/0"), 0x929e_a165_eeca_f7fc);
        assert_ne!(score("a", "bc"), score("ab", "c"));
    }

    #[test]
    fn the_leader_is_the_first_of_the_ranking_and_the_same_in_any_order() {
        let mut ns = nodes(5);
        for item in items().iter().take(500) {
            let first = leader(item, &ns).map(str::to_string);
            assert_eq!(ranked(item, &ns)[0], first.as_deref().unwrap());
            ns.reverse();
            assert_eq!(leader(item, &ns).map(str::to_string), first);
        }
        assert_eq!(leader("x", &[]), None);
    }

    #[test]
    fn items_spread_evenly_and_only_a_leaving_nodes_items_move() {
        let ns = nodes(3);
        let all = items();
        let lead: Vec<&str> = all.iter().map(|i| leader(i, &ns).unwrap()).collect();
        for n in &ns {
            let share = lead.iter().filter(|l| **l == n.as_str()).count();
            // 2,000 expected each; a fair hash stays well within 10%.
            assert!((1800..=2200).contains(&share), "{n}: {share} of 6000");
        }
        let survivors: Vec<String> = ns.iter().filter(|n| *n != "node-2").cloned().collect();
        for (item, old) in all.iter().zip(&lead) {
            let new = leader(item, &survivors).unwrap();
            if *old != "node-2" {
                assert_eq!(new, *old, "{item} moved although its leader stayed");
            } else {
                // It goes to its second-ranked node.
                assert_eq!(new, ranked(item, &ns)[1]);
            }
        }
    }
}
