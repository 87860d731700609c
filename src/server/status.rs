//! The one place errors become gRPC statuses, and the reply helpers every
//! handler uses.

use crate::error::{Error, LeaderAt};
use crate::object_store::StoreError;
use crate::proto as pb;
use futures::channel::oneshot;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use std::path::Path;
use std::sync::OnceLock;

/// Engine errors as gRPC statuses. Store errors by kind: a transient one
/// is UNAVAILABLE (retrying helps), a missing object is DATA_LOSS (a
/// committed segment is gone), anything else (a 403, a bad request) is
/// INTERNAL: the server is misconfigured, and retrying will not help. A
/// local I/O error for want of descriptors or disk is RESOURCE_EXHAUSTED.
pub fn error_to_status(e: &Error) -> RpcStatus {
    let code = match e {
        Error::InvalidArgument(_) => RpcStatusCode::INVALID_ARGUMENT,
        Error::NotFound(_) => RpcStatusCode::NOT_FOUND,
        Error::AlreadyExists(_) => RpcStatusCode::ALREADY_EXISTS,
        Error::OutOfRange(_) => RpcStatusCode::OUT_OF_RANGE,
        Error::Backpressure(_) => RpcStatusCode::RESOURCE_EXHAUSTED,
        Error::Unavailable(_) | Error::NotLeader { .. } => RpcStatusCode::UNAVAILABLE,
        Error::FailedPrecondition(_) => RpcStatusCode::FAILED_PRECONDITION,
        Error::Aborted(_) => RpcStatusCode::ABORTED,
        Error::Corruption { .. } | Error::Malformed { .. } | Error::DataLoss(_) => {
            RpcStatusCode::DATA_LOSS
        }
        Error::Store(StoreError::Transient { .. }) => RpcStatusCode::UNAVAILABLE,
        Error::Store(StoreError::NotFound { .. } | StoreError::OutOfBounds { .. }) => {
            RpcStatusCode::DATA_LOSS
        }
        Error::Store(StoreError::Permanent { .. } | StoreError::PreconditionFailed { .. }) => {
            RpcStatusCode::INTERNAL
        }
        Error::Io { source, .. } if out_of_resources(source) => RpcStatusCode::RESOURCE_EXHAUSTED,
        Error::Meta(_) | Error::Io { .. } | Error::Config(_) => RpcStatusCode::INTERNAL,
    };
    let message = client_message(e, code);
    match e {
        Error::NotLeader {
            leader: Some(at), ..
        } => RpcStatus::with_details(code, message.clone(), leader_details(code, message, at)),
        _ => RpcStatus::with_message(code, message),
    }
}

/// `grpc-status-details-bin` for a node that does not lead a partition:
/// a google.rpc.Status whose one detail is the leader's whereabouts.
fn leader_details(code: RpcStatusCode, message: String, at: &LeaderAt) -> Vec<u8> {
    use protobuf::Message;
    let mut hint = pb::LeaderHint::new();
    hint.set_topic(at.topic.clone());
    hint.set_partition(at.partition);
    hint.set_node_id(at.node_id.clone());
    hint.set_grpc_addr(at.grpc_addr.clone());
    hint.set_epoch(at.epoch);
    let mut detail = pb::AnyDetail::new();
    detail.set_type_url(pb::LEADER_HINT_TYPE.to_string());
    detail.set_value(hint.write_to_bytes().unwrap_or_default());
    let mut status = pb::ErrorStatus::new();
    status.set_code(code.into());
    status.set_message(message);
    status.mut_details().push(detail);
    status.write_to_bytes().unwrap_or_default()
}

/// Directories whose paths stay in the server's log (the data directory).
static PRIVATE_DIRS: OnceLock<Vec<String>> = OnceLock::new();

/// Keeps `data_dir`'s path out of what clients are told (as given and as
/// resolved); called once at start.
pub fn keep_private(data_dir: &Path) {
    let mut dirs = vec![data_dir.display().to_string()];
    if let Ok(abs) = std::fs::canonicalize(data_dir) {
        dirs.push(abs.display().to_string());
    }
    if let Ok(abs) = std::path::absolute(data_dir) {
        dirs.push(abs.display().to_string());
    }
    // Longest first, so that a path is never half replaced.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
    dirs.dedup();
    dirs.retain(|d| !d.is_empty() && d != "." && d != "/");
    let _ = PRIVATE_DIRS.set(dirs);
}

/// What a client is told: the error without local paths; for a failure
/// inside the server (INTERNAL, or out of descriptors or disk), a short
/// line, the details going to the log.
fn client_message(e: &Error, code: RpcStatusCode) -> String {
    let full = e.to_string();
    let short = match e {
        Error::Io { source, .. } if out_of_resources(source) => {
            Some("the node is out of file descriptors or disk space; retry later")
        }
        Error::Io { .. } => Some("internal error: a local file operation failed"),
        Error::Meta(_) => Some("internal error: the node's metadata store failed"),
        _ => None,
    };
    match short {
        Some(short) => {
            log::error!("answered {code:?} to a client for: {full}");
            format!("{short}; the server's log has the details")
        }
        None => redact(full),
    }
}

fn redact(mut msg: String) -> String {
    for dir in PRIVATE_DIRS.get().map(Vec::as_slice).unwrap_or(&[]) {
        msg = msg.replace(dir.as_str(), "<data-dir>");
    }
    msg
}

/// Out of file descriptors or disk space: the node is short of something an
/// operator can add (a higher open-files limit, a bigger disk), and the
/// request may succeed later; not a bug in the server.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOSPC | libc::EDQUOT)
    )
}

/// The status of a reply that never came (the engine stopped first).
pub(super) fn no_answer() -> RpcStatus {
    error_to_status(&Error::shutting_down())
}

/// Replies from a spawned future once `rx` answers.
pub(super) fn reply_later<T, R>(
    ctx: &RpcContext<'_>,
    sink: UnarySink<R>,
    rx: oneshot::Receiver<Result<T, Error>>,
    map: impl FnOnce(T) -> R + Send + 'static,
) where
    T: Send + 'static,
    R: Send + 'static,
{
    ctx.spawn(async move {
        let result = match rx.await {
            Ok(Ok(v)) => sink.success(map(v)).await,
            Ok(Err(e)) => sink.fail(error_to_status(&e)).await,
            Err(_) => sink.fail(no_answer()).await,
        };
        if let Err(e) = result {
            log::debug!("reply not delivered: {e}");
        }
    });
}

pub(super) fn fail_now<R: Send + 'static>(ctx: &RpcContext<'_>, sink: UnarySink<R>, st: RpcStatus) {
    ctx.spawn(async move {
        let _ = sink.fail(st).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_by_kind() {
        let key = "k".to_string();
        let code = |e: StoreError| error_to_status(&Error::Store(e)).code();
        assert_eq!(
            code(StoreError::Transient {
                key: key.clone(),
                reason: "503".into()
            }),
            RpcStatusCode::UNAVAILABLE
        );
        assert_eq!(
            code(StoreError::Permanent {
                key: key.clone(),
                reason: "403 Forbidden".into()
            }),
            RpcStatusCode::INTERNAL,
            "a 403 is not something a retry fixes"
        );
        assert_eq!(code(StoreError::NotFound { key }), RpcStatusCode::DATA_LOSS);
        assert_eq!(no_answer().code(), RpcStatusCode::UNAVAILABLE);
    }

    #[test]
    fn io_errors_for_want_of_descriptors_or_disk_are_resource_exhausted() {
        let code = |errno: i32| {
            let e = Error::io("fsync", std::io::Error::from_raw_os_error(errno));
            error_to_status(&e).code()
        };
        assert_eq!(code(libc::EMFILE), RpcStatusCode::RESOURCE_EXHAUSTED);
        assert_eq!(code(libc::ENOSPC), RpcStatusCode::RESOURCE_EXHAUSTED);
        assert_eq!(code(libc::EIO), RpcStatusCode::INTERNAL);
    }

    #[test]
    fn clients_are_not_told_local_paths() {
        let dir = tempfile::tempdir().expect("dir");
        keep_private(dir.path());
        let wal = dir.path().join("wal/t/0/00000000000000000000.wal");
        let io = Error::io(
            format!("write WAL {}", wal.display()),
            std::io::Error::from_raw_os_error(libc::EIO),
        );
        let st = error_to_status(&io);
        assert_eq!(st.code(), RpcStatusCode::INTERNAL);
        assert!(
            !st.message().contains(&*dir.path().to_string_lossy()),
            "{}",
            st.message()
        );
        assert!(
            st.message().contains("the server's log has the details"),
            "{}",
            st.message()
        );
        // Messages a client acts on keep their content, without the path.
        let stopped = Error::Unavailable(format!("partition t/0 stopped ({})", wal.display()));
        let msg = error_to_status(&stopped).message().to_string();
        assert!(
            msg.contains("<data-dir>/wal/t/0") && msg.starts_with("partition t/0"),
            "{msg}"
        );
    }
}
