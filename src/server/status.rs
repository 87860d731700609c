//! The one place errors become gRPC statuses, and the reply helpers every
//! handler uses.

use crate::error::Error;
use crate::object_store::StoreError;
use futures::channel::oneshot;
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, UnarySink};

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
        Error::Unavailable(_) => RpcStatusCode::UNAVAILABLE,
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
        Error::Meta(_) | Error::Io { .. } => RpcStatusCode::INTERNAL,
    };
    RpcStatus::with_message(code, e.to_string())
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
}
