use super::*;

mod simulation;
use std::time::Instant;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn join(member_id: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
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

fn me(id: &str) -> Caller<'_> {
    Caller::new(id, None)
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
    let (id, r) = g.join(join("", &["range"]), now);
    assert_eq!(joined(&r[0]).error, code::MEMBER_ID_REQUIRED);
    assert_eq!(joined(&r[0]).member_id, id);
    let (again, r) = g.join(join(&id, &["range"]), now);
    assert_eq!(again, id);
    (id, r)
}

/// Two members, a leading, in a stable generation 2.
fn stable_pair(g: &mut Group, now: Instant) -> (String, String) {
    let (a, _) = first_join(g, now);
    let (b, _) = first_join(g, now);
    g.join(join(&a, &["range"]), now);
    g.sync(me(&b), 2, vec![], now);
    g.sync(me(&a), 2, vec![], now);
    assert_eq!((g.state, g.generation), (State::Stable, 2));
    (a, b)
}

#[test]
fn a_lone_member_gets_an_id_joins_leads_and_syncs() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (id, r) = first_join(&mut g, now);
    assert_eq!(r.len(), 1);
    let j = joined(&r[0]);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 1, id.as_str())
    );
    assert!(id.starts_with("c-") && id.len() == 2 + 16, "{id}");
    assert_eq!(j.members.len(), 1, "the leader gets the member list");
    assert_eq!(g.state, State::CompletingRebalance);
    let r = g.sync(me(&id), 1, vec![(id.clone(), b"p0,p1".to_vec())], now);
    assert_eq!(synced(&r[0]), (id.as_str(), 0, &b"p0,p1"[..]));
    assert_eq!(g.state, State::Stable);
    assert_eq!(g.heartbeat(me(&id), 1, now), code::NONE);
    assert_eq!(g.describe()[0].assignment, b"p0,p1");
}

#[test]
fn member_ids_differ_between_seeds_so_restarts_do_not_reuse_them() {
    let now = Instant::now();
    let (a, _) = Group::new(10, 1).join(join("", &["range"]), now);
    let (b, _) = Group::new(10, 2).join(join("", &["range"]), now);
    assert_ne!(a, b);
}

#[test]
fn a_second_member_rebalances_the_group_and_the_leader_assigns_both() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, _) = first_join(&mut g, now);
    g.sync(me(&a), 1, vec![(a.clone(), b"all".to_vec())], now);
    let (b, r) = first_join(&mut g, now);
    assert!(r.is_empty(), "b waits for a to rejoin");
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat(me(&a), 1, now), code::REBALANCE_IN_PROGRESS);
    assert_eq!(
        g.check_commit(me(&a), 1),
        code::NONE,
        "a commits before it rejoins"
    );
    let (_, r) = g.join(join(&a, &["range"]), now);
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
    assert_eq!(
        g.check_commit(me(&a), 2),
        code::REBALANCE_IN_PROGRESS,
        "no commits while the leader assigns"
    );
    // The follower's sync waits for the leader's.
    assert!(g.sync(me(&b), 2, vec![], now).is_empty());
    let r = g.sync(
        me(&a),
        2,
        vec![(a.clone(), b"x".to_vec()), (b.clone(), b"y".to_vec())],
        now,
    );
    let mut got: Vec<_> = r.iter().map(synced).collect();
    got.sort();
    let mut want = vec![(a.as_str(), 0, &b"x"[..]), (b.as_str(), 0, &b"y"[..])];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(g.state, State::Stable);
    assert_eq!(g.check_commit(me(&b), 2), code::NONE);
}

#[test]
fn a_waiting_sync_is_answered_when_a_new_member_restarts_the_rebalance() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, _) = first_join(&mut g, now);
    let (b, _) = first_join(&mut g, now);
    g.join(join(&a, &["range"]), now);
    assert!(g.sync(me(&b), 2, vec![], now).is_empty(), "b waits for a");
    let (_, r) = g.join(join("", &["range"]), now);
    let (c, _) = (joined(&r[0]).member_id.clone(), ());
    let (_, r) = g.join(join(&c, &["range"]), now);
    assert_eq!(r.len(), 1, "only b's waiting sync is answered");
    assert_eq!(
        synced(&r[0]),
        (b.as_str(), code::REBALANCE_IN_PROGRESS, &b""[..])
    );
    assert_eq!(g.state, State::PreparingRebalance);
}

#[test]
fn a_silent_member_is_evicted_and_the_rest_rebalance() {
    let t0 = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, b) = stable_pair(&mut g, t0);
    // a heartbeats, b does not.
    assert_eq!(g.heartbeat(me(&a), 2, t0 + Duration::from_secs(8)), 0);
    assert!(g.tick(t0 + Duration::from_secs(9)).is_empty());
    g.tick(t0 + Duration::from_secs(11));
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![a.as_str()]);
    assert_eq!(
        g.heartbeat(me(&a), 2, t0 + Duration::from_secs(11)),
        code::REBALANCE_IN_PROGRESS
    );
    assert_eq!(g.heartbeat(me(&b), 2, t0), code::UNKNOWN_MEMBER_ID);
    let (_, r) = g.join(join(&a, &["range"]), t0 + Duration::from_secs(12));
    assert_eq!(joined(&r[0]).generation, 3);
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped_at_the_deadline() {
    let t0 = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, _) = first_join(&mut g, t0);
    g.sync(me(&a), 1, vec![], t0);
    let (b, r) = first_join(&mut g, t0);
    assert!(r.is_empty());
    // a stays alive (its heartbeats say a rebalance is on) but never rejoins.
    for s in [5, 10, 15, 20, 25] {
        let at = t0 + Duration::from_secs(s);
        assert_eq!(g.heartbeat(me(&a), 1, at), code::REBALANCE_IN_PROGRESS);
        assert!(g.tick(at).is_empty());
    }
    assert!(g.tick(t0 + REBALANCE - Duration::from_millis(1)).is_empty());
    let r = g.tick(t0 + REBALANCE);
    assert_eq!(r.len(), 1);
    assert_eq!(joined(&r[0]).member_id, b);
    assert_eq!(joined(&r[0]).leader, b, "the old leader left; b leads");
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![b.as_str()]);
}

#[test]
fn a_member_that_dies_during_a_rebalance_is_dropped_at_its_session_timeout() {
    let t0 = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, b) = stable_pair(&mut g, t0);
    // A third member's join starts a rebalance; a rejoins, b has died.
    let (c, _) = first_join(&mut g, t0);
    g.join(join(&a, &["range"]), t0);
    assert!(g.tick(t0 + SESSION - Duration::from_millis(1)).is_empty());
    let r = g.tick(t0 + SESSION);
    assert_eq!(
        r.len(),
        2,
        "a and c answered long before the rebalance timeout"
    );
    assert!(!g.has_member(&b) && g.has_member(&c));
    assert_eq!(g.generation, 3);
}

#[test]
fn a_leader_that_never_assigns_is_dropped_and_the_rest_rejoin() {
    let t0 = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, _) = first_join(&mut g, t0);
    let (b, _) = first_join(&mut g, t0);
    let later = t0 + Duration::from_secs(5);
    g.join(join(&a, &["range"]), later);
    assert_eq!(g.state, State::CompletingRebalance);
    // b syncs and waits; a (the leader) keeps heartbeating but never syncs.
    assert!(g.sync(me(&b), 2, vec![], later).is_empty());
    for s in [10, 20, 29] {
        let at = later + Duration::from_secs(s);
        assert_eq!(g.heartbeat(me(&a), 2, at), code::NONE);
        assert!(g.tick(at).is_empty());
    }
    let r = g.tick(later + REBALANCE);
    assert_eq!(
        synced(&r[0]),
        (b.as_str(), code::REBALANCE_IN_PROGRESS, &b""[..])
    );
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![b.as_str()]);
    assert_eq!(g.state, State::PreparingRebalance);
}

#[test]
fn a_static_member_restarted_keeps_its_place_without_a_rebalance() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, _) = first_join(&mut g, now);
    let mut st = join("", &["range"]);
    st.instance_id = Some("host-1".into());
    let (s, r) = g.join(st.clone(), now);
    assert!(r.is_empty(), "a static member needs no MEMBER_ID_REQUIRED");
    g.join(join(&a, &["range"]), now);
    g.sync(me(&s), 2, vec![], now);
    g.sync(
        me(&a),
        2,
        vec![(a.clone(), b"A".to_vec()), (s.clone(), b"S".to_vec())],
        now,
    );
    assert_eq!(g.state, State::Stable);
    // The static member restarts: no member id, the same instance id. It
    // gets a new id, the current generation, and its old assignment.
    let (s2, r) = g.join(st.clone(), now);
    assert_ne!(s2, s);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (joined(&r[0]).member_id.as_str(), joined(&r[0]).generation),
        (s2.as_str(), 2)
    );
    assert_eq!(g.state, State::Stable, "no rebalance");
    let inst = Some("host-1");
    assert_eq!(
        synced(&g.sync(Caller::new(&s2, inst), 2, vec![], now)[0]).2,
        b"S"
    );
    assert_eq!(g.heartbeat(me(&a), 2, now), code::NONE, "a saw nothing");
    // The old process, still around, is fenced.
    let old = Caller::new(&s, inst);
    assert_eq!(g.heartbeat(old, 2, now), code::FENCED_INSTANCE_ID);
    assert_eq!(g.check_commit(old, 2), code::FENCED_INSTANCE_ID);
    st.member_id = s.clone();
    assert_eq!(
        joined(&g.join(st, now).1[0]).error,
        code::FENCED_INSTANCE_ID
    );
    // It leaves by its instance id alone (v3+).
    let (codes, _) = g.leave(&[Caller::new("", inst)], now);
    assert_eq!(codes, vec![code::NONE]);
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![a.as_str()]);
}

#[test]
fn errors_are_kafkas() {
    let now = Instant::now();
    let mut g = Group::new(2, 1);
    let (a, _) = first_join(&mut g, now);
    g.sync(me(&a), 1, vec![], now);
    assert_eq!(g.heartbeat(me("nobody"), 1, now), code::UNKNOWN_MEMBER_ID);
    assert_eq!(g.heartbeat(me(&a), 7, now), code::ILLEGAL_GENERATION);
    assert_eq!(
        synced(&g.sync(me(&a), 0, vec![], now)[0]).1,
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        joined(&g.join(join("ghost", &["range"]), now).1[0]).error,
        code::UNKNOWN_MEMBER_ID
    );
    let mut other = join(&a, &["range"]);
    other.protocol_type = "connect".into();
    assert_eq!(
        joined(&g.join(other, now).1[0]).error,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    first_join(&mut g, now);
    assert_eq!(
        joined(&g.join(join("", &["range"]), now).1[0]).error,
        code::GROUP_MAX_SIZE_REACHED
    );
    assert_eq!(
        g.check_commit(me("x"), -1),
        code::UNKNOWN_MEMBER_ID,
        "members exist"
    );
    let (codes, r) = g.leave(&[me("ghost")], now);
    assert_eq!((codes, r.len()), (vec![code::UNKNOWN_MEMBER_ID], 0));
}

#[test]
fn an_id_handed_out_but_never_used_expires_with_its_session() {
    let now = Instant::now();
    let mut g = Group::new(1, 1);
    let (id, _) = g.join(join("", &["range"]), now);
    assert!(!g.is_unused());
    g.tick(now + SESSION);
    assert!(g.is_unused());
    assert_eq!(
        joined(&g.join(join(&id, &["range"]), now).1[0]).error,
        code::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn leaving_rebalances_and_the_last_one_out_empties_the_group() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, b) = stable_pair(&mut g, now);
    g.leave(&[me(&b)], now);
    assert_eq!(g.state, State::PreparingRebalance);
    let (_, r) = g.join(join(&a, &["range"]), now);
    assert_eq!(joined(&r[0]).generation, 3);
    // a, alone, assigns at once; a leader's rejoin starts a rebalance.
    assert_eq!(g.sync(me(&a), 3, vec![], now).len(), 1);
    let (_, r) = g.join(join(&a, &["range"]), now);
    assert_eq!(joined(&r[0]).generation, 4);
    let (codes, r) = g.leave(&[me(&a)], now);
    assert_eq!((codes, r.len()), (vec![code::NONE], 0));
    assert_eq!(g.state, State::Empty);
    assert!(g.is_unused());
    assert_eq!(
        g.check_commit(me("anyone"), -1),
        code::NONE,
        "simple consumers commit to an empty group"
    );
}

#[test]
fn a_member_leaving_while_its_join_waits_gets_an_answer() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let (a, b) = stable_pair(&mut g, now);
    let (_, r) = g.join(join(&b, &["range", "roundrobin"]), now);
    assert!(r.is_empty(), "b waits for a");
    let (_, r) = g.leave(&[me(&b)], now);
    assert_eq!(r.len(), 1);
    assert_eq!(joined(&r[0]).error, code::UNKNOWN_MEMBER_ID);
    assert_eq!(joined(&r[0]).member_id, b);
    assert_eq!(g.member_ids().collect::<Vec<_>>(), vec![a.as_str()]);
}

#[test]
fn the_protocol_is_one_every_member_supports_and_most_prefer() {
    let now = Instant::now();
    let mut g = Group::new(10, 1);
    let mut ids = Vec::new();
    for protocols in [
        &["range", "roundrobin"][..],
        &["roundrobin", "range"],
        &["roundrobin"],
    ] {
        let (id, _) = g.join(join("", protocols), now);
        g.join(join(&id, protocols), now);
        ids.push((id, protocols));
    }
    // The first rejoins; the other two are waiting in their joins.
    let (first, protocols) = &ids[0];
    let (_, r) = g.join(join(first, protocols), now);
    assert_eq!(r.len(), 3);
    assert_eq!(joined(&r[0]).protocol.as_deref(), Some("roundrobin"));
}
