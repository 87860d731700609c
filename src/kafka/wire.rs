//! Kafka's framing: a request or response is a big-endian i32 size and that
//! many bytes. A request starts with its header (api key, version,
//! correlation id, client id, and tagged fields in the flexible header v2);
//! a response with the correlation id (and tagged fields in header v1).
//!
//! The header is read here by hand, so that a request with an API key we
//! do not know still yields its correlation id; bodies are decoded by
//! kafka-protocol once [`super::guard`] has checked their shape.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::Encodable;
use std::fmt;
use std::io::{self, Read};

/// A request's header, as far as the server needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// Why a frame could not be read or its header parsed.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection between requests.
    Closed,
    Io(io::Error),
    /// The size prefix is negative, too small for a header, or past the
    /// limit.
    Size {
        size: i64,
        limit: usize,
    },
    /// The header is truncated or its client id is not a string.
    Header(&'static str),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed"),
            FrameError::Io(e) => write!(f, "{e}"),
            FrameError::Size { size, limit } => write!(
                f,
                "a request of {size} bytes (the limit is {limit}, --kafka-max-request-bytes)"
            ),
            FrameError::Header(why) => write!(f, "malformed request header: {why}"),
        }
    }
}

/// Bytes of the smallest header: api key, version, correlation id, and a
/// null client id.
const MIN_HEADER: usize = 10;

/// Reads one frame: `Closed` when the peer closed cleanly before its
/// first byte. The buffer is allocated as the bytes arrive, so a size
/// prefix alone does not reserve memory.
pub fn read_frame(r: &mut impl Read, max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    let mut size = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut size[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let size = i32::from_be_bytes(size);
    let Ok(len) = usize::try_from(size) else {
        return Err(FrameError::Size {
            size: i64::from(size),
            limit: max_bytes,
        });
    };
    if len < MIN_HEADER || len > max_bytes {
        return Err(FrameError::Size {
            size: i64::from(size),
            limit: max_bytes,
        });
    }
    let mut frame = Vec::with_capacity(len.min(1 << 20));
    r.take(len as u64)
        .read_to_end(&mut frame)
        .map_err(FrameError::Io)?;
    if frame.len() < len {
        return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(frame)
}

/// The header version of a request (1, or 2 when flexible); `None` for
/// an API key this crate does not know.
fn request_header_version(api_key: i16, api_version: i16) -> Option<i16> {
    ApiKey::try_from(api_key)
        .ok()
        .map(|k| k.request_header_version(api_version))
}

/// Parses the header at the start of `frame`; returns it and where the
/// body starts. An unknown API key parses (header v1) so that it can be
/// answered or logged with its correlation id.
pub fn parse_header(frame: &[u8]) -> Result<(RequestHeader, usize), FrameError> {
    let short = FrameError::Header("truncated");
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    };
    let (Some(api_key), Some(api_version)) = (be16(0), be16(2)) else {
        return Err(short);
    };
    let correlation_id = frame
        .get(4..8)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(FrameError::Header("truncated"))?;
    let id_len = be16(8).ok_or(FrameError::Header("truncated"))?;
    let mut at = 10;
    let client_id = match usize::try_from(id_len) {
        Err(_) if id_len == -1 => None,
        Err(_) => return Err(FrameError::Header("client id length is negative")),
        Ok(n) => {
            let bytes = frame
                .get(at..at + n)
                .ok_or(FrameError::Header("client id is truncated"))?;
            at += n;
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    if request_header_version(api_key, api_version) == Some(2) {
        at = skip_tagged_fields(frame, at)?;
    }
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
    };
    Ok((header, at))
}

/// An unsigned varint at `at`: its value and the offset after it.
pub fn read_uvarint(bytes: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(at)?;
        at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value, at));
        }
    }
    None
}

fn skip_tagged_fields(frame: &[u8], at: usize) -> Result<usize, FrameError> {
    let (count, mut at) = read_uvarint(frame, at).ok_or(FrameError::Header("truncated"))?;
    for _ in 0..count {
        let (_, next) = read_uvarint(frame, at).ok_or(FrameError::Header("truncated"))?;
        let (size, next) = read_uvarint(frame, next).ok_or(FrameError::Header("truncated"))?;
        at = usize::try_from(size)
            .ok()
            .and_then(|s| next.checked_add(s))
            .filter(|end| *end <= frame.len())
            .ok_or(FrameError::Header("malformed tagged fields"))?;
    }
    Ok(at)
}

/// Encodes a response frame: size, header (v1 with empty tagged fields
/// when the API's response header is flexible), body.
pub fn encode_response<R: Encodable>(
    header: &RequestHeader,
    body: &R,
    version: i16,
) -> Result<Vec<u8>, String> {
    let flexible = ApiKey::try_from(header.api_key)
        .map(|k| k.response_header_version(version) >= 1)
        .unwrap_or(false);
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    buf.put_i32(header.correlation_id);
    if flexible {
        buf.put_u8(0);
    }
    body.encode(&mut buf, version)
        .map_err(|e| format!("cannot encode the answer to api {}: {e}", header.api_key))?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "an answer past 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(key: i16, version: i16, corr: i32, client: Option<&str>) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&key.to_be_bytes());
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&corr.to_be_bytes());
        match client {
            Some(c) => {
                v.extend_from_slice(&(c.len() as i16).to_be_bytes());
                v.extend_from_slice(c.as_bytes());
            }
            None => v.extend_from_slice(&(-1i16).to_be_bytes()),
        }
        v
    }

    #[test]
    fn headers_parse_with_and_without_tagged_fields() {
        // Metadata v12 is flexible: header v2 with tagged fields.
        let mut f = header_bytes(3, 12, 7, Some("rdkafka"));
        f.extend_from_slice(&[1, 5, 2, 0xaa, 0xbb]); // one tag, 2 bytes
        f.push(0x42);
        let (h, at) = parse_header(&f).unwrap();
        assert_eq!((h.api_key, h.api_version, h.correlation_id), (3, 12, 7));
        assert_eq!(h.client_id.as_deref(), Some("rdkafka"));
        assert_eq!(f[at], 0x42);
        // Metadata v1: header v1, the body starts after the client id.
        let f = header_bytes(3, 1, -3, None);
        let (h, at) = parse_header(&f).unwrap();
        assert_eq!((h.correlation_id, h.client_id, at), (-3, None, 10));
        // An unknown API key still yields its correlation id.
        let f = header_bytes(999, 0, 11, None);
        assert_eq!(parse_header(&f).unwrap().0.correlation_id, 11);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let f = header_bytes(3, 1, 1, Some("abc"));
        for cut in 0..f.len() {
            assert!(parse_header(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut f = header_bytes(3, 12, 1, None);
        f.extend_from_slice(&[1, 0, 200]); // a tag claiming 200 bytes
        assert!(parse_header(&f).is_err());
        let f = header_bytes(3, 1, 1, None)
            .into_iter()
            .take(8)
            .chain((-2i16).to_be_bytes())
            .collect::<Vec<_>>();
        assert!(parse_header(&f).is_err());
    }

    #[test]
    fn frames_are_bounded_and_eof_is_told_apart() {
        let mut body = header_bytes(18, 0, 1, None);
        let mut framed = (body.len() as i32).to_be_bytes().to_vec();
        framed.append(&mut body);
        assert_eq!(read_frame(&mut &framed[..], 1024).unwrap().len(), 10);
        assert!(matches!(
            read_frame(&mut &framed[..], 9),
            Err(FrameError::Size { size: 10, .. })
        ));
        assert!(matches!(
            read_frame(&mut &[][..], 1024),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &framed[..7], 1024),
            Err(FrameError::Io(_))
        ));
        let negative = (-5i32).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &negative[..], 1024),
            Err(FrameError::Size { .. })
        ));
    }

    #[test]
    fn uvarints_read_and_stop_at_ten_bytes() {
        assert_eq!(read_uvarint(&[0x96, 0x01], 0), Some((150, 2)));
        assert_eq!(read_uvarint(&[0x80; 11], 0), None);
        assert_eq!(read_uvarint(&[0x80], 0), None);
    }
}
