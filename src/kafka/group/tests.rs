use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn join(member_id: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "c".into(),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), format!("meta-{member_id}").into_bytes()))
            .collect(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        require_known_member: true,
    }
}

fn joined(r: &Reply) -> &Joined {
    match r {
        Reply::Join { joined, .. } => joined,
        other => panic!("not a join answer: {other:?}"),
    }
}

fn synced(r: &Reply) -> (&str, i16, &[u8]) {
    match r {
        Reply::Sync {
            member_id,
            error,
            assignment,
        } => (member_id, *error, assignment),
        other => panic!("not a sync answer: {other:?}"),
    }
}

/// A member's full first join (v4+: the id first, then the join).
fn first_join(g: &mut Group, now: Instant) -> (String, Vec<Reply>) {
    let r = g.join(join("", &["range"]), now);
    let id = joined(&r[0]).member_id.clone();
    assert_eq!(joined(&r[0]).error, code::MEMBER_ID_REQUIRED);
    (id.clone(), g.join(join(&id, &["range"]), now))
}

#[test]
fn a_lone_member_gets_an_id_joins_leads_and_syncs() {
    let now = Instant::now();
    let mut g = Group::new(10);
    let (id, r) = first_join(&mut g, now);
    assert_eq!(r.len(), 1);
    let j = joined(&r[0]);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 1, id.as_str())
    );
    assert_eq!(j.members.len(), 1, "the leader gets the member list");
    assert_eq!(g.state, State::CompletingRebalance);
    let r = g.sync(&id, 1, vec![(id.clone(), b"p0,p1".to_vec())], now);
    assert_eq!(synced(&r[0]), (id.as_str(), 0, &b"p0,p1"[..]));
    assert_eq!(g.state, State::Stable);
    assert_eq!(g.heartbeat(&id, 1, now), code::NONE);
}

#[test]
fn a_second_member_rebalances_the_group_and_the_leader_assigns_both() {
    let now = Instant::now();
    let mut g = Group::new(10);
    let (a, _) = first_join(&mut g, now);
    g.sync(&a, 1, vec![(a.clone(), b"all".to_vec())], now);
    let (b, r) = first_join(&mut g, now);
    assert!(r.is_empty(), "b waits for a to rejoin");
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, 1, now), code::REBALANCE_IN_PROGRESS);
    let r = g.join(join(&a, &["range"]), now);
    assert_eq!(r.len(), 2, "both joins answered");
    let leader = r
        .iter()
        .map(joined)
        .find(|j| !j.members.is_empty())
        .unwrap();
    assert_eq!(
        (
            leader.generation,
            leader.leader.as_str(),
            leader.members.len()
        ),
        (2, a.as_str(), 2)
    );
    // The follower's sync waits for the leader's.
    assert!(g.sync(&b, 2, vec![], now).is_empty());
    let r = g.sync(
        &a,
        2,
        vec![(a.clone(), b"x".to_vec()), (b.clone(), b"y".to_vec())],
        now,
    );
    let mut got: Vec<_> = r.iter().map(synced).collect();
    got.sort();
    assert_eq!(
        got,
        vec![(a.as_str(), 0, &b"x"[..]), (b.as_str(), 0, &b"y"[..])]
    );
    assert_eq!(g.state, State::Stable);
}

#[test]
fn a_silent_member_is_evicted_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new(10);
    let (a, _) = first_join(&mut g, t0);
    let (b, _) = first_join(&mut g, t0);
    g.join(join(&a, &["range"]), t0);
    g.sync(&a, 2, vec![], t0);
    g.sync(&b, 2, vec![], t0);
    assert_eq!(g.state, State::Stable);
    // a heartbeats, b does not.
    assert_eq!(g.heartbeat(&a, 2, t0 + Duration::from_secs(8)), 0);
    assert!(g.tick(t0 + Duration::from_secs(9)).is_empty());
    g.tick(t0 + Duration::from_secs(11));
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![a.as_str()]);
    assert_eq!(
        g.heartbeat(&a, 2, t0 + Duration::from_secs(11)),
        code::REBALANCE_IN_PROGRESS
    );
    assert_eq!(g.heartbeat(&b, 2, t0), code::UNKNOWN_MEMBER_ID);
    let r = g.join(join(&a, &["range"]), t0 + Duration::from_secs(12));
    assert_eq!(joined(&r[0]).generation, 3);
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped_at_the_deadline() {
    let t0 = Instant::now();
    let mut g = Group::new(10);
    let (a, _) = first_join(&mut g, t0);
    g.sync(&a, 1, vec![], t0);
    let (b, r) = first_join(&mut g, t0);
    assert!(r.is_empty());
    assert!(g.tick(t0 + REBALANCE - Duration::from_millis(1)).is_empty());
    let r = g.tick(t0 + REBALANCE);
    assert_eq!(r.len(), 1);
    assert_eq!(joined(&r[0]).member_id, b);
    assert_eq!(joined(&r[0]).leader, b, "the old leader left; b leads");
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![b.as_str()]);
}

#[test]
fn a_static_member_restarted_keeps_its_place_without_a_rebalance() {
    let now = Instant::now();
    let mut g = Group::new(10);
    let mut leader = join("", &["range"]);
    leader.require_known_member = false;
    let a = joined(&g.join(leader, now)[0]).member_id.clone();
    let mut st = join("", &["range"]);
    st.instance_id = Some("host-1".into());
    assert!(g.join(st.clone(), now).is_empty());
    let r = g.join(join(&a, &["range"]), now);
    let s = r
        .iter()
        .map(joined)
        .find(|j| j.member_id != a)
        .unwrap()
        .member_id
        .clone();
    g.sync(
        &a,
        2,
        vec![(a.clone(), b"A".to_vec()), (s.clone(), b"S".to_vec())],
        now,
    );
    assert_eq!(g.state, State::Stable);
    // The static member restarts: no member id, the same instance id.
    let r = g.join(st.clone(), now);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (joined(&r[0]).member_id.as_str(), joined(&r[0]).generation),
        (s.as_str(), 2)
    );
    assert_eq!(g.state, State::Stable, "no rebalance");
    assert_eq!(synced(&g.sync(&s, 2, vec![], now)[0]).2, b"S");
    // Another process claiming the instance with another id is fenced.
    st.member_id = "impostor".into();
    assert_eq!(joined(&g.join(st, now)[0]).error, code::FENCED_INSTANCE_ID);
}

#[test]
fn errors_are_kafkas() {
    let now = Instant::now();
    let mut g = Group::new(2);
    let (a, _) = first_join(&mut g, now);
    g.sync(&a, 1, vec![], now);
    assert_eq!(g.heartbeat("nobody", 1, now), code::UNKNOWN_MEMBER_ID);
    assert_eq!(g.heartbeat(&a, 7, now), code::ILLEGAL_GENERATION);
    assert_eq!(
        synced(&g.sync(&a, 0, vec![], now)[0]).1,
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        joined(&g.join(join("ghost", &["range"]), now)[0]).error,
        code::UNKNOWN_MEMBER_ID
    );
    let mut other = join(&a, &["range"]);
    other.protocol_type = "connect".into();
    assert_eq!(
        joined(&g.join(other, now)[0]).error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    first_join(&mut g, now);
    assert_eq!(
        joined(&g.join(join("", &["range"]), now)[0]).error,
        code::GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(g.check_commit(&a, 1), code::REBALANCE_IN_PROGRESS);
    assert_eq!(
        g.check_commit("x", -1),
        code::UNKNOWN_MEMBER_ID,
        "members exist"
    );
}

#[test]
fn leaving_rebalances_and_the_last_one_out_empties_the_group() {
    let now = Instant::now();
    let mut g = Group::new(10);
    let (a, _) = first_join(&mut g, now);
    let (b, _) = first_join(&mut g, now);
    g.join(join(&a, &["range"]), now);
    g.sync(&a, 2, vec![], now);
    g.leave(std::slice::from_ref(&b), now);
    assert_eq!(g.state, State::PreparingRebalance);
    let r = g.join(join(&a, &["range"]), now);
    assert_eq!(joined(&r[0]).generation, 3);
    g.leave(&[a], now);
    assert_eq!(g.state, State::Empty);
    assert_eq!(
        g.check_commit("anyone", -1),
        code::NONE,
        "simple consumers commit to an empty group"
    );
}

#[test]
fn the_protocol_is_one_every_member_supports_and_most_prefer() {
    let now = Instant::now();
    let mut g = Group::new(10);
    let mut ids = Vec::new();
    for protocols in [
        &["range", "roundrobin"][..],
        &["roundrobin", "range"],
        &["roundrobin"],
    ] {
        let r = g.join(join("", protocols), now);
        let id = joined(&r[0]).member_id.clone();
        g.join(join(&id, protocols), now);
        ids.push((id, protocols));
    }
    // The first rejoins; the other two are waiting in their joins.
    let (first, protocols) = &ids[0];
    let r = g.join(join(first, protocols), now);
    assert_eq!(r.len(), 3);
    assert_eq!(joined(&r[0]).protocol.as_deref(), Some("roundrobin"));
}
