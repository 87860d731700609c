//! Kafka's classic consumer-group membership, as a pure state machine (no
//! threads, no clock of its own: callers pass `now`). The coordinator that
//! will serve JoinGroup, SyncGroup, Heartbeat and LeaveGroup (issue 20)
//! drives one [`Group`] per group id; answers that must wait (a join until
//! the rebalance completes, a sync until the leader's assignment) come back
//! as [`Reply`] values the caller delivers when they are ready.
//!
//! States, as Kafka documents them:
//!
//! ```text
//!  Empty ──join──► PreparingRebalance ──all joined / timeout──► CompletingRebalance
//!    ▲                    ▲    ▲                                       │ leader's sync
//!    └── last leaves ─────┘    └──── join, leave, expiry ◄──── Stable ◄┘
//! ```
//!
//! Not wired to the listener yet: JoinGroup and friends are not advertised
//! until the coordinator around this is built and tested with real clients.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Kafka error codes of the group APIs.
pub mod code {
    pub const NONE: i16 = 0;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

/// A join, as JoinGroup carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// Empty on a member's first join.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// JoinGroup v4+: an unknown member first gets an id and
    /// MEMBER_ID_REQUIRED, then joins with it.
    pub require_known_member: bool,
}

/// What a join is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    pub error: i16,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// The members and their metadata for the chosen protocol: the leader
    /// only; empty for the others.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

/// An answer for a member, to be delivered by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join {
        member_id: String,
        joined: Joined,
    },
    Sync {
        member_id: String,
        error: i16,
        assignment: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
struct Member {
    instance_id: Option<String>,
    protocols: Vec<(String, Vec<u8>)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignment: Vec<u8>,
    last_seen: Instant,
    /// Rejoined in the rebalance under way (its join answer is pending).
    awaiting_join: bool,
    /// Sent SyncGroup and waits for the leader's assignment.
    awaiting_sync: bool,
}

/// One group's membership.
#[derive(Debug)]
pub struct Group {
    pub state: State,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not joined yet.
    pending: BTreeMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    next_id: u64,
    max_members: usize,
}

impl Group {
    pub fn new(max_members: usize) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            rebalance_deadline: None,
            next_id: 0,
            max_members,
        }
    }

    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// A join. Returns the answers that are ready now (this member's, or
    /// everyone's when its join completes the rebalance).
    pub fn join(&mut self, j: Join, now: Instant) -> Vec<Reply> {
        if let Some(t) = &self.protocol_type {
            if !self.members.is_empty() && *t != j.protocol_type {
                return vec![join_error(&j.member_id, code::INCONSISTENT_GROUP_PROTOCOL)];
            }
        }
        let member_id = match self.admit(&j, now) {
            Ok(id) => id,
            Err(reply) => return vec![*reply],
        };
        let m = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: j.instance_id.clone(),
                protocols: Vec::new(),
                session_timeout: j.session_timeout,
                rebalance_timeout: j.rebalance_timeout,
                assignment: Vec::new(),
                last_seen: now,
                awaiting_join: false,
                awaiting_sync: false,
            });
        let unchanged = m.protocols == j.protocols;
        m.protocols = j.protocols;
        m.session_timeout = j.session_timeout;
        m.rebalance_timeout = j.rebalance_timeout;
        m.last_seen = now;
        m.awaiting_join = true;
        self.protocol_type = Some(j.protocol_type);
        // A known follower rejoining a stable group unchanged: nothing to
        // rebalance; it gets the current generation at once.
        if self.state == State::Stable && unchanged && self.leader.as_deref() != Some(&member_id) {
            if let Some(m) = self.members.get_mut(&member_id) {
                m.awaiting_join = false;
            }
            return vec![self.joined_reply(&member_id)];
        }
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now, false)
    }

    /// The member id this join is for, or the answer that ends it here
    /// (boxed: a `Reply` is large, and this is the rare path).
    fn admit(&mut self, j: &Join, now: Instant) -> Result<String, Box<Reply>> {
        if let Some(instance) = &j.instance_id {
            // Static membership: the instance keeps its place; a new member
            // id for it (a restart) replaces the old one.
            let known = self
                .members
                .iter()
                .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
                .map(|(id, _)| id.clone());
            if let Some(old) = known {
                if j.member_id.is_empty() || j.member_id == old {
                    return Ok(old);
                }
                return Err(Box::new(join_error(&j.member_id, code::FENCED_INSTANCE_ID)));
            }
        }
        if j.member_id.is_empty() {
            if self.members.len() + self.pending.len() >= self.max_members {
                return Err(Box::new(join_error("", code::GROUP_MAX_SIZE_REACHED)));
            }
            self.next_id += 1;
            let id = format!("{}-{}", j.client_id, self.next_id);
            if j.require_known_member && j.instance_id.is_none() {
                self.pending.insert(id.clone(), now);
                return Err(Box::new(join_error(&id, code::MEMBER_ID_REQUIRED)));
            }
            return Ok(id);
        }
        if self.members.contains_key(&j.member_id) || self.pending.remove(&j.member_id).is_some() {
            return Ok(j.member_id.clone());
        }
        Err(Box::new(join_error(&j.member_id, code::UNKNOWN_MEMBER_ID)))
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        self.state = State::PreparingRebalance;
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + longest);
        // Members waiting for a sync of the old generation learn of it.
        for m in self.members.values_mut() {
            m.awaiting_sync = false;
        }
    }

    /// Completes the rebalance when every member has rejoined, or (with
    /// `expired`) drops the ones that did not and completes with the rest.
    fn maybe_complete_join(&mut self, _now: Instant, expired: bool) -> Vec<Reply> {
        if self.state != State::PreparingRebalance {
            return Vec::new();
        }
        if !expired && self.members.values().any(|m| !m.awaiting_join) {
            return Vec::new();
        }
        self.members.retain(|_, m| m.awaiting_join);
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.become_empty();
            return Vec::new();
        }
        self.generation += 1;
        self.protocol = self.choose_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        ids.iter()
            .map(|id| {
                if let Some(m) = self.members.get_mut(id) {
                    m.awaiting_join = false;
                }
                self.joined_reply(id)
            })
            .collect()
    }

    /// The protocol every member supports that most members prefer.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let common: Vec<&String> = first
            .protocols
            .iter()
            .map(|(p, _)| p)
            .filter(|p| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(q, _)| q == *p))
            })
            .collect();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| common.contains(&p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by_key(|(p, n)| (*n, std::cmp::Reverse((*p).clone())))
            .map(|(p, _)| p.clone())
    }

    fn joined_reply(&self, member_id: &str) -> Reply {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            let protocol = self.protocol.clone().unwrap_or_default();
            self.members
                .iter()
                .map(|(id, m)| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(p, _)| *p == protocol)
                        .map(|(_, meta)| meta.clone())
                        .unwrap_or_default();
                    (id.clone(), m.instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        Reply::Join {
            member_id: member_id.to_string(),
            joined: Joined {
                error: code::NONE,
                generation: self.generation,
                protocol: self.protocol.clone(),
                leader,
                member_id: member_id.to_string(),
                members,
            },
        }
    }

    /// A sync. The leader's carries every member's assignment.
    pub fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Vec<Reply> {
        let error = self.check(member_id, generation);
        if error != code::NONE {
            return vec![sync_reply(member_id, error, Vec::new())];
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        match self.state {
            State::Stable => {
                let a = self
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                vec![sync_reply(member_id, code::NONE, a)]
            }
            State::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Vec::new();
                }
                for (id, a) in assignments {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.assignment = a;
                    }
                }
                self.state = State::Stable;
                self.members
                    .iter_mut()
                    .filter(|(_, m)| m.awaiting_sync)
                    .map(|(id, m)| {
                        m.awaiting_sync = false;
                        sync_reply(id, code::NONE, m.assignment.clone())
                    })
                    .collect()
            }
            State::PreparingRebalance | State::Empty => {
                vec![sync_reply(
                    member_id,
                    code::REBALANCE_IN_PROGRESS,
                    Vec::new(),
                )]
            }
        }
    }

    /// A heartbeat's error code (NONE keeps the member's session alive).
    pub fn heartbeat(&mut self, member_id: &str, generation: i32, now: Instant) -> i16 {
        let error = self.check(member_id, generation);
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_seen = now;
        }
        match (error, self.state) {
            (code::NONE, State::PreparingRebalance) => code::REBALANCE_IN_PROGRESS,
            (e, _) => e,
        }
    }

    /// Whether `member_id` of `generation` may commit offsets (generation
    /// -1: a simple consumer outside the group's membership, accepted
    /// while the group has no members).
    pub fn check_commit(&self, member_id: &str, generation: i32) -> i16 {
        if generation < 0 && self.members.is_empty() {
            return code::NONE;
        }
        match self.check(member_id, generation) {
            code::NONE if self.state == State::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            e => e,
        }
    }

    fn check(&self, member_id: &str, generation: i32) -> i16 {
        if !self.members.contains_key(member_id) {
            code::UNKNOWN_MEMBER_ID
        } else if generation != self.generation {
            code::ILLEGAL_GENERATION
        } else {
            code::NONE
        }
    }

    /// Members leave (LeaveGroup); the others rebalance.
    pub fn leave(&mut self, member_ids: &[String], now: Instant) -> Vec<Reply> {
        let before = self.members.len();
        for id in member_ids {
            self.members.remove(id);
        }
        if self.members.len() == before {
            return Vec::new();
        }
        self.after_removal(now)
    }

    fn after_removal(&mut self, now: Instant) -> Vec<Reply> {
        if self.members.is_empty() {
            self.become_empty();
            return Vec::new();
        }
        if self.state == State::PreparingRebalance {
            return self.maybe_complete_join(now, false);
        }
        self.prepare_rebalance(now);
        Vec::new()
    }

    fn become_empty(&mut self) {
        self.state = State::Empty;
        self.leader = None;
        self.protocol = None;
        self.rebalance_deadline = None;
        self.generation += 1;
    }

    /// Time passing: members whose session ran out are removed (a member
    /// waiting in a join is covered by the rebalance timeout instead), a
    /// rebalance past its deadline completes with those that rejoined, and
    /// ids handed out but never used are forgotten.
    pub fn tick(&mut self, now: Instant) -> Vec<Reply> {
        self.pending
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(300));
        if self.state == State::PreparingRebalance {
            if self.rebalance_deadline.is_some_and(|d| now >= d) {
                return self.maybe_complete_join(now, true);
            }
            return Vec::new();
        }
        let before = self.members.len();
        self.members
            .retain(|_, m| m.awaiting_join || now.duration_since(m.last_seen) < m.session_timeout);
        if self.members.len() == before {
            return Vec::new();
        }
        self.after_removal(now)
    }
}

fn join_error(member_id: &str, error: i16) -> Reply {
    Reply::Join {
        member_id: member_id.to_string(),
        joined: Joined {
            error,
            generation: -1,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        },
    }
}

fn sync_reply(member_id: &str, error: i16, assignment: Vec<u8>) -> Reply {
    Reply::Sync {
        member_id: member_id.to_string(),
        error,
        assignment,
    }
}

#[cfg(test)]
mod tests;
