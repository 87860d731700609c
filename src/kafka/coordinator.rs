//! The group coordinator: every consumer group with members, in memory,
//! one [`Group`] state machine each, and the requests waiting on them.
//!
//! A JoinGroup or SyncGroup that must wait registers a channel under
//! (group, member, kind) before its group is driven; each [`Reply`] the
//! machine returns is sent down the matching channel, and the
//! connection's responder thread waits on the other end (never a thread
//! shared with other connections). A ticker thread passes time to every
//! group each [`TICK`], which is what evicts silent members and ends late
//! rebalances.
//!
//! Committed offsets are not kept here: they live in the engine (SQLite
//! and the bucket checkpoint) like gRPC's. Membership does not survive a
//! restart; members find out at their next heartbeat (UNKNOWN_MEMBER_ID)
//! and rejoin, resuming from their commits.

use super::group::{code, join_error, Caller, Group, Join, MemberView, Reply, State};
use crate::membership::{GroupMembers, Member};
use crate::util::sync::lock;
use crate::util::thread::{self, Worker};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often time is passed to the groups: the precision of session and
/// rebalance timeouts.
const TICK: Duration = Duration::from_millis(100);

/// Kafka's COORDINATOR_NOT_AVAILABLE: the client looks for the
/// coordinator again and retries.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// What one coordinator holds at most.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Groups with members (or member ids handed out); a join to one more
    /// is answered COORDINATOR_NOT_AVAILABLE.
    pub max_groups: usize,
    /// Members of one group (Kafka's `group.max.size`).
    pub max_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_groups: 10_000,
            max_members: 1_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Join,
    Sync,
}

type Key = (String, String, Kind);

#[derive(Default)]
struct Groups {
    groups: HashMap<String, Group>,
    waiting: HashMap<Key, Sender<Reply>>,
    /// In a cluster, the epoch of the coordinator slot each group's state
    /// is from (see [`Coordinator::fence`]).
    epochs: HashMap<String, i64>,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub state: State,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
}

pub struct Coordinator {
    groups: Mutex<Groups>,
    limits: Limits,
    /// Mixed into member ids so that ids from before a restart are never
    /// handed out again.
    seed: u64,
    stopped: AtomicBool,
    ticker: Mutex<Option<Worker>>,
}

impl Coordinator {
    /// A coordinator whose groups are ticked by a thread of its own, until
    /// [`Coordinator::stop`].
    pub fn start(limits: Limits) -> std::io::Result<Arc<Coordinator>> {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()) << 32;
        let c = Arc::new(Coordinator::new(limits, seed));
        let weak: Weak<Coordinator> = Arc::downgrade(&c);
        let worker = thread::spawn("kafka-groups", move || loop {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(c) if !c.stopped.load(Ordering::Relaxed) => c.tick(Instant::now()),
                _ => return,
            }
        })?;
        *lock(&c.ticker) = Some(worker);
        Ok(c)
    }

    fn new(limits: Limits, seed: u64) -> Coordinator {
        Coordinator {
            groups: Mutex::new(Groups::default()),
            limits,
            seed,
            stopped: AtomicBool::new(false),
            ticker: Mutex::new(None),
        }
    }

    /// Stops the ticker; requests still waiting are answered
    /// COORDINATOR_NOT_AVAILABLE by their handlers (their channels close).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        lock(&self.groups).waiting.clear();
        if let Some(w) = lock(&self.ticker).take() {
            w.join_until(Instant::now() + TICK * 5);
        }
    }

    /// A join; its answer comes down the channel, at once or when the
    /// rebalance completes.
    pub fn join(&self, group_id: &str, j: Join, now: Instant) -> Receiver<Reply> {
        let (tx, rx) = bounded(1);
        let mut g = lock(&self.groups);
        let Groups {
            groups, waiting, ..
        } = &mut *g;
        if !groups.contains_key(group_id) && groups.len() >= self.limits.max_groups {
            let _ = tx.send(join_error(&j.member_id, COORDINATOR_NOT_AVAILABLE));
            return rx;
        }
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(self.limits.max_members, self.seed ^ fnv(group_id)));
        let (member_id, replies) = group.join(j, now);
        // A second join of the same member replaces the first, whose
        // channel closes (its handler answers COORDINATOR_NOT_AVAILABLE).
        waiting.insert((group_id.to_string(), member_id, Kind::Join), tx);
        deliver(waiting, group_id, replies);
        forget_if_unused(groups, group_id);
        rx
    }

    /// A sync; its answer comes down the channel, at once or when the
    /// leader's assignment arrives.
    pub fn sync(
        &self,
        group_id: &str,
        caller: Caller<'_>,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now: Instant,
    ) -> Receiver<Reply> {
        let (tx, rx) = bounded(1);
        let mut g = lock(&self.groups);
        let Groups {
            groups, waiting, ..
        } = &mut *g;
        let Some(group) = groups.get_mut(group_id) else {
            let _ = tx.send(Reply::Sync {
                member_id: caller.member_id.to_string(),
                error: code::UNKNOWN_MEMBER_ID,
                assignment: Vec::new(),
            });
            return rx;
        };
        let replies = group.sync(caller, generation, assignments, now);
        let key = (
            group_id.to_string(),
            caller.member_id.to_string(),
            Kind::Sync,
        );
        waiting.insert(key, tx);
        deliver(waiting, group_id, replies);
        rx
    }

    pub fn heartbeat(&self, group_id: &str, caller: Caller<'_>, generation: i32) -> i16 {
        let mut g = lock(&self.groups);
        match g.groups.get_mut(group_id) {
            Some(group) => group.heartbeat(caller, generation, Instant::now()),
            None => code::UNKNOWN_MEMBER_ID,
        }
    }

    /// Each leaving member's error code.
    pub fn leave(&self, group_id: &str, callers: &[Caller<'_>]) -> Vec<i16> {
        let mut g = lock(&self.groups);
        let Groups {
            groups, waiting, ..
        } = &mut *g;
        let Some(group) = groups.get_mut(group_id) else {
            return vec![code::UNKNOWN_MEMBER_ID; callers.len()];
        };
        let (codes, replies) = group.leave(callers, Instant::now());
        deliver(waiting, group_id, replies);
        forget_if_unused(groups, group_id);
        codes
    }

    /// Whether an OffsetCommit from `caller` of `generation` is accepted.
    /// A group this node has no members of takes commits from simple
    /// consumers (generation -1) only, as Kafka's does; a member of a
    /// generation from before a restart gets ILLEGAL_GENERATION and
    /// rejoins.
    pub fn check_commit(&self, group_id: &str, caller: Caller<'_>, generation: i32) -> i16 {
        let g = lock(&self.groups);
        match g.groups.get(group_id) {
            Some(group) => group.check_commit(caller, generation),
            None if generation < 0 => code::NONE,
            None => code::ILLEGAL_GENERATION,
        }
    }

    /// This node coordinates `group_id` in `epoch` (of its cluster slot):
    /// state kept from another epoch is dropped, because another node
    /// coordinated the group in between (its members rejoin, as after a
    /// restart).
    pub fn fence(&self, group_id: &str, epoch: i64) {
        let mut g = lock(&self.groups);
        let Groups {
            groups,
            waiting,
            epochs,
        } = &mut *g;
        match epochs.get(group_id).copied() {
            // The same epoch; or a request that read an older one than
            // another already brought: the state is the newer epoch's.
            Some(before) if before >= epoch => {}
            before => {
                epochs.insert(group_id.to_string(), epoch);
                if before.is_some() && groups.remove(group_id).is_some() {
                    waiting.retain(|(group, _, _), _| group != group_id);
                    log::info!("group {group_id:?}: state from an earlier coordinator epoch dropped (now {epoch})");
                }
            }
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupView> {
        let g = lock(&self.groups);
        g.groups.get(group_id).map(view)
    }

    /// Every group with members, by id.
    pub fn list(&self) -> Vec<(String, GroupView)> {
        let g = lock(&self.groups);
        let mut out: Vec<(String, GroupView)> = g
            .groups
            .iter()
            .map(|(id, g)| (id.clone(), view(g)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn tick(&self, now: Instant) {
        let mut g = lock(&self.groups);
        let Groups {
            groups,
            waiting,
            epochs,
        } = &mut *g;
        for (id, group) in groups.iter_mut() {
            let replies = group.tick(now);
            deliver(waiting, id, replies);
        }
        groups.retain(|_, g| !g.is_unused());
        epochs.retain(|id, _| groups.contains_key(id));
        // Channels whose member is gone were answered when it went;
        // whatever is left is a request the client gave up on.
        waiting.retain(|(group, member, _), _| {
            groups.get(group).is_some_and(|g| g.has_member(member))
        });
    }
}

impl crate::membership::Memberships for Coordinator {
    fn list(&self) -> Vec<(String, String, usize)> {
        self.list()
            .into_iter()
            .map(|(id, v)| (id, v.state.name().to_string(), v.members.len()))
            .collect()
    }

    fn describe(&self, group: &str) -> Option<GroupMembers> {
        let v = self.describe(group)?;
        let consumer = v.protocol_type == "consumer";
        Some(GroupMembers {
            state: v.state.name().to_string(),
            protocol_type: v.protocol_type,
            protocol: v.protocol,
            generation: v.generation,
            members: v
                .members
                .into_iter()
                .map(|m| Member {
                    assignment: if consumer {
                        consumer_assignment(&m.assignment).unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    host: m.client_host,
                })
                .collect(),
        })
    }
}

/// The (topic, partitions) of a consumer-protocol assignment (version,
/// then an array of topic and partition array; the user data after it is
/// not needed). Written by the group's leader, so read with every length
/// checked; `None` if it is not in that format.
pub(crate) fn consumer_assignment(b: &[u8]) -> Option<Vec<(String, Vec<u32>)>> {
    if b.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(b);
    r.i16()?; // version
    let topics = usize::try_from(r.i32()?).ok()?;
    let mut out = Vec::new();
    for _ in 0..topics {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let n = usize::try_from(r.i32()?).ok()?;
        // Each partition is 4 bytes: a forged count fails here, before
        // anything is allocated for it.
        if r.0.len() / 4 < n {
            return None;
        }
        let partitions = (0..n)
            .map(|_| r.i32().and_then(|p| u32::try_from(p).ok()))
            .collect::<Option<Vec<u32>>>()?;
        out.push((topic, partitions));
    }
    Some(out)
}

/// Big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = &self.0[n..];
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

fn view(g: &Group) -> GroupView {
    GroupView {
        state: g.state,
        generation: g.generation,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: g.protocol.clone().unwrap_or_default(),
        members: g.describe(),
    }
}

fn deliver(waiting: &mut HashMap<Key, Sender<Reply>>, group_id: &str, replies: Vec<Reply>) {
    for r in replies {
        let (member, kind) = match &r {
            Reply::Join { member_id, .. } => (member_id.clone(), Kind::Join),
            Reply::Sync { member_id, .. } => (member_id.clone(), Kind::Sync),
        };
        if let Some(tx) = waiting.remove(&(group_id.to_string(), member, kind)) {
            let _ = tx.send(r);
        }
    }
}

fn forget_if_unused(groups: &mut HashMap<String, Group>, group_id: &str) {
    if groups.get(group_id).is_some_and(Group::is_unused) {
        groups.remove(group_id);
    }
}

/// FNV-1a, to give each group its own member-id sequence.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(member_id: &str) -> Join {
        Join {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "t".into(),
            client_host: "/127.0.0.1".into(),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), b"m".to_vec())],
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            require_known_member: false,
        }
    }

    fn error_of(r: &Reply) -> i16 {
        match r {
            Reply::Join { joined, .. } => joined.error,
            Reply::Sync { error, .. } => *error,
        }
    }

    fn member_of(r: &Reply) -> String {
        match r {
            Reply::Join { member_id, .. } | Reply::Sync { member_id, .. } => member_id.clone(),
        }
    }

    #[test]
    fn a_waiting_join_is_answered_when_the_rebalance_completes() {
        let c = Coordinator::new(Limits::default(), 7);
        let now = Instant::now();
        let a = member_of(&c.join("g", join(""), now).recv().unwrap());
        let rx = c.sync("g", Caller::new(&a, None), 1, vec![], now);
        assert_eq!(error_of(&rx.recv().unwrap()), 0);
        // b's join waits for a's rejoin.
        let b_rx = c.join("g", join(""), now);
        assert!(b_rx.try_recv().is_err());
        assert_eq!(c.heartbeat("g", Caller::new(&a, None), 1), 27);
        let a_rx = c.join("g", join(&a), now);
        assert_eq!(error_of(&a_rx.recv().unwrap()), 0);
        assert_eq!(error_of(&b_rx.recv().unwrap()), 0);
        assert_eq!(c.describe("g").unwrap().members.len(), 2);
    }

    #[test]
    fn time_passing_evicts_and_the_last_member_out_forgets_the_group() {
        let c = Coordinator::new(Limits::default(), 7);
        let now = Instant::now();
        let a = member_of(&c.join("g", join(""), now).recv().unwrap());
        c.sync("g", Caller::new(&a, None), 1, vec![], now);
        c.tick(now + Duration::from_secs(5));
        assert_eq!(c.list().len(), 1);
        c.tick(now + Duration::from_secs(11));
        assert!(c.list().is_empty(), "a's session ran out");
        assert_eq!(c.heartbeat("g", Caller::new(&a, None), 1), 25);
        assert_eq!(c.check_commit("g", Caller::new(&a, None), 1), 22);
        assert_eq!(c.check_commit("g", Caller::new("", None), -1), 0);
    }

    #[test]
    fn state_from_another_coordinator_epoch_is_dropped_and_waits_closed() {
        let c = Coordinator::new(Limits::default(), 7);
        let now = Instant::now();
        c.fence("g", 5);
        let a = member_of(&c.join("g", join(""), now).recv().unwrap());
        c.sync("g", Caller::new(&a, None), 1, vec![], now);
        let waiting = c.join("g", join(""), now);
        assert!(waiting.try_recv().is_err());
        c.fence("g", 5); // the same epoch keeps everything
        assert_eq!(c.heartbeat("g", Caller::new(&a, None), 1), 27);
        c.fence("g", 9);
        assert!(c.describe("g").is_none());
        assert!(waiting.recv().is_err(), "the waiting join's channel closed");
        assert_eq!(c.heartbeat("g", Caller::new(&a, None), 1), 25);
        // A new epoch's group forms afresh; an older epoch drops nothing.
        let b = member_of(&c.join("g", join(""), now).recv().unwrap());
        c.fence("g", 5);
        assert!(c.describe("g").is_some_and(|v| v.members.len() == 1));
        assert_ne!(c.heartbeat("g", Caller::new(&b, None), 1), 25);
    }

    #[test]
    fn consumer_assignments_are_read_with_every_length_checked() {
        let mut b = vec![
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(
            consumer_assignment(&b),
            Some(vec![("t".to_string(), vec![3, 5])])
        );
        assert_eq!(consumer_assignment(&[]), Some(vec![]));
        for cut in 1..21 {
            assert_eq!(consumer_assignment(&b[..cut]), None, "cut at {cut}");
        }
        // A forged partition count of 2^31-1.
        let forged = [
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 3,
        ];
        assert_eq!(consumer_assignment(&forged), None);
        assert_eq!(consumer_assignment(&[0, 1, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn groups_beyond_the_limit_are_refused_and_stopping_closes_waits() {
        let limits = Limits {
            max_groups: 1,
            max_members: 10,
        };
        let c = Coordinator::new(limits, 7);
        let now = Instant::now();
        let a = member_of(&c.join("g1", join(""), now).recv().unwrap());
        let refused = c.join("g2", join(""), now).recv().unwrap();
        assert_eq!(error_of(&refused), COORDINATOR_NOT_AVAILABLE);
        c.sync("g1", Caller::new(&a, None), 1, vec![], now);
        let waiting = c.join("g1", join(""), now);
        c.stop();
        assert!(waiting.recv().is_err(), "the channel closed");
    }
}
