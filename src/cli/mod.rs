//! `streamctl`: the command-line client. Every command is a function over a
//! gRPC connection; `run` parses arguments and maps failures to one line on
//! stderr and an exit code (1 runtime, 2 usage).
//!
//! One file per command ([`topic`], [`produce`], [`consume`], [`group`],
//! [`perf`], [`shell`] with [`line_editor`]); [`args`] parses, [`client`]
//! connects, [`output`] formats.

mod args;
mod client;
mod consume;
mod group;
mod idempotent;
mod line_editor;
mod output;
mod perf;
mod produce;
mod shell;
mod time;
mod topic;
mod user;

use args::{env_var, opt_str, usage, CliError, CliResult, Format};
use client::{Auth, Client};
use std::ffi::OsString;

pub const HELP: &str = "\
streamctl - the StreamHouse command-line client

USAGE:
    streamctl [GLOBAL FLAGS] COMMAND [ARGS]

GLOBAL FLAGS:
    --server ADDR        [STREAMHOUSE_ADDR]   default 127.0.0.1:50051
    --token TOKEN        [STREAMHOUSE_TOKEN]  sent as `authorization: Bearer TOKEN`
    --tls                [STREAMHOUSE_TLS]    TLS, the server's certificate checked against the system's CAs
    --tls-ca FILE        [STREAMHOUSE_TLS_CA] TLS, the server's certificate checked against this PEM file's CAs
    --tls-cert FILE      [STREAMHOUSE_TLS_CERT] with --tls-key: a client certificate (mutual TLS)
    --tls-key FILE       [STREAMHOUSE_TLS_KEY]
    --format text|json   output format (consume also takes raw)
    -h, --help           help; `streamctl COMMAND --help` for a command
    -V, --version        the version

COMMANDS:
    topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    topic list
    topic describe NAME
    topic alter NAME [--partitions N] [--retention-ms MS] [--retention-bytes B]
    topic delete NAME
    cluster              the node: id, version, store, owner epoch, health
    produce TOPIC [--partition P] [--key K] [--header K=V]... [--acks wal|uploaded|none]
                  [--value V | --file F | stdin] [--key-separator SEP] [--batch N]
    consume TOPIC [--partition P] [--offset N | --from-beginning | --from-end | --from-time T]
                  [--limit N] [--follow] [--group G] [--offset-reset earliest|latest|error]
                  [--print-key] [--print-offset] [--print-timestamp] [--print-headers]
    group list
    group get GROUP
    group commit GROUP --topic T --partition P --offset N [--metadata M]
    group reset-offsets GROUP --topic T [--partition P]
                  (--to-earliest | --to-latest | --to-datetime T | --to-offset N | --shift-by N) [--execute]
    group delete GROUP
    offsets TOPIC [--partition P] [--time T]
                         low and high watermarks, or the first offset at or after T
    perf-produce --topic T --records N --record-size B [--batch N] [--acks A]
                 [--throughput R] [--payload-file F] [--partition P]
    perf-consume --topic T --records N [--partition P]
    shell                the same commands, one per line, with history and help
    user add NAME | user delete NAME | user list   [--users-file F]
                         the Kafka listener's SASL users (a file, no server needed)
";

/// Runs streamctl with `args` (without the program name); returns the exit
/// code after printing any error.
pub fn run(args: Vec<OsString>) -> i32 {
    exit_code(dispatch(args))
}

/// Prints a failure as one line on stderr; the exit code it earns.
fn exit_code(result: CliResult) -> i32 {
    match result {
        Ok(()) | Err(CliError::BrokenPipe) => 0,
        Err(CliError::Usage(m)) => {
            eprintln!("streamctl: {m}");
            eprintln!("(see streamctl --help)");
            2
        }
        Err(CliError::Runtime(m)) => {
            eprintln!("streamctl: {m}");
            1
        }
    }
}

fn dispatch(args: Vec<OsString>) -> CliResult {
    let mut a = pico_args::Arguments::from_vec(args);
    let server = opt_str(&mut a, "--server")?
        .or_else(|| env_var("STREAMHOUSE_ADDR"))
        .unwrap_or_else(|| "127.0.0.1:50051".to_string());
    let token = opt_str(&mut a, "--token")?.or_else(|| env_var("STREAMHOUSE_TOKEN"));
    let auth = Auth {
        token,
        tls: client_tls(&mut a)?,
    };
    let format = parse_format(&mut a)?;
    if a.contains(["-V", "--version"]) {
        println!("streamctl {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let help = a.contains(["-h", "--help"]);
    let command = a.subcommand().map_err(|e| usage(e.to_string()))?;
    let Some(command) = command else {
        if help {
            print!("{HELP}");
            return Ok(());
        }
        return Err(usage("no command given"));
    };
    if command == "shell" {
        if help {
            print!("{}", shell::HELP);
            return Ok(());
        }
        args::finish(a)?;
        let per_line = auth.tls.is_some();
        return shell::run(&|| Client::connect(&server, auth.clone()), per_line);
    }
    if command == "user" {
        if help {
            print!("{}", user::HELP);
            return Ok(());
        }
        return user::run(a);
    }
    let section = help_section(&command)?;
    if help {
        print!("{section}");
        return Ok(());
    }
    let result = Client::connect(&server, auth).and_then(|c| execute(&c, &command, a, format));
    with_suggestion(result, section)
}

/// Commands, for "did you mean".
const COMMANDS: &[&str] = &[
    "topic",
    "produce",
    "consume",
    "group",
    "offsets",
    "cluster",
    "perf-produce",
    "perf-consume",
    "shell",
    "user",
];

/// `--tls`, `--tls-ca`, `--tls-cert` and `--tls-key` (or their
/// variables): `None` for plain TCP.
fn client_tls(a: &mut pico_args::Arguments) -> CliResult<Option<crate::tls::ClientTls>> {
    let file = |a: &mut pico_args::Arguments, flag: &'static str, var: &str| {
        Ok::<_, CliError>(
            opt_str(a, flag)?
                .or_else(|| env_var(var))
                .map(std::path::PathBuf::from),
        )
    };
    let on =
        a.contains("--tls") || env_var("STREAMHOUSE_TLS").is_some_and(|v| v != "0" && v != "false");
    let ca = file(a, "--tls-ca", "STREAMHOUSE_TLS_CA")?;
    let cert = file(a, "--tls-cert", "STREAMHOUSE_TLS_CERT")?;
    let key = file(a, "--tls-key", "STREAMHOUSE_TLS_KEY")?;
    let cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(usage("--tls-cert and --tls-key go together")),
    };
    if !on && ca.is_none() && cert.is_none() {
        return Ok(None);
    }
    Ok(Some(crate::tls::ClientTls { ca, cert }))
}

/// A usage error about a mistyped word ("--patition", "lsit") gets the
/// closest word of the command's help.
pub(super) fn with_suggestion(result: CliResult, help: &str) -> CliResult {
    let Err(CliError::Usage(m)) = result else {
        return result;
    };
    let Some(word) = m.split('"').nth(1) else {
        return Err(CliError::Usage(m));
    };
    let known = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.len() > 1 && w.starts_with("--") == word.starts_with("--"));
    match crate::util::suggest::closest(word, known) {
        Some(s) => Err(CliError::Usage(format!("{m}; did you mean {s}?"))),
        None => Err(CliError::Usage(m)),
    }
}

fn parse_format(a: &mut pico_args::Arguments) -> CliResult<Format> {
    match opt_str(a, "--format")?.as_deref() {
        None | Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        Some("raw") => Ok(Format::Raw),
        Some(other) => Err(usage(format!("--format: {other:?}; use text, json or raw"))),
    }
}

/// The help text of a command, or a usage error naming an unknown one.
fn help_section(command: &str) -> CliResult<&'static str> {
    match command {
        "topic" => Ok(topic::HELP),
        "produce" => Ok(produce::HELP),
        "consume" => Ok(consume::HELP),
        "group" => Ok(group::HELP),
        "perf-produce" | "perf-consume" => Ok(perf::HELP),
        "offsets" => Ok(topic::OFFSETS_HELP),
        "cluster" => Ok(topic::CLUSTER_HELP),
        other => Err(unknown_command(other)),
    }
}

fn unknown_command(word: &str) -> CliError {
    match crate::util::suggest::closest(word, COMMANDS.iter().copied()) {
        Some(s) => usage(format!("unknown command {word:?}; did you mean {s}?")),
        None => usage(format!("unknown command {word:?}")),
    }
}

/// Runs one command over an open connection: the shell's path as well.
fn execute(client: &Client, command: &str, a: pico_args::Arguments, format: Format) -> CliResult {
    match command {
        "topic" => topic::run(client, a, format),
        "produce" => produce::run(client, a, format),
        "consume" => consume::run(client, a, format),
        "group" => group::run(client, a, format),
        "perf-produce" => perf::produce(client, a, format == Format::Json),
        "perf-consume" => perf::consume(client, a, format == Format::Json),
        "offsets" => topic::offsets(client, a, format),
        "cluster" => topic::cluster(client, a, format),
        other => Err(unknown_command(other)),
    }
}
