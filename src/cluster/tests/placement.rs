//! Rendezvous placement: fixed scores, agreement, spread, and only a
//! leaving node's items moving.

use crate::cluster::placement::*;

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
