//! Where this node's epoch starts in each partition (`bucket::history`):
//! written at start, before the node serves, when it took the prefix from
//! another node (or found no owner record). Then a node that was fenced
//! cannot bring its late uploads into the log: a rebuild takes an epoch's
//! objects only below the next epoch's start.
//!
//! A partition that does not open for writes (its history blocked, or not
//! opened) gets no start now; it stays pending in metadata and gets one at
//! the first start at which it opens, before it accepts a write.

use super::Topic;
use crate::bucket;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::object_store::ObjectStore;
use crate::partition::Status;
use crate::util::clock::now_ms;
use crate::util::thread::map_parallel;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Metadata setting: partitions still owed this node's epoch start, one
/// `topic\tincarnation\tpartition` per line.
const PENDING: &str = "epoch_starts_pending";

/// Epoch-start PUTs in flight at once.
const WRITERS: usize = 16;

type PartitionId = (String, i64, u32);

/// Writes the epoch's start in every partition that needs one (all of them
/// after a change of hands; otherwise those still pending), at the offset
/// the bucket's history reaches (the committed offset: records this node's
/// WAL replays past it are uploaded again under this epoch). Fails if the
/// store refuses: a node must not write before its start is recorded.
pub(super) fn write_epoch_starts(
    ctx: &Context,
    topics: &HashMap<String, Arc<Topic>>,
) -> Result<()> {
    let mut pending = load_pending(ctx)?;
    if ctx.owner.took_from_another() {
        for t in topics.values() {
            for p in 0..t.row.partitions {
                pending.insert((t.row.name.clone(), t.row.incarnation, p));
            }
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    // Kept until written: a crash part-way leaves them due at the next start.
    save_pending(ctx, &pending)?;
    let mut due = Vec::new();
    let mut still_pending = BTreeSet::new();
    for id in pending {
        let Some(t) = topics.get(&id.0).filter(|t| t.row.incarnation == id.1) else {
            continue; // deleted since
        };
        let Some(p) = t.partitions.get(id.2 as usize) else {
            continue;
        };
        let view = p.shared.view();
        if view.status == Status::Open {
            due.push((id, view.committed_next));
        } else {
            still_pending.insert(id);
        }
    }
    let (epoch, node) = (ctx.owner.epoch(), ctx.owner.node_id());
    let written = map_parallel(&due, WRITERS, "epoch-start", |((topic, inc, p), start)| {
        let key = layout::epoch_start_key(topic, *inc, *p, *start, epoch);
        let body = bucket::encode_epoch_start(epoch, *start, node, now_ms());
        ctx.store.put(&key, &body)
    })
    .map_err(|e| Error::io("spawn epoch-start writers", e))?;
    for r in written {
        r?;
    }
    if !due.is_empty() {
        log::info!(
            "epoch {epoch} starts recorded in the bucket for {} partitions",
            due.len()
        );
    }
    save_pending(ctx, &still_pending)
}

fn load_pending(ctx: &Context) -> Result<BTreeSet<PartitionId>> {
    let text = ctx.meta.setting(PENDING)?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let id = (
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            );
            f.next().is_none().then_some(id)
        })
        .collect())
}

fn save_pending(ctx: &Context, pending: &BTreeSet<PartitionId>) -> Result<()> {
    let text: String = pending
        .iter()
        .map(|(t, inc, p)| format!("{t}\t{inc}\t{p}\n"))
        .collect();
    Ok(ctx.meta.set_setting(PENDING, &text)?)
}
