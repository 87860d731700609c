//! AdminService: topics and the node. Every call runs on the blocking pool.

use super::convert::topic_info;
use super::shared::Shared;
use crate::engine::{TopicChange, TopicSpec};
use crate::proto as pb;
use crate::proto::grpc::AdminService;
use grpcio::{RpcContext, UnarySink};

#[derive(Clone)]
pub struct Admin(pub Shared);

impl AdminService for Admin {
    fn create_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::CreateTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        let spec = TopicSpec {
            name: req.get_name().to_string(),
            partitions: req.get_partitions(),
            retention_ms: req.get_retention_ms(),
            retention_bytes: req.get_retention_bytes(),
        };
        self.0
            .blocking(&ctx, sink, move |e| e.create_topic(&spec), topic_info);
    }

    fn describe_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DescribeTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.describe_topic(req.get_name()),
            topic_info,
        );
    }

    fn list_topics(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::ListTopicsRequest,
        sink: UnarySink<pb::ListTopicsResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            |e| e.list_topics(),
            |topics| {
                let mut r = pb::ListTopicsResponse::new();
                r.set_topics(topics.into_iter().map(topic_info).collect());
                r
            },
        );
    }

    fn delete_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DeleteTopicRequest,
        sink: UnarySink<pb::DeleteTopicResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.delete_topic(req.get_name()),
            |()| pb::DeleteTopicResponse::new(),
        );
    }

    fn alter_topic(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::AlterTopicRequest,
        sink: UnarySink<pb::TopicInfo>,
    ) {
        let change = TopicChange {
            partitions: req.has_partitions().then(|| req.get_partitions()),
            retention_ms: req.has_retention_ms().then(|| req.get_retention_ms()),
            retention_bytes: req.has_retention_bytes().then(|| req.get_retention_bytes()),
        };
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.alter_topic(req.get_name(), &change),
            topic_info,
        );
    }

    fn describe_cluster(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::DescribeClusterRequest,
        sink: UnarySink<pb::ClusterInfo>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            |e| {
                Ok((
                    e.node(),
                    e.topic_count(),
                    e.partition_states(),
                    e.backlog_bytes(),
                    e.cluster_view().map(|v| (e.config().cluster.clone(), v)),
                ))
            },
            |(node, topics, states, backlog, cluster)| {
                let mut r = pb::ClusterInfo::new();
                r.set_node_id(node.node_id);
                r.set_version(env!("CARGO_PKG_VERSION").to_string());
                r.set_store(node.store);
                r.set_owner_epoch(node.epoch);
                r.set_fenced(node.fenced);
                r.set_topics(topics as u32);
                for (state, count) in states {
                    let mut c = pb::PartitionStateCount::new();
                    c.set_state(state.to_string());
                    c.set_count(count);
                    r.mut_partitions().push(c);
                }
                r.set_backlog_bytes(backlog as i64);
                if let Some((config, view)) = cluster {
                    set_cluster(&mut r, config.map(|c| c.name), view);
                }
                r
            },
        );
    }
}

/// Cluster mode's part of DescribeCluster: the nodes and the leaders.
fn set_cluster(
    r: &mut pb::ClusterInfo,
    name: Option<String>,
    view: crate::cluster::control::ClusterView,
) {
    r.set_cluster_name(name.unwrap_or_default());
    for n in view.nodes {
        let mut node = pb::ClusterNode::new();
        node.set_node_id(n.id);
        node.set_grpc_addr(n.grpc_addr);
        node.set_kafka_addr(n.kafka_addr);
        r.mut_nodes().push(node);
    }
    for (p, l) in view.leaders {
        let mut leader = pb::PartitionLeader::new();
        leader.set_topic(p.topic);
        leader.set_partition(p.partition);
        leader.set_node_id(l.node);
        leader.set_epoch(l.epoch);
        r.mut_leaders().push(leader);
    }
}
