//! The relay and the handshake rules, with certificates made here.

use super::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::X509;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

struct Issued {
    cert: X509,
    key: PKey<Private>,
}

/// A certificate for `cn` (with `127.0.0.1` and `localhost` as names, or
/// for `elsewhere` only `elsewhere.example`), signed by `ca` or by itself.
fn issue(cn: &str, serial: u32, ca: Option<&Issued>, is_ca: bool) -> Issued {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.map_or(&name, |c| c.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if is_ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    } else {
        let mut san = SubjectAlternativeName::new();
        if cn == "elsewhere" {
            san.dns("elsewhere.example");
        } else {
            san.ip("127.0.0.1").dns("localhost");
        }
        let san = san
            .build(&b.x509v3_context(ca.map(|c| c.cert.as_ref()), None))
            .unwrap();
        b.append_extension(san).unwrap();
    }
    b.sign(ca.map_or(&key, |c| &c.key), MessageDigest::sha256())
        .unwrap();
    Issued {
        cert: b.build(),
        key,
    }
}

fn write(dir: &Path, name: &str, i: &Issued) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, i.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, i.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert, key)
}

/// A CA, a server certificate, a client certificate from the same CA and
/// one from another CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    foreign_client: (PathBuf, PathBuf),
    ca_issued: Issued,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = issue("test CA", 1, None, true);
    let foreign = issue("foreign CA", 1, None, true);
    let server = write(dir.path(), "server", &issue("server", 2, Some(&ca), false));
    let client = write(dir.path(), "client", &issue("client", 3, Some(&ca), false));
    let foreign_client = write(
        dir.path(),
        "foreign",
        &issue("client", 3, Some(&foreign), false),
    );
    let (ca_path, _) = write(dir.path(), "ca", &ca);
    Pki {
        dir,
        ca: ca_path,
        server,
        client,
        foreign_client,
        ca_issued: ca,
    }
}

/// A listener whose TLS connections' plain ends go to `protocol`, each on
/// a thread of its own.
fn server(tls: Arc<ServerTls>, protocol: fn(UnixStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            tls.serve(tcp, move |plain, _peer| {
                std::thread::spawn(move || protocol(plain));
            });
        }
    });
    addr
}

/// A listener whose TLS connections are echoed back by the plain side.
fn echo_server(tls: Arc<ServerTls>) -> String {
    server(tls, |mut plain| {
        let mut buf = [0u8; 4096];
        loop {
            match plain.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if plain.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Sends `data` through and reads it back (on two threads, so that
/// neither side's buffers have to hold it all).
fn round_trip(plain: UnixStream, data: &[u8]) -> Vec<u8> {
    let mut writer = plain.try_clone().unwrap();
    let out = data.to_vec();
    let w = std::thread::spawn(move || writer.write_all(&out).unwrap());
    let mut back = vec![0u8; data.len()];
    let mut plain = plain;
    plain.read_exact(&mut back).unwrap();
    w.join().unwrap();
    back
}

fn files(pki: &Pki, mutual: bool) -> TlsFiles {
    TlsFiles {
        cert: pki.server.0.clone(),
        key: pki.server.1.clone(),
        client_ca: mutual.then(|| pki.ca.clone()),
    }
}

#[test]
fn bytes_cross_the_relay_both_ways_intact() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::H2, "test").unwrap());
    let addr = echo_server(Arc::clone(&tls));
    let client = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: None,
    };
    // 3 MiB that does not repeat, larger than every buffer on the way.
    let mut data = vec![0u8; 3 << 20];
    openssl::rand::rand_bytes(&mut data).unwrap();
    let back = round_trip(client.connect(&addr).unwrap(), &data);
    assert!(back == data, "the echo differs from what was sent");
    assert_eq!(tls.stats.handshakes.load(Ordering::Relaxed), 1);
}

#[test]
fn a_certificate_that_does_not_name_the_address_is_refused() {
    let pki = pki();
    let (cert, key) = write(
        pki.dir.path(),
        "elsewhere",
        &issue("elsewhere", 9, Some(&pki.ca_issued), false),
    );
    let files = TlsFiles {
        cert,
        key,
        client_ca: None,
    };
    let tls = Arc::new(ServerTls::load(&files, Alpn::None, "test").unwrap());
    let addr = echo_server(tls);
    let client = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: None,
    };
    let err = client.connect(&addr).unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[test]
fn a_ca_file_replaces_the_systems_cas() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::None, "test").unwrap());
    let addr = echo_server(tls);
    // Trusting another CA only: the server's certificate is refused even
    // though the system's store is there too.
    let foreign = issue("foreign CA", 5, None, true);
    let (foreign_ca, _) = write(pki.dir.path(), "foreign-ca", &foreign);
    let client = ClientTls {
        ca: Some(foreign_ca),
        cert: None,
    };
    assert!(client.connect(&addr).is_err());
}

/// The client's last bytes reach the protocol side, and its answer comes
/// back, after the client has closed its side (and the reverse: what the
/// protocol side writes just before it closes arrives).
#[test]
fn the_last_bytes_of_either_side_arrive_after_it_closes() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::None, "test").unwrap());
    // Reads to the end, answers with what it read reversed, closes.
    let addr = server(tls, |mut plain| {
        let mut got = Vec::new();
        plain.read_to_end(&mut got).unwrap();
        got.reverse();
        plain.write_all(&got).unwrap();
    });
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(&pki.ca).unwrap();
    let tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = b.build().connect("127.0.0.1", tcp).unwrap();
    let mut data = vec![0u8; 200 << 10];
    openssl::rand::rand_bytes(&mut data).unwrap();
    s.write_all(&data).unwrap();
    // close_notify: the client will send nothing more, and still reads.
    let _ = s.shutdown();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    data.reverse();
    assert!(
        back == data,
        "{} of {} bytes came back",
        back.len(),
        data.len()
    );
}

#[test]
fn a_client_that_stalls_its_handshake_is_closed_at_the_deadline() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::None, "test").unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tcp, _client) = {
        let client = TcpStream::connect(addr).unwrap();
        (listener.accept().unwrap().0, client)
    };
    let started = std::time::Instant::now();
    let stream = handshake(&tls.current(), tcp, started + Duration::from_millis(300));
    assert!(stream.unwrap_err().contains("not done within"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn mutual_tls_refuses_clients_without_a_certificate_of_its_ca() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, true), Alpn::None, "test").unwrap());
    let addr = echo_server(Arc::clone(&tls));
    let with = |cert: Option<&(PathBuf, PathBuf)>| ClientTls {
        ca: Some(pki.ca.clone()),
        cert: cert.cloned(),
    };
    let ok = with(Some(&pki.client)).connect(&addr).unwrap();
    assert_eq!(round_trip(ok, b"hello"), b"hello");
    // In TLS 1.3 the client finishes its handshake before the server has
    // checked its certificate: the refusal shows as a closed connection.
    for refused in [with(None), with(Some(&pki.foreign_client))] {
        match refused.connect(&addr) {
            Err(_) => {}
            Ok(mut plain) => {
                let _ = plain.write_all(b"hello");
                let mut buf = [0u8; 5];
                assert!(
                    plain.read_exact(&mut buf).is_err(),
                    "served without a trusted certificate"
                );
            }
        }
    }
    assert_eq!(tls.stats.handshakes.load(Ordering::Relaxed), 1);
    assert_eq!(tls.stats.handshake_failures.load(Ordering::Relaxed), 2);
}

#[test]
fn a_client_without_tls_is_closed_and_counted() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::None, "test").unwrap());
    let addr = echo_server(Arc::clone(&tls));
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A Kafka ApiVersions request in clear text.
    tcp.write_all(&[0, 0, 0, 10, 0, 18, 0, 3, 0, 0, 0, 1, 0, 0])
        .unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(
        !got.windows(4).any(|w| w == [0, 0, 0, 1]),
        "an answer came back in clear text"
    );
    for _ in 0..100 {
        if tls.stats.handshake_failures.load(Ordering::Relaxed) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(tls.stats.handshake_failures.load(Ordering::Relaxed), 1);
}

/// The serial of the certificate a server presents.
fn served_serial(addr: &str, ca: &Path) -> u32 {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(ca).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    let s = b.build().connect("127.0.0.1", tcp).unwrap();
    let cert = s.ssl().peer_certificate().unwrap();
    let serial = cert.serial_number().to_bn().unwrap();
    serial.to_dec_str().unwrap().parse().unwrap()
}

#[test]
fn reload_serves_new_certificates_to_new_connections_and_keeps_open_ones() {
    let pki = pki();
    let tls = Arc::new(ServerTls::load(&files(&pki, false), Alpn::None, "test").unwrap());
    let addr = echo_server(Arc::clone(&tls));
    let client = ClientTls {
        ca: Some(pki.ca.clone()),
        cert: None,
    };
    let open = client.connect(&addr).unwrap();
    let open = {
        let mut o = open;
        o.write_all(b"one").unwrap();
        let mut b = [0u8; 3];
        o.read_exact(&mut b).unwrap();
        o
    };
    assert_eq!(served_serial(&addr, &pki.ca), 2);
    // A bad file does not replace what is served.
    std::fs::write(&pki.server.0, b"not a certificate").unwrap();
    assert!(tls.reload().unwrap_err().contains("certificate"));
    let renewed = issue("server", 7, Some(&pki.ca_issued), false);
    let (cert, key) = write(pki.dir.path(), "renewed", &renewed);
    std::fs::rename(cert, &pki.server.0).unwrap();
    std::fs::rename(key, &pki.server.1).unwrap();
    tls.reload().unwrap();
    assert_eq!(served_serial(&addr, &pki.ca), 7);
    assert_eq!(round_trip(open, b"still open"), b"still open");
}

#[test]
fn unreadable_files_are_named() {
    let pki = pki();
    let mut f = files(&pki, false);
    f.key = pki.client.1.clone();
    let err = ServerTls::load(&f, Alpn::None, "test").err().unwrap();
    assert!(
        err.contains("client.key") && err.contains("mismatch"),
        "{err}"
    );
    f.cert = pki.dir.path().join("missing.crt");
    let err = ServerTls::load(&f, Alpn::None, "test").err().unwrap();
    assert!(err.contains("missing.crt"), "{err}");
}
