//! SASL for Kafka clients (KIP-43 and KIP-152): SaslHandshake v1 names the
//! mechanism, then SaslAuthenticate carries its messages. PLAIN is checked
//! against the stored SCRAM credential; SCRAM-SHA-256/512 run the
//! exchange of `auth::scram`. Until a connection has authenticated it may
//! only ask ApiVersions and these two; anything else closes it, as does a
//! failed authentication, after the error is sent (as Kafka does).
//!
//! SaslHandshake v0 (raw SASL tokens outside Kafka's framing) and
//! re-authentication (KIP-368) are not served.

use super::api::{sb, Answer};
use super::Face;
use crate::auth::scram::{Mechanism, ServerExchange};
use crate::auth::users::Users;
use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const UNSUPPORTED_VERSION: i16 = 35;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A mechanism a listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 3] = [
        SaslMechanism::Scram(Mechanism::Sha256),
        SaslMechanism::Scram(Mechanism::Sha512),
        SaslMechanism::Plain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The listener's SASL, as the flags ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaslConfig {
    /// The users file (`auth::users`), read at each authentication.
    pub users: PathBuf,
    pub mechanisms: Vec<SaslMechanism>,
    /// PLAIN is offered on a listener without TLS only when this is set.
    pub plain_without_tls: bool,
}

impl SaslConfig {
    /// From `--kafka-sasl-users`, `--kafka-sasl-mechanisms` and
    /// `--kafka-sasl-plain-without-tls`; `None` without a users file.
    pub fn from_flags(
        users: Option<String>,
        mechanisms: Option<String>,
        plain_without_tls: bool,
    ) -> Result<Option<SaslConfig>, String> {
        let Some(users) = users else {
            if mechanisms.is_some() || plain_without_tls {
                return Err("the --kafka-sasl-* flags need --kafka-sasl-users".into());
            }
            return Ok(None);
        };
        let mechanisms = match mechanisms {
            None => SaslMechanism::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|name| {
                    SaslMechanism::from_name(name.trim()).ok_or_else(|| {
                        format!(
                            "--kafka-sasl-mechanisms: {name:?} is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN"
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(Some(SaslConfig {
            users: PathBuf::from(users),
            mechanisms,
            plain_without_tls,
        }))
    }
}

/// Authentications counted for `/metrics`.
#[derive(Default)]
pub struct SaslStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

impl SaslStats {
    pub fn render(&self) -> String {
        format!(
            "# HELP streamhouse_kafka_sasl_authentications_total Kafka SASL authentications, by result (a failure closes the connection).\n\
             # TYPE streamhouse_kafka_sasl_authentications_total counter\n\
             streamhouse_kafka_sasl_authentications_total{{result=\"succeeded\"}} {}\n\
             streamhouse_kafka_sasl_authentications_total{{result=\"failed\"}} {}\n",
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Where one connection is in its authentication.
pub struct Session {
    /// The connection came through TLS.
    secure: bool,
    state: State,
}

enum State {
    /// The listener has no SASL: every request is served.
    Open,
    /// Waiting for SaslHandshake.
    Handshake,
    /// SaslHandshake chose this; waiting for SaslAuthenticate.
    Chosen(SaslMechanism),
    /// Between SCRAM's first and final messages.
    Scram(ServerExchange),
    Authenticated,
    /// Failed: the connection is closing.
    Failed,
}

/// What a SASL request leaves the connection to do after its answer.
pub enum After {
    GoOn,
    /// Close, for this reason (logged).
    Close(String),
}

impl Session {
    pub fn new(face: &Face, secure: bool) -> Session {
        let state = match face.config.sasl {
            Some(_) => State::Handshake,
            None => State::Open,
        };
        Session { secure, state }
    }

    /// The largest request frame read now: before authentication, Kafka's
    /// `sasl.server.max.receive.size` (512 KiB), so that a stranger
    /// cannot make the node buffer the configured 100 MiB.
    pub fn max_request_bytes(&self, configured: usize) -> usize {
        if self.authenticated() {
            configured
        } else {
            configured.min(512 << 10)
        }
    }

    /// Whether requests other than ApiVersions and SASL's are served yet.
    pub fn authenticated(&self) -> bool {
        matches!(self.state, State::Open | State::Authenticated)
    }

    /// The mechanisms this connection is offered.
    fn offered(&self, config: &SaslConfig) -> Vec<SaslMechanism> {
        let plain_ok = self.secure || config.plain_without_tls;
        config
            .mechanisms
            .iter()
            .copied()
            .filter(|m| *m != SaslMechanism::Plain || plain_ok)
            .collect()
    }

    /// SaslHandshake: the mechanism is chosen, or refused with the list.
    pub fn handshake(
        &mut self,
        face: &Face,
        req: SaslHandshakeRequest,
        version: i16,
    ) -> (Answer<SaslHandshakeResponse>, After) {
        let Some(config) = &face.config.sasl else {
            return (Answer::Nothing, After::Close("SASL is not enabled".into()));
        };
        let offered = self.offered(config);
        let names = offered.iter().map(|m| sb(m.name())).collect();
        let resp = SaslHandshakeResponse::default().with_mechanisms(names);
        if version == 0 {
            self.state = State::Failed;
            let resp = resp.with_error_code(UNSUPPORTED_VERSION);
            return (
                Answer::Now(resp),
                After::Close("SaslHandshake v0 is not served".into()),
            );
        }
        if !matches!(self.state, State::Handshake) {
            self.state = State::Failed;
            let resp = resp.with_error_code(ILLEGAL_SASL_STATE);
            return (
                Answer::Now(resp),
                After::Close("a second SaslHandshake".into()),
            );
        }
        let asked = req.mechanism.as_str();
        match offered.iter().find(|m| m.name() == asked) {
            Some(m) => {
                self.state = State::Chosen(*m);
                (Answer::Now(resp), After::GoOn)
            }
            None => {
                self.state = State::Failed;
                face.sasl_stats.failed.fetch_add(1, Ordering::Relaxed);
                let resp = resp.with_error_code(UNSUPPORTED_SASL_MECHANISM);
                let why = format!("SASL mechanism {asked:?} is not offered");
                (Answer::Now(resp), After::Close(why))
            }
        }
    }

    /// SaslAuthenticate: one message of the chosen mechanism.
    pub fn authenticate(
        &mut self,
        face: &Arc<Face>,
        req: SaslAuthenticateRequest,
    ) -> (Answer<SaslAuthenticateResponse>, After) {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let outcome = match (state, &face.config.sasl) {
            (_, None) => return (Answer::Nothing, After::Close("SASL is not enabled".into())),
            (State::Chosen(SaslMechanism::Plain), Some(c)) => {
                plain(c, &req.auth_bytes).map(|b| (b, State::Authenticated))
            }
            (State::Chosen(SaslMechanism::Scram(m)), Some(c)) => {
                scram_first(c, m, &req.auth_bytes).map(|(ex, first)| (first, State::Scram(ex)))
            }
            (State::Scram(exchange), Some(_)) => exchange
                .finish(&req.auth_bytes)
                .map(|(user, last)| {
                    log::debug!("kafka: {user} authenticated");
                    (Bytes::from(last), State::Authenticated)
                })
                .map_err(|e| Failure::Refused(e.to_string())),
            (_, Some(_)) => Err(Failure::State),
        };
        match outcome {
            Ok((bytes, next)) => {
                if matches!(next, State::Authenticated) {
                    face.sasl_stats.succeeded.fetch_add(1, Ordering::Relaxed);
                }
                self.state = next;
                let resp = SaslAuthenticateResponse::default()
                    .with_error_message(None)
                    .with_auth_bytes(bytes);
                (Answer::Now(resp), After::GoOn)
            }
            Err(failure) => {
                face.sasl_stats.failed.fetch_add(1, Ordering::Relaxed);
                let (code, message, why) = match failure {
                    Failure::State => (
                        ILLEGAL_SASL_STATE,
                        "SaslAuthenticate without a SaslHandshake first".to_string(),
                        "SaslAuthenticate out of order".to_string(),
                    ),
                    Failure::Refused(why) => (
                        SASL_AUTHENTICATION_FAILED,
                        "Authentication failed: invalid username or password".to_string(),
                        format!("authentication failed: {why}"),
                    ),
                };
                let resp = SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(sb(message)));
                (Answer::Now(resp), After::Close(why))
            }
        }
    }
}

enum Failure {
    State,
    /// Why, for the log (the client is told only that it failed).
    Refused(String),
}

fn users(config: &SaslConfig) -> Result<Users, Failure> {
    Users::load(&config.users).map_err(|e| {
        log::warn!("kafka: {e}");
        Failure::Refused(e)
    })
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`.
fn plain(config: &SaslConfig, message: &[u8]) -> Result<Bytes, Failure> {
    let bad = |why: &str| Failure::Refused(format!("PLAIN: {why}"));
    let text = std::str::from_utf8(message).map_err(|_| bad("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not three fields"));
    };
    if !authzid.is_empty() && authzid != user {
        return Err(bad("an authorization id other than the user"));
    }
    if users(config)?.check_password(user, password) {
        log::debug!("kafka: {user} authenticated");
        Ok(Bytes::new())
    } else {
        Err(Failure::Refused(format!(
            "PLAIN: wrong password or unknown user {user:?}"
        )))
    }
}

fn scram_first(
    config: &SaslConfig,
    m: Mechanism,
    message: &[u8],
) -> Result<(ServerExchange, Bytes), Failure> {
    let users = users(config)?;
    ServerExchange::start(m, message, |u| users.credential(u, m).cloned())
        .map(|(exchange, first)| (exchange, Bytes::from(first)))
        .map_err(|e| Failure::Refused(e.to_string()))
}
