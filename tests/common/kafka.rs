//! A minimal Kafka client for the tests: requests encoded by kafka-protocol
//! (its client half), sent over a blocking socket, answers decoded.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct KafkaConn {
    pub stream: TcpStream,
    next_id: i32,
}

impl KafkaConn {
    pub fn connect(addr: &str) -> KafkaConn {
        let stream = TcpStream::connect(addr).expect("connect to the kafka listener");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        KafkaConn { stream, next_id: 1 }
    }

    /// Sends `req` at `version` without reading the answer; returns the
    /// correlation id.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        let id = self.next_id;
        self.next_id += 1;
        let key = ApiKey::try_from(R::KEY).unwrap();
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_static_str("sh-test")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).unwrap();
        id
    }

    /// Reads the next answer to a request of type `R` sent at `version`;
    /// returns its correlation id and body.
    pub fn receive<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let mut frame = Bytes::from(self.read_frame().expect("an answer"));
        let key = ApiKey::try_from(R::KEY).unwrap();
        let header =
            ResponseHeader::decode(&mut frame, key.response_header_version(version)).unwrap();
        let body = R::Response::decode(&mut frame, version)
            .unwrap_or_else(|e| panic!("decode {key:?} v{version} answer: {e}"));
        assert_eq!(frame.remaining(), 0, "{key:?} v{version}: bytes left over");
        (header.correlation_id, body)
    }

    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let id = self.send(version, req);
        let (got, body) = self.receive::<R>(version);
        assert_eq!(got, id, "answers come in request order");
        body
    }

    /// One frame, or `None` when the server closed the connection.
    pub fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        Some(frame)
    }

    /// True when the server has closed the connection (reads EOF or a
    /// reset); false when it sends something or stays silent (the read
    /// timeout, 30 s).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}
