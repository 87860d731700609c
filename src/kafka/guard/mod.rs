//! The shape check a request body passes before kafka-protocol decodes it.
//!
//! kafka-protocol's array decoders reserve room for the element count they
//! read off the wire before reading any element, so ten bytes declaring 2^31
//! elements abort the process; its byte and compact-string decoders likewise
//! zero a buffer of the declared length first. [`check_request`] walks the
//! body field by field, per API and version, as the crate's generated
//! `Decodable` impls (Kafka's message definitions) lay it out, and refuses it
//! unless every length and count fits in the bytes that remain. A body that
//! passes has the elements it declares, so decoding it allocates in
//! proportion to its size.
//!
//! ```text
//! classic (non-flexible) versions, big-endian:
//!   string  i16 length (-1: null) | bytes
//!   bytes   i32 length (-1: null) | bytes
//!   array   i32 count (-1: null)  | elements
//! flexible versions:
//!   string, bytes  uvarint length + 1 (0: null) | bytes
//!   array          uvarint count + 1 (0: null)  | elements
//!   after every struct: uvarint n | n × (uvarint tag | uvarint size | size bytes)
//! uuid: 16 bytes; bool, i8: 1; i16: 2; i32: 4; i64: 8
//! ```
//!
//! Stricter than the crate in three places, none of which a Kafka client
//! produces: a varint longer than 5 bytes or past 32 bits, tagged fields not
//! in increasing tag order, and a known tagged field whose contents do not
//! fill exactly its declared size (the crate decodes a known tag's contents
//! without looking at the size). Trailing bytes after the last field are
//! allowed, as the crate ignores them. UTF-8 is left to the crate.

mod apis;

use apis::{
    api_versions, create_topics, delete_topics, describe_cluster, describe_configs,
    describe_groups, fetch, find_coordinator, heartbeat, init_producer_id, join_group, leave_group,
    list_groups, list_offsets, metadata, offset_commit, offset_fetch, produce, sasl_authenticate,
    sasl_handshake, sync_group,
};
use kafka_protocol::messages::ApiKey;
use std::fmt;

/// What was wrong with a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The api key, or this version of it, is not one the listener decodes.
    Unsupported { api_key: i16, version: i16 },
    /// A field runs past the end of the body.
    Truncated,
    /// A length or count below -1, or null (-1) where the field is not nullable.
    BadLength,
    /// An array or tag buffer declares more entries than bytes remain.
    CountTooLarge,
    /// A varint longer than 5 bytes, or past 32 bits.
    BadVarint,
    /// Tags out of order, a known tag this version does not have, or a known
    /// tag whose contents do not fill its declared size.
    BadTag,
}

/// A request body refused by [`check_request`]: what failed, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeError {
    pub fault: Fault,
    /// Byte offset in the body of the field (or tag) that failed.
    pub offset: usize,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unsupported { api_key, version } => {
                write!(f, "api key {api_key} version {version} is not supported")
            }
            Fault::Truncated => f.write_str("field runs past the end of the request"),
            Fault::BadLength => f.write_str("negative length, or null where not nullable"),
            Fault::CountTooLarge => f.write_str("count exceeds the bytes that remain"),
            Fault::BadVarint => f.write_str("varint longer than 5 bytes or past 32 bits"),
            Fault::BadTag => f.write_str("tagged field out of order, unknown here or mis-sized"),
        }
    }
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed request at byte {}: {}",
            self.offset, self.fault
        )
    }
}

impl std::error::Error for ShapeError {}

type Check = Result<(), ShapeError>;
type CheckFn = fn(&mut Cursor<'_>, i16) -> Check;

/// The requests the listener decodes: api key, lowest and highest version.
const APIS: &[(ApiKey, i16, i16, CheckFn)] = &[
    (ApiKey::Produce, 3, 13, produce),
    (ApiKey::Fetch, 4, 18, fetch),
    (ApiKey::ListOffsets, 1, 10, list_offsets),
    (ApiKey::Metadata, 0, 13, metadata),
    (ApiKey::OffsetCommit, 2, 9, offset_commit),
    (ApiKey::OffsetFetch, 1, 9, offset_fetch),
    (ApiKey::FindCoordinator, 0, 6, find_coordinator),
    (ApiKey::JoinGroup, 0, 9, join_group),
    (ApiKey::Heartbeat, 0, 4, heartbeat),
    (ApiKey::LeaveGroup, 0, 5, leave_group),
    (ApiKey::SyncGroup, 0, 5, sync_group),
    (ApiKey::DescribeGroups, 0, 6, describe_groups),
    (ApiKey::ListGroups, 0, 5, list_groups),
    (ApiKey::ApiVersions, 0, 4, api_versions),
    (ApiKey::CreateTopics, 2, 7, create_topics),
    (ApiKey::DeleteTopics, 1, 6, delete_topics),
    (ApiKey::InitProducerId, 0, 5, init_producer_id),
    (ApiKey::DescribeConfigs, 1, 4, describe_configs),
    (ApiKey::DescribeCluster, 0, 2, describe_cluster),
    (ApiKey::SaslHandshake, 0, 1, sasl_handshake),
    (ApiKey::SaslAuthenticate, 0, 2, sasl_authenticate),
];

/// The versions of `api_key` that [`check_request`] knows, lowest and highest.
pub fn version_range(api_key: i16) -> Option<(i16, i16)> {
    APIS.iter()
        .find(|(key, ..)| *key as i16 == api_key)
        .map(|&(_, lo, hi, _)| (lo, hi))
}

/// Checks that `body` (the request bytes after the request header) has the
/// shape of request `api_key` at `version`: every array's count and every
/// string's / bytes' length fits in the bytes that remain (each array
/// element takes at least one byte), tagged fields are well formed, nothing
/// is truncated. Trailing bytes after the last field are allowed
/// (kafka-protocol ignores them).
pub fn check_request(api_key: i16, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    let unsupported = ShapeError {
        fault: Fault::Unsupported { api_key, version },
        offset: 0,
    };
    let &(_, _, _, check) = APIS
        .iter()
        .find(|&&(key, lo, hi, _)| key as i16 == api_key && (lo..=hi).contains(&version))
        .ok_or(unsupported)?;
    check(&mut Cursor { body, pos: 0 }, version)
}

/// Reads a body front to back, checking sizes; keeps no values but lengths.
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    fn error(&self, offset: usize, fault: Fault) -> ShapeError {
        ShapeError { fault, offset }
    }

    /// Takes `n` bytes; a shortfall is blamed on the field starting at `at`.
    fn take(&mut self, at: usize, n: usize) -> Result<&'a [u8], ShapeError> {
        let bytes = self.body.get(self.pos..).and_then(|rest| rest.get(..n));
        let bytes = bytes.ok_or(self.error(at, Fault::Truncated))?;
        self.pos += n;
        Ok(bytes)
    }

    fn skip(&mut self, at: usize, n: usize) -> Check {
        self.take(at, n).map(|_| ())
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ShapeError> {
        let at = self.pos;
        let bytes = self.take(at, N)?;
        <[u8; N]>::try_from(bytes).map_err(|_| self.error(at, Fault::Truncated))
    }

    fn i8(&mut self) -> Check {
        self.fixed::<1>().map(|_| ())
    }

    fn bool(&mut self) -> Check {
        self.i8()
    }

    fn i16(&mut self) -> Check {
        self.fixed::<2>().map(|_| ())
    }

    fn i32(&mut self) -> Check {
        self.fixed::<4>().map(|_| ())
    }

    fn i64(&mut self) -> Check {
        self.fixed::<8>().map(|_| ())
    }

    fn uuid(&mut self) -> Check {
        self.fixed::<16>().map(|_| ())
    }

    /// An unsigned LEB128 varint of at most 5 bytes and 32 bits.
    fn varint(&mut self) -> Result<u32, ShapeError> {
        let at = self.pos;
        let mut value: u32 = 0;
        for i in 0..5 {
            let [byte] = self
                .fixed::<1>()
                .map_err(|_| self.error(at, Fault::Truncated))?;
            if i == 4 && byte > 0x0f {
                return Err(self.error(at, Fault::BadVarint));
            }
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(at, Fault::BadVarint))
    }

    /// A length or count: a varint holding n + 1 when `flexible`, else a
    /// big-endian i16 (`short`) or i32. `None` is null, refused unless
    /// `nullable`.
    fn length(
        &mut self,
        flexible: bool,
        short: bool,
        nullable: bool,
    ) -> Result<Option<usize>, ShapeError> {
        let at = self.pos;
        let n = if flexible {
            i64::from(self.varint()?) - 1
        } else if short {
            i64::from(i16::from_be_bytes(self.fixed()?))
        } else {
            i64::from(i32::from_be_bytes(self.fixed()?))
        };
        match usize::try_from(n) {
            Ok(n) => Ok(Some(n)),
            Err(_) if n == -1 && nullable => Ok(None),
            Err(_) => Err(self.error(at, Fault::BadLength)),
        }
    }

    fn sized(&mut self, flexible: bool, short: bool, nullable: bool) -> Check {
        let at = self.pos;
        if let Some(n) = self.length(flexible, short, nullable)? {
            self.skip(at, n)?;
        }
        Ok(())
    }

    fn string(&mut self, flexible: bool) -> Check {
        self.sized(flexible, true, false)
    }

    fn nullable_string(&mut self, flexible: bool) -> Check {
        self.sized(flexible, true, true)
    }

    fn bytes(&mut self, flexible: bool) -> Check {
        self.sized(flexible, false, false)
    }

    fn nullable_bytes(&mut self, flexible: bool) -> Check {
        self.sized(flexible, false, true)
    }

    fn elements(
        &mut self,
        flexible: bool,
        nullable: bool,
        mut each: impl FnMut(&mut Self) -> Check,
    ) -> Check {
        let at = self.pos;
        let Some(count) = self.length(flexible, false, nullable)? else {
            return Ok(());
        };
        if count > self.remaining() {
            return Err(self.error(at, Fault::CountTooLarge));
        }
        (0..count).try_for_each(|_| each(self))
    }

    fn array(&mut self, flexible: bool, each: impl FnMut(&mut Self) -> Check) -> Check {
        self.elements(flexible, false, each)
    }

    fn nullable_array(&mut self, flexible: bool, each: impl FnMut(&mut Self) -> Check) -> Check {
        self.elements(flexible, true, each)
    }

    /// The tag buffer ending a struct in a flexible version, none known.
    fn tags(&mut self, flexible: bool) -> Check {
        self.tagged(flexible, |_, _| None)
    }

    /// The tag buffer, with `known` checking the contents of the tags this
    /// version defines (`None`: not one of them, skipped by its size).
    fn tagged(
        &mut self,
        flexible: bool,
        mut known: impl FnMut(&mut Self, u32) -> Option<Check>,
    ) -> Check {
        if !flexible {
            return Ok(());
        }
        let at = self.pos;
        let count = self.varint()? as usize;
        if count > self.remaining() {
            return Err(self.error(at, Fault::CountTooLarge));
        }
        let mut previous = None;
        for _ in 0..count {
            let at = self.pos;
            let tag = self.varint()?;
            if previous.is_some_and(|p| tag <= p) {
                return Err(self.error(at, Fault::BadTag));
            }
            previous = Some(tag);
            let size = self.varint()? as usize;
            let start = self.pos;
            if size > self.remaining() {
                return Err(self.error(at, Fault::Truncated));
            }
            match known(self, tag) {
                None => self.skip(at, size)?,
                Some(parsed) => parsed?,
            }
            if self.pos - start != size {
                return Err(self.error(at, Fault::BadTag));
            }
        }
        Ok(())
    }

    /// A known tag this version does not have (kafka-protocol refuses it).
    fn tag_not_in_version(&self) -> Option<Check> {
        Some(Err(self.error(self.pos, Fault::BadTag)))
    }
}

#[cfg(test)]
mod tests;
