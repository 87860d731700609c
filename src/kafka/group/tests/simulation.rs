//! Random clients against one [`Group`]: joins, syncs, heartbeats, leaves,
//! deaths and time passing, in random order over many seeds. What the
//! worst group-coordinator bugs elsewhere broke is checked after every
//! step: a request waits only in the state whose end answers it, every
//! answer goes to a request that waits for it (once), the leader is a
//! member, and once clients stop, time alone answers everything.

use super::super::*;
use crate::util::xorshift::XorShift64;
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Join,
    Sync,
}

#[derive(Default)]
struct Client {
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    waiting: Option<(String, Kind)>,
}

struct World {
    g: Group,
    clients: Vec<Client>,
    /// Waits of clients that died: answers to them are allowed.
    abandoned: BTreeSet<(String, Kind)>,
    now: Instant,
}

impl World {
    fn deliver(&mut self, replies: Vec<Reply>) {
        for r in replies {
            let (member, kind) = match &r {
                Reply::Join { member_id, .. } => (member_id.clone(), Kind::Join),
                Reply::Sync { member_id, .. } => (member_id.clone(), Kind::Sync),
            };
            let key = (member.clone(), kind);
            let Some(c) = self
                .clients
                .iter_mut()
                .find(|c| c.waiting.as_ref() == Some(&key))
            else {
                assert!(
                    self.abandoned.remove(&key),
                    "an answer nobody waits for: {r:?}"
                );
                continue;
            };
            c.waiting = None;
            if let Reply::Join { joined, .. } = r {
                match joined.error {
                    code::NONE => {
                        c.member_id = joined.member_id;
                        c.generation = joined.generation;
                    }
                    code::MEMBER_ID_REQUIRED => c.member_id = joined.member_id,
                    code::UNKNOWN_MEMBER_ID | code::FENCED_INSTANCE_ID => c.member_id.clear(),
                    _ => {}
                }
            }
        }
    }

    fn step(&mut self, rng: &mut XorShift64) {
        let i = (rng.next_u64() % self.clients.len() as u64) as usize;
        let now = self.now;
        match rng.next_u64() % 8 {
            0 | 1 if self.clients[i].waiting.is_none() => {
                let c = &self.clients[i];
                let j = Join {
                    member_id: c.member_id.clone(),
                    instance_id: c.instance_id.clone(),
                    client_id: format!("c{i}"),
                    client_host: "/127.0.0.1".into(),
                    protocol_type: "consumer".into(),
                    protocols: vec![("range".into(), vec![i as u8])],
                    session_timeout: Duration::from_secs(10),
                    rebalance_timeout: Duration::from_secs(30),
                    require_known_member: rng.next_u64().is_multiple_of(2),
                };
                let (id, replies) = self.g.join(j, now);
                self.clients[i].waiting = Some((id, Kind::Join));
                self.deliver(replies);
            }
            2 | 3 if self.clients[i].waiting.is_none() && !self.clients[i].member_id.is_empty() => {
                let c = &self.clients[i];
                let id = c.member_id.clone();
                let caller = Caller::new(&id, c.instance_id.as_deref());
                let assignments = vec![(id.clone(), vec![1])];
                let replies = self.g.sync(caller, c.generation, assignments, now);
                self.clients[i].waiting = Some((id, Kind::Sync));
                self.deliver(replies);
            }
            4 if self.clients[i].waiting.is_none() => {
                let c = &self.clients[i];
                let caller = Caller::new(&c.member_id, c.instance_id.as_deref());
                self.g.heartbeat(caller, c.generation, now);
            }
            5 if rng.next_u64().is_multiple_of(4) => {
                let c = &self.clients[i];
                let (_, replies) = self
                    .g
                    .leave(&[Caller::new(&c.member_id, c.instance_id.as_deref())], now);
                self.deliver(replies);
            }
            6 if rng.next_u64().is_multiple_of(8) => {
                // Dies: its waits are abandoned; it comes back as new.
                let c = &mut self.clients[i];
                if let Some(w) = c.waiting.take() {
                    self.abandoned.insert(w);
                }
                c.member_id.clear();
            }
            _ => {
                self.now += Duration::from_millis(rng.next_u64() % 3_000);
                let replies = self.g.tick(self.now);
                self.deliver(replies);
            }
        }
    }

    fn check(&self) {
        let members: Vec<String> = self.g.describe().into_iter().map(|m| m.member_id).collect();
        assert_eq!(
            self.g.state == State::Empty,
            members.is_empty(),
            "{:?}",
            self.g
        );
        if matches!(self.g.state, State::CompletingRebalance | State::Stable) {
            let leader = self.g.leader.as_ref().expect("a leader");
            assert!(
                members.contains(leader),
                "the leader {leader} is not a member"
            );
        }
        for c in &self.clients {
            match &c.waiting {
                Some((_, Kind::Join)) => assert_eq!(self.g.state, State::PreparingRebalance),
                Some((_, Kind::Sync)) => assert_eq!(self.g.state, State::CompletingRebalance),
                None => {}
            }
        }
    }
}

#[test]
fn random_clients_never_leave_a_request_unanswered() {
    for seed in 1..=300 {
        let mut rng = XorShift64::new(seed);
        let clients = (0..5)
            .map(|i| Client {
                instance_id: (i < 2).then(|| format!("static-{i}")),
                ..Client::default()
            })
            .collect();
        let mut w = World {
            g: Group::new(4, seed),
            clients,
            abandoned: BTreeSet::new(),
            now: Instant::now(),
        };
        for _ in 0..400 {
            w.step(&mut rng);
            w.check();
        }
        // The clients stop; time alone must answer every wait.
        for _ in 0..100 {
            w.now += Duration::from_secs(5);
            let replies = w.g.tick(w.now);
            w.deliver(replies);
            w.check();
        }
        let stuck: Vec<_> = w.clients.iter().filter_map(|c| c.waiting.clone()).collect();
        assert!(stuck.is_empty(), "seed {seed}: still waiting: {stuck:?}");
    }
}
