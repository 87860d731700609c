//! `streamctl user add|delete|list`: the users file that `streamhoused
//! --kafka-sasl-users` reads (SCRAM credentials; no password is stored).
//! Works on the file directly, with no server: run it where the file is,
//! as the server's user.

use super::args::{free, opt_num, opt_str, usage, CliError, CliResult};
use crate::auth::scram::DEFAULT_ITERATIONS;
use crate::auth::users::Users;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

pub const HELP: &str = "\
streamctl user add NAME [--users-file F] [--iterations N]
    adds NAME, or sets a new password for it: the password is read from
    stdin (prompted for, without echo, on a terminal); the file keeps
    SCRAM-SHA-256 and SCRAM-SHA-512 credentials, never the password
streamctl user delete NAME [--users-file F]
streamctl user list [--users-file F]
    the users, each with its mechanisms

--users-file defaults to $STREAMHOUSE_KAFKA_SASL_USERS, the variable
streamhoused reads for --kafka-sasl-users. A change counts from the next
authentication; no restart is needed.
";

pub(super) fn run(mut a: pico_args::Arguments) -> CliResult {
    // Flags first: what is left are the action and the name, in order.
    let file = opt_str(&mut a, "--users-file")?
        .or_else(|| super::args::env_var("STREAMHOUSE_KAFKA_SASL_USERS"))
        .map(PathBuf::from)
        .ok_or_else(|| usage("--users-file is needed (or STREAMHOUSE_KAFKA_SASL_USERS)"))?;
    let iterations = opt_num(&mut a, "--iterations")?;
    let action = free(&mut a, "add, delete or list")?;
    if iterations.is_some() && action != "add" {
        return Err(usage("--iterations is for user add"));
    }
    let runtime = CliError::Runtime;
    match action.as_str() {
        "add" => {
            let name = free(&mut a, "the user's name")?;
            let iterations = iterations.unwrap_or(DEFAULT_ITERATIONS);
            super::args::finish(a)?;
            crate::auth::users::check_name(&name).map_err(usage)?;
            let mut users = Users::load_or_empty(&file).map_err(runtime)?;
            let password = read_password(&name)?;
            users.add(&name, &password, iterations).map_err(usage)?;
            users.save(&file).map_err(runtime)?;
            eprintln!("user {name} saved in {}", file.display());
        }
        "delete" => {
            let name = free(&mut a, "the user's name")?;
            super::args::finish(a)?;
            let mut users = Users::load(&file).map_err(runtime)?;
            if !users.delete(&name) {
                return Err(runtime(format!("no user {name:?} in {}", file.display())));
            }
            users.save(&file).map_err(runtime)?;
            eprintln!("user {name} deleted from {}", file.display());
        }
        "list" => {
            super::args::finish(a)?;
            for (name, mechanisms) in Users::load(&file).map_err(runtime)?.list() {
                let names: Vec<_> = mechanisms.iter().map(|m| m.name()).collect();
                println!("{name}\t{}", names.join(","));
            }
        }
        other => {
            return Err(usage(format!(
                "user {other:?}: expected add, delete or list"
            )))
        }
    }
    Ok(())
}

/// The password: typed twice without echo on a terminal, else stdin's
/// first line.
fn read_password(name: &str) -> CliResult<String> {
    if std::io::stdin().is_terminal() {
        let first = super::line_editor::read_secret(&format!("password for {name}: "))?;
        let again = super::line_editor::read_secret("again: ")?;
        return match (first, again) {
            (Some(p), Some(q)) if p == q => Ok(p),
            (Some(_), Some(_)) => Err(CliError::Runtime("the passwords differ".into())),
            _ => Err(CliError::Runtime("no password given".into())),
        };
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Runtime(format!("cannot read the password: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(usage("the password (stdin's first line) is empty"));
    }
    Ok(password)
}
