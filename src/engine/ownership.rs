//! Ownership of the bucket prefix, as the engine uses it: taken at start
//! (a superseded WAL set aside first), and confirmed before any change to
//! the bucket, a fenced node answering UNAVAILABLE naming the owner.

use super::Engine;
use crate::bucket::{OwnerRecord, OwnershipError};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::object_store::ObjectStore;
use crate::util::clock::now_ms;

impl Engine {
    /// Confirms this node still owns the prefix (reading the owner record
    /// if the last confirmation is older than the ownership period): call
    /// it before changing anything in the bucket. A fenced node answers
    /// UNAVAILABLE naming the owner.
    pub(super) fn ensure_owner(&self) -> Result<()> {
        if self.ctx.cluster.is_some() {
            return Ok(()); // no owner record: partitions are fenced by etcd
        }
        self.ctx
            .owner
            .confirm_recent(&self.ctx.store)
            .map_err(ownership_refusal)
    }

    /// [`Engine::ensure_owner`], always reading the owner record: before
    /// the rare changes that are hard to take back (topics created and
    /// deleted).
    pub(super) fn confirm_owner_now(&self) -> Result<()> {
        if self.ctx.cluster.is_some() {
            return Ok(());
        }
        self.ctx
            .owner
            .confirm(&self.ctx.store)
            .map_err(ownership_refusal)
    }
}

/// Takes the bucket prefix (one owner per prefix). Only a store failure
/// reads "cannot read the bucket" (`unreadable`); another owner says so.
///
/// If the record names another node, this data dir's WAL is set aside
/// first, before anything is written: a start that then fails (the prefix
/// held) or crashes after taking the record must not find the WAL again
/// and replay it (the record would then name this node).
pub(super) fn take_ownership(ctx: &Context, unreadable: impl Fn(Error) -> Error) -> Result<()> {
    let prefix = ctx.store.identity();
    let ownership_error = |e: OwnershipError| {
        match e {
        OwnershipError::HeldBy(rec) => Error::Unavailable(format!(
            "{prefix} is owned by {} since {} ms; stop that node first, or start this one with --take-over if it is gone",
            rec.describe(),
            rec.since_ms
        )),
        OwnershipError::Unfenceable(rec) => Error::Unavailable(format!(
            "{prefix} is owned by {} and this object store ignores conditional writes \
             (If-None-Match / If-Match), so a take-over cannot fence that node if it still \
             runs; make sure it is stopped for good (process killed, machine off), then start \
             with --take-over --old-owner-is-dead",
            rec.describe()
        )),
        OwnershipError::Malformed(reason) => Error::Malformed {
            object: layout::OWNER_KEY.to_string(),
            reason,
        },
        OwnershipError::Store(e) => unreadable(e.into()),
        OwnershipError::Fenced(why) => Error::Unavailable(why),
    }
    };
    if let Some(other) = ctx.owner.other_owner(&ctx.store).map_err(ownership_error)? {
        set_aside_superseded_wal(ctx, &other)?;
    }
    ctx.owner
        .acquire(
            &ctx.store,
            ctx.config.take_over,
            ctx.config.old_owner_is_dead,
        )
        .map_err(ownership_error)?;
    // Another node took the record between the look and the take.
    match ctx.owner.replaced_other_node() {
        Some(other) => set_aside_superseded_wal(ctx, &other),
        None => Ok(()),
    }
}

/// Another node owned the prefix after this data dir last did, and its
/// history is the bucket's: records only this WAL holds (acknowledged
/// `acks=wal` before that node took over) are not part of it, and replayed
/// they would take offsets the other node gave to other records. The whole
/// WAL goes aside, kept for a person to look at, never replayed.
fn set_aside_superseded_wal(ctx: &Context, other: &OwnerRecord) -> Result<()> {
    let root = layout::wal_root(&ctx.config.data_dir);
    let (files, bytes) = count_files(&root);
    if bytes == 0 {
        return Ok(());
    }
    let aside = layout::superseded_wal_root(&ctx.config.data_dir, other.epoch, now_ms());
    std::fs::rename(&root, &aside).map_err(|e| {
        Error::io(
            format!("set aside {} as {}", root.display(), aside.display()),
            e,
        )
    })?;
    crate::util::fs::sync_dir(&ctx.config.data_dir)
        .map_err(|e| Error::io(format!("fsync {}", ctx.config.data_dir.display()), e))?;
    log::warn!(
        "{} owned the prefix after this data dir last did: its WAL ({files} files, {bytes} bytes) \
         is set aside in {} and not replayed; records acknowledged here with acks=wal and never \
         uploaded before that node took over are not in the log",
        other.describe(),
        aside.display()
    );
    Ok(())
}

/// What a call that would change the bucket answers when ownership is not
/// confirmed.
pub(super) fn ownership_refusal(e: OwnershipError) -> Error {
    match e {
        OwnershipError::Fenced(owner) => crate::partition::fenced_error(&owner),
        OwnershipError::Store(e) => Error::Unavailable(format!(
            "cannot confirm that this node still owns its bucket prefix ({e}); nothing was changed, retry later"
        )),
        OwnershipError::HeldBy(rec) | OwnershipError::Unfenceable(rec) => {
            crate::partition::fenced_error(&rec.describe())
        }
        OwnershipError::Malformed(reason) => Error::Malformed {
            object: layout::OWNER_KEY.to_string(),
            reason,
        },
    }
}

/// Files and bytes under `dir` (0 when it does not exist).
pub(super) fn count_files(dir: &std::path::Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .fold((0, 0), |(n, b), e| match e.file_type() {
            Ok(t) if t.is_dir() => {
                let (dn, db) = count_files(&e.path());
                (n + dn, b + db)
            }
            _ => (n + 1, b + e.metadata().map_or(0, |m| m.len())),
        })
}

/// A data directory belongs to one store: its metadata and WAL describe
/// that store's topics. Started against another, it refuses rather than
/// mix the two.
pub(super) fn check_store_identity(ctx: &Context) -> Result<()> {
    let ours = ctx.store.identity();
    match ctx.meta.setting("store")? {
        Some(theirs) if theirs != ours => Err(Error::Unavailable(format!(
            "data directory {} belongs to {theirs}, not {ours}; start it against that store, or use an empty data directory",
            ctx.config.data_dir.display()
        ))),
        Some(_) => Ok(()),
        None => Ok(ctx.meta.set_setting("store", &ours)?),
    }
}
