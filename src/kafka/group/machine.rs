//! [`Group`]: one group's members and the transitions between the states
//! the module documents.

use super::{code, Caller, Join, Joined, MemberView, Reply, State};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    protocols: Vec<(String, Vec<u8>)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    assignment: Vec<u8>,
    last_seen: Instant,
    /// Rejoined in the rebalance under way (its join answer is pending).
    awaiting_join: bool,
    /// Sent SyncGroup and waits for the leader's assignment.
    awaiting_sync: bool,
    /// Sent SyncGroup in this generation (CompletingRebalance).
    synced: bool,
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
    /// Ids handed out with MEMBER_ID_REQUIRED, not joined yet, and until
    /// when they may be used.
    pending: BTreeMap<String, Instant>,
    /// When the phase under way (PreparingRebalance or
    /// CompletingRebalance) gives up on the members that are late.
    deadline: Option<Instant>,
    /// Makes member ids unique across groups and restarts.
    id_seed: u64,
    next_id: u64,
    max_members: usize,
}

/// How a join is let in.
enum Admit {
    /// As this member (known, or new with a fresh id).
    Member(String),
    /// A static member restarted: its place moves to a new id, and the
    /// old id's waiting requests are answered FENCED_INSTANCE_ID.
    Restarted(String, Vec<Reply>),
    /// Answered here.
    Refused(Reply),
}

impl Group {
    pub fn new(max_members: usize, id_seed: u64) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            deadline: None,
            id_seed,
            next_id: 0,
            max_members,
        }
    }

    #[cfg(test)]
    pub fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// No members and no ids handed out: the coordinator may forget it.
    pub fn is_unused(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// The members as DescribeGroups shows them (assignments once Stable).
    pub fn describe(&self) -> Vec<MemberView> {
        let protocol = self.protocol.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(p, _)| p == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default(),
                assignment: if self.state == State::Stable {
                    m.assignment.clone()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// A join. Returns the member id the caller's answer will carry and
    /// the answers that are ready now (the caller's, or everyone's when
    /// its join completes the rebalance, or other members' that this join
    /// ends).
    pub fn join(&mut self, j: Join, now: Instant) -> (String, Vec<Reply>) {
        if let Some(t) = &self.protocol_type {
            if !self.members.is_empty() && *t != j.protocol_type {
                let r = join_error(&j.member_id, code::INCONSISTENT_GROUP_PROTOCOL);
                return (j.member_id, vec![r]);
            }
        }
        let (member_id, mut replies, restarted) = match self.admit(&j, now) {
            Admit::Member(id) => (id, Vec::new(), false),
            Admit::Restarted(id, fenced) => (id, fenced, true),
            Admit::Refused(r) => {
                let id = reply_member(&r).to_string();
                return (id, vec![r]);
            }
        };
        let known = self.members.contains_key(&member_id);
        let m = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                instance_id: j.instance_id.clone(),
                client_id: String::new(),
                client_host: String::new(),
                protocols: Vec::new(),
                session_timeout: j.session_timeout,
                rebalance_timeout: j.rebalance_timeout,
                assignment: Vec::new(),
                last_seen: now,
                awaiting_join: false,
                awaiting_sync: false,
                synced: false,
            });
        let unchanged = m.protocols == j.protocols;
        m.protocols = j.protocols;
        m.client_id = j.client_id;
        m.client_host = j.client_host;
        m.session_timeout = j.session_timeout;
        m.rebalance_timeout = j.rebalance_timeout;
        m.last_seen = now;
        self.protocol_type = Some(j.protocol_type);
        // A member already in the generation rejoining unchanged gets the
        // generation as it is, without a rebalance: a follower, a static
        // member restarted, or anyone while the leader is assigning. (A
        // leader's rejoin asks for a rebalance: it saw the topics change.)
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let quiet = match self.state {
            State::Stable => !is_leader || restarted,
            State::CompletingRebalance => true,
            State::Empty | State::PreparingRebalance => false,
        };
        if known && unchanged && quiet {
            replies.push(self.joined_reply(&member_id));
            return (member_id, replies);
        }
        if let Some(m) = self.members.get_mut(&member_id) {
            m.awaiting_join = true;
        }
        if self.state != State::PreparingRebalance {
            replies.extend(self.prepare_rebalance(now));
        }
        replies.extend(self.maybe_complete_join(now, false));
        (member_id, replies)
    }

    fn admit(&mut self, j: &Join, now: Instant) -> Admit {
        if let Some(instance) = &j.instance_id {
            if let Some(old) = self.instance_owner(instance).map(str::to_string) {
                if j.member_id == old {
                    return Admit::Member(old);
                }
                if !j.member_id.is_empty() {
                    return Admit::Refused(join_error(&j.member_id, code::FENCED_INSTANCE_ID));
                }
                return self.replace_static(&old, &j.client_id);
            }
        }
        if j.member_id.is_empty() {
            if self.members.len() + self.pending.len() >= self.max_members {
                return Admit::Refused(join_error("", code::GROUP_MAX_SIZE_REACHED));
            }
            let id = self.new_member_id(&j.client_id);
            if j.require_known_member && j.instance_id.is_none() {
                self.pending.insert(id.clone(), now + j.session_timeout);
                return Admit::Refused(join_error(&id, code::MEMBER_ID_REQUIRED));
            }
            return Admit::Member(id);
        }
        if self.members.contains_key(&j.member_id) || self.pending.remove(&j.member_id).is_some() {
            return Admit::Member(j.member_id.clone());
        }
        Admit::Refused(join_error(&j.member_id, code::UNKNOWN_MEMBER_ID))
    }

    /// A static member's place given to a new member id (its restart).
    fn replace_static(&mut self, old: &str, client_id: &str) -> Admit {
        let id = self.new_member_id(client_id);
        let Some(mut m) = self.members.remove(old) else {
            return Admit::Member(id);
        };
        let fenced = pending_replies(old, &m, code::FENCED_INSTANCE_ID);
        m.awaiting_sync = false;
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        // Still waiting in the rebalance under way, under its new id.
        m.awaiting_join = m.awaiting_join && self.state == State::PreparingRebalance;
        self.members.insert(id.clone(), m);
        Admit::Restarted(id, fenced)
    }

    fn instance_owner(&self, instance: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.as_str())
    }

    /// `client_id-<16 hex digits>`, unique across this node's restarts (the
    /// seed), so that a member id from before a restart is never reused.
    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_id += 1;
        let mut x = self.id_seed ^ self.next_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64's finaliser: consecutive ids look unrelated.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        format!("{client_id}-{x:016x}")
    }

    /// Starts a rebalance; syncs waiting on the old generation are
    /// answered REBALANCE_IN_PROGRESS (their members rejoin).
    fn prepare_rebalance(&mut self, now: Instant) -> Vec<Reply> {
        self.state = State::PreparingRebalance;
        self.deadline = Some(now + self.longest_rebalance_timeout());
        let mut replies = Vec::new();
        for (id, m) in &mut self.members {
            if m.awaiting_sync {
                replies.push(sync_reply(id, code::REBALANCE_IN_PROGRESS, Vec::new()));
            }
            m.awaiting_sync = false;
            m.synced = false;
        }
        replies
    }

    fn longest_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Completes the rebalance when every member has rejoined, or (with
    /// `expired`) drops the ones that did not and completes with the rest.
    fn maybe_complete_join(&mut self, now: Instant, expired: bool) -> Vec<Reply> {
        if self.state != State::PreparingRebalance {
            return Vec::new();
        }
        if !expired && self.members.values().any(|m| !m.awaiting_join) {
            return Vec::new();
        }
        self.members.retain(|_, m| m.awaiting_join);
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
        // The members must now sync, the leader with the assignment.
        self.deadline = Some(now + self.longest_rebalance_timeout());
        let ids: Vec<String> = self.members.keys().cloned().collect();
        ids.iter()
            .map(|id| {
                if let Some(m) = self.members.get_mut(id) {
                    m.awaiting_join = false;
                    m.last_seen = now;
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
            self.describe()
                .into_iter()
                .map(|m| (m.member_id, m.instance_id, m.metadata))
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
        caller: Caller<'_>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Vec<Reply> {
        let member_id = caller.member_id;
        let error = self.check(caller, generation);
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
                    m.synced = true;
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Vec::new();
                }
                for m in self.members.values_mut() {
                    m.assignment.clear();
                }
                for (id, a) in assignments {
                    if let Some(m) = self.members.get_mut(&id) {
                        m.assignment = a;
                    }
                }
                self.state = State::Stable;
                self.deadline = None;
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
    pub fn heartbeat(&mut self, caller: Caller<'_>, generation: i32, now: Instant) -> i16 {
        let error = self.check(caller, generation);
        if error != code::FENCED_INSTANCE_ID {
            if let Some(m) = self.members.get_mut(caller.member_id) {
                m.last_seen = now;
            }
        }
        match (error, self.state) {
            (code::NONE, State::PreparingRebalance) => code::REBALANCE_IN_PROGRESS,
            (e, _) => e,
        }
    }

    /// Whether the caller may commit offsets for `generation`, in Kafka's
    /// order: a simple consumer (generation -1) only while the group has
    /// no members; nobody while the leader is assigning; a member of the
    /// current generation otherwise, also while a rebalance is being
    /// prepared (members commit before they rejoin).
    pub fn check_commit(&self, caller: Caller<'_>, generation: i32) -> i16 {
        if self.fenced(caller) {
            return code::FENCED_INSTANCE_ID;
        }
        if generation < 0 && self.state == State::Empty {
            return code::NONE;
        }
        if self.state == State::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        self.check(caller, generation)
    }

    fn check(&self, caller: Caller<'_>, generation: i32) -> i16 {
        if self.fenced(caller) {
            code::FENCED_INSTANCE_ID
        } else if !self.members.contains_key(caller.member_id) {
            code::UNKNOWN_MEMBER_ID
        } else if generation != self.generation {
            code::ILLEGAL_GENERATION
        } else {
            code::NONE
        }
    }

    /// A static instance's place now held by another member id.
    fn fenced(&self, caller: Caller<'_>) -> bool {
        caller
            .instance_id
            .and_then(|i| self.instance_owner(i))
            .is_some_and(|owner| owner != caller.member_id)
    }

    /// Members leave (LeaveGroup; v3+ may name a static member by its
    /// instance id alone). Returns each one's error code and the answers
    /// the leave makes ready; the others rebalance.
    pub fn leave(&mut self, callers: &[Caller<'_>], now: Instant) -> (Vec<i16>, Vec<Reply>) {
        let mut codes = Vec::with_capacity(callers.len());
        let mut replies = Vec::new();
        let mut removed = false;
        for c in callers {
            let id = match (c.member_id, c.instance_id) {
                ("", Some(instance)) => self.instance_owner(instance).unwrap_or_default(),
                (id, _) => id,
            }
            .to_string();
            let error = self.check(Caller::new(&id, c.instance_id), self.generation);
            if error != code::NONE {
                codes.push(error);
                continue;
            }
            if let Some(m) = self.members.remove(&id) {
                replies.extend(pending_replies(&id, &m, code::UNKNOWN_MEMBER_ID));
                removed = true;
            }
            codes.push(code::NONE);
        }
        if removed {
            replies.extend(self.after_removal(now));
        }
        (codes, replies)
    }

    fn after_removal(&mut self, now: Instant) -> Vec<Reply> {
        if self.members.is_empty() {
            self.become_empty();
            return Vec::new();
        }
        if self.state == State::PreparingRebalance {
            return self.maybe_complete_join(now, false);
        }
        self.prepare_rebalance(now)
    }

    fn become_empty(&mut self) {
        self.state = State::Empty;
        self.leader = None;
        self.protocol = None;
        self.deadline = None;
        self.generation += 1;
    }

    /// Time passing: ids handed out but never used are forgotten; a
    /// rebalance past its deadline completes with the members that
    /// rejoined; a leader that has not assigned by its deadline is dropped
    /// with every member that did not sync; members whose session ran out
    /// are removed, in any state (one waiting in a join or sync is covered
    /// by the deadlines instead).
    pub fn tick(&mut self, now: Instant) -> Vec<Reply> {
        self.pending.retain(|_, until| now < *until);
        let late = self.deadline.is_some_and(|d| now >= d);
        let before = self.members.len();
        let alive = |m: &Member| now.duration_since(m.last_seen) < m.session_timeout;
        match self.state {
            State::Empty => return Vec::new(),
            State::PreparingRebalance if late => return self.maybe_complete_join(now, true),
            // One that died before rejoining need not hold the rebalance
            // for the whole rebalance timeout.
            State::PreparingRebalance => self.members.retain(|_, m| m.awaiting_join || alive(m)),
            State::CompletingRebalance if late => self.members.retain(|_, m| m.synced),
            State::CompletingRebalance | State::Stable => {
                self.members.retain(|_, m| m.awaiting_sync || alive(m))
            }
        }
        if self.members.len() == before {
            return Vec::new();
        }
        self.after_removal(now)
    }
}

/// The answers owed to a member's waiting requests, with `error`.
fn pending_replies(member_id: &str, m: &Member, error: i16) -> Vec<Reply> {
    let mut out = Vec::new();
    if m.awaiting_join {
        out.push(join_error(member_id, error));
    }
    if m.awaiting_sync {
        out.push(sync_reply(member_id, error, Vec::new()));
    }
    out
}

fn reply_member(r: &Reply) -> &str {
    match r {
        Reply::Join { member_id, .. } | Reply::Sync { member_id, .. } => member_id,
    }
}

/// A join answered with `error` alone.
pub fn join_error(member_id: &str, error: i16) -> Reply {
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
