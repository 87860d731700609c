//! The users file: SCRAM credentials, never passwords. One line per user
//! and mechanism, fields separated by single spaces:
//!
//! ```text
//! # comment
//! alice SCRAM-SHA-256 8192 <salt> <StoredKey> <ServerKey>
//! alice SCRAM-SHA-512 8192 <salt> <StoredKey> <ServerKey>
//! ```
//!
//! Salt and keys are standard base64. `streamctl user add|delete|list`
//! writes it (a new file beside it, renamed over it, mode 0600);
//! `streamhoused --kafka-sasl-users` reads it at every authentication, so
//! a change counts from the next connection.

use super::scram::{Credential, Mechanism, DEFAULT_ITERATIONS, ITERATIONS};
use openssl::base64;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Longest user name, in bytes.
pub const MAX_NAME: usize = 255;

/// The users, by name; each with a credential per mechanism.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Users {
    users: BTreeMap<String, Vec<Credential>>,
}

/// A user name: 1 to 255 bytes, no spaces or control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a user name is 1 to {MAX_NAME} bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "user name {name:?} has a space or a control character"
        ));
    }
    Ok(())
}

impl Users {
    /// Parses a users file; an error names the line.
    pub fn parse(text: &str) -> Result<Users, String> {
        let mut users = Users::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, cred) = parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            let creds = users.users.entry(name.to_string()).or_default();
            if creds.iter().any(|c| c.mechanism == cred.mechanism) {
                return Err(format!(
                    "line {}: a second {} credential for {name:?}",
                    i + 1,
                    cred.mechanism.name()
                ));
            }
            creds.push(cred);
        }
        Ok(users)
    }

    /// Reads `path`; an error names it.
    pub fn load(path: &Path) -> Result<Users, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read users file {}: {e}", path.display()))?;
        Users::parse(&text).map_err(|e| format!("users file {}: {e}", path.display()))
    }

    /// Reads `path`, or no users when it does not exist yet.
    pub fn load_or_empty(path: &Path) -> Result<Users, String> {
        match path.try_exists() {
            Ok(false) => Ok(Users::default()),
            _ => Users::load(path),
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# StreamHouse users: SCRAM credentials (streamctl user add|delete|list).\n",
        );
        for (name, creds) in &self.users {
            for c in creds {
                s.push_str(&format!(
                    "{name} {} {} {} {} {}\n",
                    c.mechanism.name(),
                    c.iterations,
                    base64::encode_block(&c.salt),
                    base64::encode_block(&c.stored_key),
                    base64::encode_block(&c.server_key),
                ));
            }
        }
        s
    }

    /// Writes the file whole: a new file beside it (mode 0600), synced,
    /// then renamed over it, so a reader sees the old or the new.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("cannot write users file {}: {e}", path.display());
        let tmp = path.with_extension("new");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        f.write_all(self.render().as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// Adds `name` (or replaces its credentials) with a credential for
    /// every mechanism.
    pub fn add(&mut self, name: &str, password: &str, iterations: u32) -> Result<(), String> {
        check_name(name)?;
        if password.is_empty() {
            return Err("the password is empty".into());
        }
        if !ITERATIONS.contains(&iterations) {
            return Err(format!(
                "iterations must be from {} to {}",
                ITERATIONS.start(),
                ITERATIONS.end()
            ));
        }
        let creds = Mechanism::ALL
            .into_iter()
            .map(|m| Credential::new(m, password, iterations).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        self.users.insert(name.to_string(), creds);
        Ok(())
    }

    /// Removes `name`; false when there was no such user.
    pub fn delete(&mut self, name: &str) -> bool {
        self.users.remove(name).is_some()
    }

    /// Each user with the mechanisms it has credentials for.
    pub fn list(&self) -> Vec<(&str, Vec<Mechanism>)> {
        self.users
            .iter()
            .map(|(n, c)| (n.as_str(), c.iter().map(|c| c.mechanism).collect()))
            .collect()
    }

    pub fn credential(&self, name: &str, mechanism: Mechanism) -> Option<&Credential> {
        self.users
            .get(name)?
            .iter()
            .find(|c| c.mechanism == mechanism)
    }

    /// SASL PLAIN: whether `password` is `name`'s, checked against one of
    /// its SCRAM credentials.
    pub fn check_password(&self, name: &str, password: &str) -> bool {
        match self.users.get(name).and_then(|c| c.first()) {
            Some(c) => c.matches(password),
            None => {
                // As long as for a user that exists, so that the time of
                // the answer does not tell which do.
                let _ = Credential::derive(
                    Mechanism::Sha256,
                    password,
                    b"no such user",
                    DEFAULT_ITERATIONS,
                );
                false
            }
        }
    }
}

fn parse_line(line: &str) -> Result<(&str, Credential), String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [name, mechanism, iterations, salt, stored_key, server_key] = fields[..] else {
        return Err(format!(
            "expected 6 fields (name, mechanism, iterations, salt, StoredKey, ServerKey), found {}",
            fields.len()
        ));
    };
    check_name(name)?;
    let mechanism = Mechanism::from_name(mechanism)
        .ok_or_else(|| format!("unknown mechanism {mechanism:?}"))?;
    let iterations: u32 = iterations
        .parse()
        .ok()
        .filter(|n| ITERATIONS.contains(n))
        .ok_or_else(|| {
            format!(
                "iterations {iterations:?} is not from {} to {}",
                ITERATIONS.start(),
                ITERATIONS.end()
            )
        })?;
    let b64 = |what: &str, v: &str| {
        base64::decode_block(v)
            .ok()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("{what} is not base64"))
    };
    let cred = Credential {
        mechanism,
        iterations,
        salt: b64("salt", salt)?,
        stored_key: b64("StoredKey", stored_key)?,
        server_key: b64("ServerKey", server_key)?,
    };
    Ok((name, cred))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_survive_a_save_and_a_load_and_passwords_are_not_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        let mut users = Users::load_or_empty(&path).unwrap();
        users.add("alice", "correct horse", 4096).unwrap();
        users.add("bob", "battery staple", 4096).unwrap();
        users.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("correct horse") && !text.contains("battery"));
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let mut read = Users::load(&path).unwrap();
        assert_eq!(read, users);
        assert!(read.check_password("alice", "correct horse"));
        assert!(!read.check_password("alice", "battery staple"));
        assert!(!read.check_password("carol", "correct horse"));
        assert_eq!(read.list().len(), 2);
        assert!(read.credential("bob", Mechanism::Sha512).is_some());
        assert!(read.delete("bob") && !read.delete("bob"));
        assert_eq!(read.list(), vec![("alice", Mechanism::ALL.to_vec())]);
    }

    #[test]
    fn bad_files_and_bad_names_are_refused_naming_the_line() {
        let good = Users::parse("x SCRAM-SHA-256 4096 c2FsdA== c3RvcmVk c2VydmVy\n").unwrap();
        assert_eq!(good.list().len(), 1);
        for (text, want) in [
            ("x SCRAM-SHA-256 4096 c2FsdA== c3RvcmVk\n", "line 1: expected 6 fields"),
            ("# c\nx SCRAM-MD5 4096 c2FsdA== c3RvcmVk c2VydmVy\n", "line 2: unknown mechanism"),
            ("x SCRAM-SHA-256 10 c2FsdA== c3RvcmVk c2VydmVy\n", "iterations"),
            ("x SCRAM-SHA-256 4096 !!! c3RvcmVk c2VydmVy\n", "salt is not base64"),
            (
                "x SCRAM-SHA-256 4096 c2FsdA== c3RvcmVk c2VydmVy\nx SCRAM-SHA-256 4096 c2FsdA== c3RvcmVk c2VydmVy\n",
                "line 2: a second SCRAM-SHA-256",
            ),
        ] {
            let err = Users::parse(text).unwrap_err();
            assert!(err.contains(want), "{err:?} for {text:?}");
        }
        let mut u = Users::default();
        assert!(u.add("a b", "pw", 4096).is_err());
        assert!(u.add("", "pw", 4096).is_err());
        assert!(u.add("a", "", 4096).is_err());
        assert!(u.add("a", "pw", 1).is_err());
        assert!(Users::load(Path::new("/nonexistent/users"))
            .unwrap_err()
            .contains("/nonexistent/users"));
    }
}
