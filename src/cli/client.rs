//! The gRPC connection every command uses, and how its failures read.

use super::args::CliError;
use crate::proto::grpc::{AdminServiceClient, ConsumerServiceClient, ProducerServiceClient};
use grpcio::{CallOption, ChannelBuilder, Environment, MetadataBuilder, RpcStatusCode};
use std::sync::Arc;
use std::time::Duration;

/// How streamctl reaches and proves itself to servers.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub token: Option<String>,
    /// `None`: plain TCP.
    pub tls: Option<crate::tls::ClientTls>,
}

/// A connection and the call options every call carries.
pub struct Client {
    server: String,
    auth: Auth,
    pub admin: AdminServiceClient,
    pub producer: ProducerServiceClient,
    pub consumer: ConsumerServiceClient,
}

impl Client {
    /// A channel to `server`; with TLS, connected and verified now (an
    /// error says why), else at the first call.
    pub(super) fn connect(server: &str, auth: Auth) -> Result<Client, CliError> {
        let env = Arc::new(Environment::new(1));
        let builder = ChannelBuilder::new(env)
            .max_receive_message_len(128 << 20)
            .max_send_message_len(128 << 20);
        let ch = match &auth.tls {
            None => builder.connect(server),
            Some(tls) => {
                let plain = tls.connect(server).map_err(CliError::Runtime)?;
                // grpc reads until EAGAIN.
                plain
                    .set_nonblocking(true)
                    .map_err(|e| CliError::Runtime(format!("TLS socket: {e}")))?;
                let fd = std::os::fd::IntoRawFd::into_raw_fd(plain);
                #[allow(unsafe_code)]
                // SAFETY: `fd` is a connected stream socket (the plain end
                // of the TLS relay) that nothing else owns; grpc closes it.
                unsafe {
                    builder.connect_from_fd(server, fd)
                }
            }
        };
        Ok(Client {
            server: server.to_string(),
            auth,
            admin: AdminServiceClient::new(ch.clone()),
            producer: ProducerServiceClient::new(ch.clone()),
            consumer: ConsumerServiceClient::new(ch),
        })
    }

    /// Call options: the token, and a deadline.
    pub fn opt(&self, timeout: Duration) -> CallOption {
        let mut o = CallOption::default().timeout(timeout);
        if let Some(t) = &self.auth.token {
            let mut m = MetadataBuilder::new();
            if m.add_str("authorization", &format!("Bearer {t}")).is_ok() {
                o = o.headers(m.build());
            }
        }
        o
    }

    /// In a cluster, a client of the node that leads `topic/partition`
    /// when that is not this one (`None`: this one, or not a cluster, or
    /// no leader known: the call itself then says what is wrong).
    pub fn leader_of(&self, topic: &str, partition: u32) -> Option<Client> {
        let info = self
            .admin
            .describe_cluster_opt(
                &crate::proto::DescribeClusterRequest::new(),
                self.opt(CALL_TIMEOUT),
            )
            .ok()?;
        let leader = info
            .get_leaders()
            .iter()
            .find(|l| l.get_topic() == topic && l.get_partition() == partition)?;
        let node = info
            .get_nodes()
            .iter()
            .find(|n| n.get_node_id() == leader.get_node_id())?;
        (node.get_grpc_addr() != self.server)
            .then(|| Client::connect(node.get_grpc_addr(), self.auth.clone()).ok())
            .flatten()
    }

    /// DescribeTopic, for commands that need a topic's partitions.
    pub fn describe(&self, topic: &str) -> Result<crate::proto::TopicInfo, CliError> {
        let mut req = crate::proto::DescribeTopicRequest::new();
        req.set_name(topic.to_string());
        self.admin
            .describe_topic_opt(&req, self.opt(CALL_TIMEOUT))
            .map_err(|e| self.err(&format!("topic {topic:?}"), e))
    }

    /// The partitions a command works on: `only` (checked to exist), or
    /// every partition of the topic.
    pub fn partitions(&self, topic: &str, only: Option<u32>) -> Result<Vec<u32>, CliError> {
        let count = self.describe(topic)?.get_partitions();
        match only {
            Some(p) if p >= count => Err(CliError::Runtime(format!(
                "topic {topic:?} has partitions 0..{count}, not {p}"
            ))),
            Some(p) => Ok(vec![p]),
            None => Ok((0..count).collect()),
        }
    }

    /// One line saying what failed and what to do.
    pub fn err(&self, what: &str, e: grpcio::Error) -> CliError {
        match e {
            grpcio::Error::RpcFailure(s) => {
                let hint = match s.code() {
                    RpcStatusCode::UNAVAILABLE
                        if s.message().contains("connect") || s.message().is_empty() =>
                    {
                        format!(
                            " (is streamhoused running at {}? set --server or STREAMHOUSE_ADDR)",
                            self.server
                        )
                    }
                    RpcStatusCode::UNAUTHENTICATED => {
                        " (pass --token or set STREAMHOUSE_TOKEN)".to_string()
                    }
                    RpcStatusCode::DEADLINE_EXCEEDED => {
                        format!(" (no answer from {})", self.server)
                    }
                    RpcStatusCode::UNAVAILABLE => match leader_hint_of(&s) {
                        Some(l) => format!(" (send it with --server {})", l.get_grpc_addr()),
                        None => String::new(),
                    },
                    _ => String::new(),
                };
                CliError::Runtime(format!("{what}: {}{hint}", status_text(&s)))
            }
            other => CliError::Runtime(format!("{what}: {other}")),
        }
    }
}

/// The leader a status's details name, if any (what clients read).
pub fn leader_hint_of(status: &grpcio::RpcStatus) -> Option<crate::proto::LeaderHint> {
    use protobuf::Message;
    let parsed = crate::proto::ErrorStatus::parse_from_bytes(status.details()).ok()?;
    let detail = parsed
        .get_details()
        .iter()
        .find(|d| d.get_type_url() == crate::proto::LEADER_HINT_TYPE)?;
    crate::proto::LeaderHint::parse_from_bytes(detail.get_value()).ok()
}

fn status_text(s: &grpcio::RpcStatus) -> String {
    // Debug prints "6-ALREADY_EXISTS"; the name is what people search for.
    let debug = format!("{:?}", s.code());
    let code = debug
        .split_once('-')
        .map_or(debug.as_str(), |(_, name)| name)
        .to_string();
    if s.message().is_empty() {
        code
    } else {
        format!("{} ({code})", s.message())
    }
}

pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
