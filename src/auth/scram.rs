//! SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka use
//! them): the stored credential, and the server's side of the exchange.
//!
//! The server keeps only the salt, the iteration count, StoredKey and
//! ServerKey. A client proves it knows the password without sending it;
//! the server proves it holds the credential with its final message.
//! Passwords are used as their UTF-8 bytes (no SASLprep).

use openssl::base64;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::PKey;
use openssl::sign::Signer;
use std::fmt;

/// The SCRAM hash functions served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn digest(self) -> MessageDigest {
        match self {
            Mechanism::Sha256 => MessageDigest::sha256(),
            Mechanism::Sha512 => MessageDigest::sha512(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC with a key of any length and a known digest cannot fail
        // short of the library running out of memory.
        PKey::hmac(key)
            .and_then(|k| Signer::new(self.digest(), &k)?.sign_oneshot_to_vec(data))
            .unwrap_or_default()
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        hash(self.digest(), data).map_or_else(|_| Vec::new(), |d| d.to_vec())
    }
}

/// Iterations for new credentials: Kafka's minimum is 4096.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Iterations accepted from a users file: enough to be SCRAM, few enough
/// that one authentication cannot take the node's CPU for long.
pub const ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=1_000_000;

/// What the server stores for one user and mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub mechanism: Mechanism,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credential({}, {} iterations)",
            self.mechanism.name(),
            self.iterations
        )
    }
}

impl Credential {
    /// The credential for `password` with `salt`.
    pub fn derive(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Credential {
        let salted = salted_password(mechanism, password, salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Credential {
            mechanism,
            iterations,
            salt: salt.to_vec(),
            stored_key: mechanism.h(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
        }
    }

    /// A credential with a fresh random salt.
    pub fn new(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        Ok(Credential::derive(
            mechanism,
            password,
            &random(24)?,
            iterations,
        ))
    }

    /// Whether `password` is the one this credential was made from (SASL
    /// PLAIN is checked this way: no password is ever stored).
    pub fn matches(&self, password: &str) -> bool {
        let salted = salted_password(self.mechanism, password, &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        same(&self.mechanism.h(&client_key), &self.stored_key)
    }
}

fn salted_password(m: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; m.digest().size()];
    // PBKDF2 fails only on impossible parameters (zero-length output).
    let _ = openssl::pkcs5::pbkdf2_hmac(
        password.as_bytes(),
        salt,
        iterations as usize,
        m.digest(),
        &mut out,
    );
    out
}

/// Constant-time equality (lengths are not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && !a.is_empty() && openssl::memcmp::eq(a, b)
}

/// A salt for a user that does not exist: an HMAC of its name under a key
/// drawn once per process.
fn unknown_user_salt(m: Mechanism, user: &str) -> Result<Vec<u8>, ScramError> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let key = match KEY.get() {
        Some(k) => k,
        None => {
            let fresh = random(32)?;
            KEY.get_or_init(|| fresh)
        }
    };
    let mut salt = Mechanism::Sha256.hmac(key, format!("{}\0{user}", m.name()).as_bytes());
    salt.truncate(24);
    Ok(salt)
}

fn random(n: usize) -> Result<Vec<u8>, ScramError> {
    let mut buf = vec![0u8; n];
    openssl::rand::rand_bytes(&mut buf).map_err(|_| ScramError::NoRandom)?;
    Ok(buf)
}

/// Why an exchange failed. What a client is told is only that it failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    /// A message that is not SCRAM (named, for the log).
    Malformed(&'static str),
    /// Unknown user or wrong password: the proof did not verify.
    BadProof,
    /// Channel binding or a token extension, which are not served.
    Unsupported(&'static str),
    /// The system's random generator failed.
    NoRandom,
}

impl fmt::Display for ScramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScramError::Malformed(what) => write!(f, "malformed SCRAM message: {what}"),
            ScramError::BadProof => write!(f, "invalid credentials"),
            ScramError::Unsupported(what) => write!(f, "not supported: {what}"),
            ScramError::NoRandom => write!(f, "the random generator failed"),
        }
    }
}

/// The server's state between the client's first and final messages.
pub struct ServerExchange {
    user: String,
    /// `None`: an unknown user, refused at the final message so that the
    /// exchange does not tell which users exist.
    credential: Option<Credential>,
    mechanism: Mechanism,
    /// client-first-message-bare "," server-first-message.
    transcript: String,
    nonce: String,
    gs2_header: String,
}

impl ServerExchange {
    /// Reads the client's first message; returns the state and the
    /// server's first message. `lookup` finds the user's credential.
    pub fn start(
        mechanism: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let nonce = base64::encode_block(&random(18)?);
        Self::start_with_nonce(mechanism, client_first, lookup, &nonce)
    }

    fn start_with_nonce(
        mechanism: Mechanism,
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<Credential>,
        server_nonce: &str,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (gs2_header, bare) = split_gs2(text)?;
        let mut parts = bare.split(',');
        let user = match parts.next() {
            Some(n) if n.starts_with("n=") => decode_saslname(&n[2..])?,
            Some(m) if m.starts_with("m=") => {
                return Err(ScramError::Unsupported("mandatory extensions"))
            }
            _ => return Err(ScramError::Malformed("no user name")),
        };
        let client_nonce = match parts.next() {
            Some(r) if r.starts_with("r=") && r.len() > 2 => &r[2..],
            _ => return Err(ScramError::Malformed("no nonce")),
        };
        for ext in parts {
            if ext.starts_with("tokenauth=") && ext != "tokenauth=false" {
                return Err(ScramError::Unsupported("delegation tokens"));
            }
        }
        let credential = lookup(&user).filter(|c| c.mechanism == mechanism);
        // An unknown user gets a salt like anyone's, the same at every
        // attempt, so that asking twice does not tell who exists (unless
        // a user was given a count other than the default).
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (unknown_user_salt(mechanism, &user)?, DEFAULT_ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", base64::encode_block(&salt));
        let exchange = ServerExchange {
            user,
            credential,
            mechanism,
            transcript: format!("{bare},{server_first}"),
            nonce,
            gs2_header: gs2_header.to_string(),
        };
        Ok((exchange, server_first.into_bytes()))
    }

    /// Reads the client's final message: on a valid proof, the user and
    /// the server's final message.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text =
            std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = match parts.next() {
            Some(c) if c.starts_with("c=") => base64::decode_block(&c[2..])
                .map_err(|_| ScramError::Malformed("channel binding is not base64"))?,
            _ => return Err(ScramError::Malformed("no channel binding")),
        };
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding differs from the first message",
            ));
        }
        // RFC 5802 has the client echo the server's nonce; librdkafka
        // sends its own nonce before it (its nonce twice). Kafka accepts a
        // nonce that ends with the server's, and so does this: the
        // server's random part is what makes the exchange fresh.
        match parts.next() {
            Some(r) if r.starts_with("r=") && r[2..].ends_with(&self.nonce) => {}
            _ => return Err(ScramError::Malformed("nonce differs from the server's")),
        }
        let proof = base64::decode_block(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let credential = self.credential.ok_or(ScramError::BadProof)?;
        let m = self.mechanism;
        let auth_message = format!("{},{without_proof}", self.transcript);
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if !same(&m.h(&client_key), &credential.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", base64::encode_block(&server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// Splits off the GS2 header (`n,,` or `y,,`, with an optional
/// `a=authzid`); channel binding (`p=`) is not served.
fn split_gs2(text: &str) -> Result<(&str, &str), ScramError> {
    let first = text
        .find(',')
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    let second = text[first + 1..]
        .find(',')
        .map(|i| first + 1 + i)
        .ok_or(ScramError::Malformed("no GS2 header"))?;
    match &text[..first] {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(ScramError::Unsupported("channel binding")),
        _ => return Err(ScramError::Malformed("bad GS2 flag")),
    }
    let authzid = &text[first + 1..second];
    if !(authzid.is_empty() || authzid.starts_with("a=")) {
        return Err(ScramError::Malformed("bad authorization identity"));
    }
    Ok((&text[..=second], &text[second + 1..]))
}

/// A SCRAM user name: `=2C` is `,` and `=3D` is `=`; any other `=` is
/// malformed.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange, byte for byte.
    #[test]
    fn the_rfc_7677_exchange_verifies_and_gives_its_server_signature() {
        let salt = base64::decode_block("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::derive(Mechanism::Sha256, "pencil", &salt, 4096);
        let (ex, server_first) = ServerExchange::start_with_nonce(
            Mechanism::Sha256,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| cred.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// A client's final message for `password`, given the server's first.
    /// `before` goes before the server's nonce (librdkafka sends its own).
    fn client_final(
        m: Mechanism,
        bare: &str,
        server_first: &str,
        password: &str,
        before: &str,
    ) -> String {
        let fields: Vec<&str> = server_first.split(',').collect();
        let nonce = &fields[0][2..];
        let salt = base64::decode_block(&fields[1][2..]).unwrap();
        let iterations: u32 = fields[2][2..].parse().unwrap();
        let salted = salted_password(m, password, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={before}{nonce}");
        let auth = format!("{bare},{server_first},{without_proof}");
        let signature = m.hmac(&m.h(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", base64::encode_block(&proof))
    }

    fn exchange(
        m: Mechanism,
        stored: &Credential,
        user: &str,
        password: &str,
    ) -> Result<String, ScramError> {
        let bare = format!("n={user},r=abcdefghijklmnop");
        let first = format!("n,,{bare}");
        let (ex, server_first) = ServerExchange::start(m, first.as_bytes(), |u| {
            (u == "alice").then(|| stored.clone())
        })?;
        let server_first = String::from_utf8(server_first).unwrap();
        let fin = client_final(m, &bare, &server_first, password, "");
        ex.finish(fin.as_bytes()).map(|(u, _)| u)
    }

    #[test]
    fn both_mechanisms_accept_the_password_and_refuse_others_and_unknown_users() {
        for m in Mechanism::ALL {
            let stored = Credential::new(m, "s3cret ünïcode", 4096).unwrap();
            assert_eq!(
                exchange(m, &stored, "alice", "s3cret ünïcode").unwrap(),
                "alice"
            );
            assert_eq!(
                exchange(m, &stored, "alice", "s3cret"),
                Err(ScramError::BadProof)
            );
            assert_eq!(
                exchange(m, &stored, "bob", "s3cret ünïcode"),
                Err(ScramError::BadProof)
            );
            assert!(stored.matches("s3cret ünïcode"));
            assert!(!stored.matches("s3cret ünïcodE"));
        }
        // A credential of the other mechanism does not serve this one.
        let sha256 = Credential::new(Mechanism::Sha256, "pw", 4096).unwrap();
        assert_eq!(
            exchange(Mechanism::Sha512, &sha256, "alice", "pw"),
            Err(ScramError::BadProof)
        );
    }

    /// librdkafka's final message carries its nonce before the server's
    /// combined one (its own nonce twice); the proof is over the message
    /// as sent.
    #[test]
    fn librdkafkas_doubled_client_nonce_is_accepted() {
        let m = Mechanism::Sha512;
        let stored = Credential::new(m, "pw", 4096).unwrap();
        let bare = "n=alice,r=cn0nce";
        let first = format!("n,,{bare}");
        let (ex, server_first) =
            ServerExchange::start(m, first.as_bytes(), |_| Some(stored.clone())).unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        let fin = client_final(m, bare, &server_first, "pw", "cn0nce");
        assert!(fin.starts_with("c=biws,r=cn0ncecn0nce"), "{fin}");
        assert_eq!(ex.finish(fin.as_bytes()).unwrap().0, "alice");
    }

    #[test]
    fn malformed_and_unsupported_messages_are_refused() {
        let none = |_: &str| None;
        for (first, want) in [
            (&b"p=tls-unique,,n=u,r=x"[..], "channel binding"),
            (b"n,,r=x", "user"),
            (b"n,,n=u", "nonce"),
            (b"n,,n=a=3Xb,r=x", "escape"),
            (b"n,,n=u,r=x,tokenauth=true", "token"),
            (b"q,,n=u,r=x", "GS2"),
            (b"\xff", "UTF-8"),
        ] {
            let err = ServerExchange::start(Mechanism::Sha256, first, none)
                .err()
                .unwrap();
            assert!(
                err.to_string().contains(want) || format!("{err:?}").contains(want),
                "{err} for {first:?}"
            );
        }
        let stored = Credential::new(Mechanism::Sha256, "pw", 4096).unwrap();
        let (ex, _) = ServerExchange::start(Mechanism::Sha256, b"n,,n=alice,r=abc", |_| {
            Some(stored.clone())
        })
        .unwrap();
        let err = ex
            .finish(b"c=biws,r=abc-not-the-servers,p=AAAA")
            .unwrap_err();
        assert_eq!(
            err,
            ScramError::Malformed("nonce differs from the server's")
        );
    }

    #[test]
    fn an_unknown_user_gets_the_same_salt_every_time_like_a_known_one() {
        let first = |user: &str| {
            let stored = Credential::new(Mechanism::Sha256, "pw", DEFAULT_ITERATIONS).unwrap();
            let msg = format!("n,,n={user},r=abc");
            let (_, server_first) = ServerExchange::start(Mechanism::Sha256, msg.as_bytes(), |u| {
                (u == "alice").then(|| stored.clone())
            })
            .unwrap();
            let text = String::from_utf8(server_first).unwrap();
            text.split(',').skip(1).collect::<Vec<_>>().join(",")
        };
        assert_eq!(first("mallory"), first("mallory"));
        assert_ne!(first("mallory"), first("trent"));
        assert!(first("mallory").ends_with(&format!(",i={DEFAULT_ITERATIONS}")));
    }

    #[test]
    fn escaped_user_names_decode() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("").is_err());
        assert!(decode_saslname("a=").is_err());
    }
}
