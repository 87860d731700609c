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
