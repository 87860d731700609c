//! Consumer-group membership as the gRPC admin calls (and so `streamctl
//! group list|get`) show it, whichever protocol keeps it. Today only
//! Kafka's group coordinator does (`kafka::Coordinator` implements
//! [`Memberships`]); gRPC consumers commit offsets without joining.

/// One group's members, as its coordinator sees them now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMembers {
    /// Kafka's names: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: String,
    /// `consumer` for Kafka consumers.
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `cooperative-sticky`...).
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// A static member's `group.instance.id`.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// (topic, partitions) assigned, once the group is Stable; empty when
    /// the assignment is not in the consumer protocol's format.
    pub assignment: Vec<(String, Vec<u32>)>,
}

/// Where the admin calls find groups' members.
pub trait Memberships: Send + Sync {
    /// Groups that have members now, by id, each with its state and
    /// member count.
    fn list(&self) -> Vec<(String, String, usize)>;
    fn describe(&self, group: &str) -> Option<GroupMembers>;
}
