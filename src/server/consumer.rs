//! ConsumerService: fetch, subscribe, offsets, consumer groups.

use super::convert::fetch_response;
use super::shared::Shared;
use super::status::{error_to_status, fail_now, reply_later};
use super::streams::SUBSCRIBE_MAX_BYTES;
use crate::error::Error;
use crate::membership::GroupMembers;
use crate::proto as pb;
use crate::proto::grpc::ConsumerService;
use crate::read::FetchRequest;
use futures::channel::oneshot;
use futures::future::Either;
use futures::SinkExt;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use std::time::Instant;

/// Longest long poll a fetch may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// How long one Subscribe poll waits before checking for shutdown again.
const SUBSCRIBE_POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Consumer(pub Shared);

/// `rx`'s answer, or `None` once the client has cancelled the call (a
/// stream whose client left ends now, not at its next record).
async fn unless_cancelled<T>(
    sink: &mut ServerStreamingSink<pb::FetchResponse>,
    rx: oneshot::Receiver<T>,
) -> Option<Result<T, oneshot::Canceled>> {
    // The sink's readiness polls the call's close: an error means the
    // call is over; polling it also wakes this task when that happens.
    let cancelled = futures::future::poll_fn(|cx| match sink.poll_ready_unpin(cx) {
        Poll::Ready(Err(_)) => Poll::Ready(()),
        _ => Poll::Pending,
    });
    futures::pin_mut!(cancelled);
    match futures::future::select(rx, cancelled).await {
        Either::Left((answer, _)) => Some(answer),
        Either::Right(((), _)) => None,
    }
}

impl ConsumerService for Consumer {
    fn fetch(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::FetchRequest,
        sink: UnarySink<pb::FetchResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            return fail_now(&ctx, sink, st);
        }
        let p = req.get_partition();
        let wait = Duration::from_millis(u64::from(req.get_max_wait_ms())).min(MAX_WAIT);
        let fr = FetchRequest {
            offset: req.get_offset(),
            max_records: req.get_max_records() as usize,
            max_bytes: req.get_max_bytes() as usize,
            max_wait: wait,
        };
        let latencies = Arc::clone(&self.0.latencies);
        let started = std::time::Instant::now();
        match self.0.engine.fetch(req.get_topic(), p, fr) {
            Ok(rx) => reply_later(&ctx, sink, rx, move |r| {
                latencies.fetch.observe(started.elapsed());
                fetch_response(p, r)
            }),
            Err(e) => fail_now(&ctx, sink, error_to_status(&e)),
        }
    }

    fn subscribe(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::SubscribeRequest,
        mut sink: ServerStreamingSink<pb::FetchResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            ctx.spawn(async move {
                let _ = sink.fail(st).await;
            });
            return;
        }
        let slot = match self.0.streams.take(&ctx.peer()) {
            Ok(slot) => slot,
            Err(why) => {
                let st = RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, why);
                ctx.spawn(async move {
                    let _ = sink.fail(st).await;
                });
                return;
            }
        };
        let shared = self.0.clone();
        let topic = req.get_topic().to_string();
        let p = req.get_partition();
        let mut offset = req.get_offset();
        ctx.spawn(async move {
            let _slot = slot;
            loop {
                if shared.is_shutting_down() {
                    let _ = sink.fail(error_to_status(&Error::shutting_down())).await;
                    return;
                }
                let rx = shared.engine.fetch(
                    &topic,
                    p,
                    FetchRequest {
                        offset,
                        max_records: 0,
                        max_bytes: SUBSCRIBE_MAX_BYTES,
                        max_wait: SUBSCRIBE_POLL,
                    },
                );
                let result = match rx {
                    Ok(rx) => match unless_cancelled(&mut sink, rx).await {
                        Some(answer) => answer.unwrap_or_else(|_| Err(Error::shutting_down())),
                        None => return, // the client went away
                    },
                    Err(e) => Err(e),
                };
                match result {
                    Ok(r) if r.records.is_empty() => continue,
                    Ok(r) => {
                        offset = r.next_offset;
                        // Awaiting the send is the backpressure: a slow
                        // reader slows its own stream only.
                        let ready = Instant::now();
                        if sink
                            .send((fetch_response(p, r), WriteFlags::default()))
                            .await
                            .is_err()
                        {
                            return; // the client went away
                        }
                        shared.latencies.subscribe_send.observe(ready.elapsed());
                    }
                    Err(e) => {
                        let _ = sink.fail(error_to_status(&e)).await;
                        return;
                    }
                }
            }
        });
    }

    fn list_offsets(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::ListOffsetsRequest,
        sink: UnarySink<pb::ListOffsetsResponse>,
    ) {
        if let Err(st) = self.0.check(&ctx) {
            return fail_now(&ctx, sink, st);
        }
        match self.0.engine.list_offsets(
            req.get_topic(),
            req.get_partition(),
            req.get_timestamp_ms(),
        ) {
            Ok(rx) => reply_later(&ctx, sink, rx, |o| {
                let mut r = pb::ListOffsetsResponse::new();
                r.set_offset(o);
                r
            }),
            Err(e) => fail_now(&ctx, sink, error_to_status(&e)),
        }
    }

    fn commit_offset(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::CommitOffsetRequest,
        sink: UnarySink<pb::CommitOffsetResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| {
                e.commit_offset(
                    req.get_group(),
                    req.get_topic(),
                    req.get_partition(),
                    req.get_offset(),
                    req.get_metadata(),
                )
            },
            |()| pb::CommitOffsetResponse::new(),
        );
    }

    fn get_committed_offset(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::GetCommittedOffsetRequest,
        sink: UnarySink<pb::GetCommittedOffsetResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.committed_offset(req.get_group(), req.get_topic(), req.get_partition()),
            |o| {
                let mut r = pb::GetCommittedOffsetResponse::new();
                if let Some(o) = o {
                    r.set_found(true);
                    r.set_offset(o.offset);
                    r.set_metadata(o.metadata);
                }
                r
            },
        );
    }

    fn list_groups(
        &mut self,
        ctx: RpcContext<'_>,
        _req: pb::ListGroupsRequest,
        sink: UnarySink<pb::ListGroupsResponse>,
    ) {
        let members = self.0.memberships.clone();
        self.0.blocking(
            &ctx,
            sink,
            move |e| {
                let active = members.map(|m| m.list()).unwrap_or_default();
                Ok((e.groups()?, active))
            },
            |(with_offsets, active)| group_list(with_offsets, active),
        );
    }

    fn describe_group(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DescribeGroupRequest,
        sink: UnarySink<pb::DescribeGroupResponse>,
    ) {
        let group = req.get_group().to_string();
        let members = self.0.memberships.clone();
        self.0.blocking(
            &ctx,
            sink,
            move |e| {
                let offsets = e.group_offsets(req.get_group())?;
                Ok((offsets, members.and_then(|m| m.describe(req.get_group()))))
            },
            move |(offsets, members)| {
                let mut r = pb::DescribeGroupResponse::new();
                set_members(&mut r, members);
                r.set_group(group);
                for o in offsets {
                    let mut c = pb::CommittedOffset::new();
                    c.set_topic(o.topic);
                    c.set_partition(o.partition);
                    c.set_offset(o.offset);
                    c.set_metadata(o.metadata);
                    c.set_updated_at_ms(o.updated_at_ms);
                    r.mut_offsets().push(c);
                }
                r
            },
        );
    }

    fn delete_group(
        &mut self,
        ctx: RpcContext<'_>,
        req: pb::DeleteGroupRequest,
        sink: UnarySink<pb::DeleteGroupResponse>,
    ) {
        self.0.blocking(
            &ctx,
            sink,
            move |e| e.delete_group(req.get_group()),
            |n| {
                let mut r = pb::DeleteGroupResponse::new();
                r.set_offsets_deleted(n as i64);
                r
            },
        );
    }
}

/// Groups with offsets (Empty unless they have members) and groups with
/// members, by name.
fn group_list(
    with_offsets: Vec<String>,
    active: Vec<(String, String, usize)>,
) -> pb::ListGroupsResponse {
    let mut all: std::collections::BTreeMap<String, (String, usize)> = with_offsets
        .into_iter()
        .map(|g| (g, ("Empty".to_string(), 0)))
        .collect();
    for (g, state, n) in active {
        all.insert(g, (state, n));
    }
    let mut r = pb::ListGroupsResponse::new();
    for (g, (state, n)) in all {
        let mut s = pb::GroupSummary::new();
        s.set_group(g.clone());
        s.set_state(state);
        s.set_members(n as u32);
        r.mut_summaries().push(s);
        r.mut_groups().push(g);
    }
    r
}

fn set_members(r: &mut pb::DescribeGroupResponse, g: Option<GroupMembers>) {
    let Some(g) = g else {
        r.set_state("Empty".into());
        return;
    };
    r.set_state(g.state);
    r.set_protocol(g.protocol);
    r.set_generation(g.generation);
    for m in g.members {
        let mut pm = pb::GroupMember::new();
        pm.set_member_id(m.member_id);
        pm.set_instance_id(m.instance_id.unwrap_or_default());
        pm.set_client_id(m.client_id);
        pm.set_host(m.host);
        for (topic, partitions) in m.assignment {
            let mut a = pb::GroupAssignment::new();
            a.set_topic(topic);
            a.set_partitions(partitions);
            pm.mut_assignment().push(a);
        }
        r.mut_members().push(pm);
    }
}
