//! Kafka's classic consumer-group membership, as a pure state machine (no
//! threads, no clock of its own: callers pass `now`). The coordinator
//! ([`super::coordinator`]) drives one [`Group`] per group id; answers
//! that must wait (a join until the rebalance completes, a sync until the
//! leader's assignment) come back as [`Reply`] values it delivers when
//! they are ready. Every request left waiting is answered by some later
//! [`Reply`]: the rebalance completing, the member leaving or being
//! fenced, or the group moving on to a new rebalance.
//!
//! States, as Kafka documents them:
//!
//! ```text
//!  Empty ──join──► PreparingRebalance ──all joined / timeout──► CompletingRebalance
//!    ▲                    ▲    ▲                                       │ leader's sync
//!    └── last leaves ─────┘    └──── join, leave, expiry ◄──── Stable ◄┘
//! ```
//!
//! Both waits are bounded by the longest rebalance timeout of the members:
//! a member that does not rejoin in time is dropped, and so is one that
//! joined but does not sync in time (the leader included), so that no
//! client holds a group forever.

mod machine;

pub use machine::{join_error, Group};

use std::time::Duration;

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

impl State {
    /// The name Kafka's DescribeGroups and ListGroups give.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A join, as JoinGroup carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// Empty on a member's first join.
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
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

/// Who sends a request: its member id and, for a static member, its
/// instance id.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
}

impl<'a> Caller<'a> {
    pub fn new(member_id: &'a str, instance_id: Option<&'a str>) -> Caller<'a> {
        Caller {
            member_id,
            instance_id,
        }
    }
}

/// What DescribeGroups shows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its metadata for the group's protocol.
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[cfg(test)]
mod tests;
