//! `streamctl`: the command-line client. Every command is a function over a
//! gRPC connection; `run` parses arguments and maps failures to one line on
//! stderr and an exit code (1 runtime, 2 usage).
//!
//! One file per command ([`topic`], [`produce`], [`consume`], [`group`],
//! [`perf`]); [`args`] parses, [`client`] connects, [`output`] formats.

mod args;
mod client;
mod consume;
mod group;
mod idempotent;
mod output;
mod perf;
mod produce;
mod time;
mod topic;

use args::{env_var, opt_str, usage, CliError, CliResult, Format};
use client::Client;
use std::ffi::OsString;

pub const HELP: &str = "\
streamctl - the StreamHouse command-line client

USAGE:
    streamctl [GLOBAL FLAGS] COMMAND [ARGS]

GLOBAL FLAGS:
    --server ADDR        [STREAMHOUSE_ADDR]   default 127.0.0.1:50051
    --token TOKEN        [STREAMHOUSE_TOKEN]  sent as `authorization: Bearer TOKEN`
    --format text|json   output format (consume also takes raw)
    -h, --help           help; `streamctl COMMAND --help` for a command

COMMANDS:
    topic create NAME --partitions N [--retention-ms MS] [--retention-bytes B]
    topic list
    topic describe NAME
    topic delete NAME
    produce TOPIC [--partition P] [--key K] [--header K=V]... [--acks wal|uploaded|none]
                  [--value V | --file F | stdin] [--key-separator SEP] [--batch N]
    consume TOPIC [--partition P] [--offset N | --from-beginning | --from-end | --from-time T]
                  [--limit N] [--follow] [--group G]
                  [--print-key] [--print-offset] [--print-timestamp] [--print-headers]
    group list
    group get GROUP
    group commit GROUP --topic T --partition P --offset N [--metadata M]
    perf-produce --topic T --records N --record-size B [--batch N] [--acks A]
                 [--throughput R] [--payload-file F] [--partition P]
    perf-consume --topic T --records N [--partition P]
";

/// Runs streamctl with `args` (without the program name); returns the exit
/// code after printing any error.
pub fn run(args: Vec<OsString>) -> i32 {
    match dispatch(args) {
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
    let format = match opt_str(&mut a, "--format")?.as_deref() {
        None | Some("text") => Format::Text,
        Some("json") => Format::Json,
        Some("raw") => Format::Raw,
        Some(other) => return Err(usage(format!("--format: {other:?}; use text, json or raw"))),
    };
    let help = a.contains(["-h", "--help"]);
    let command = a.subcommand().map_err(|e| usage(e.to_string()))?;
    let Some(command) = command else {
        if help {
            print!("{HELP}");
            return Ok(());
        }
        return Err(usage("no command given"));
    };
    let section = match command.as_str() {
        "topic" => topic::HELP,
        "produce" => produce::HELP,
        "consume" => consume::HELP,
        "group" => group::HELP,
        "perf-produce" | "perf-consume" => perf::HELP,
        other => return Err(usage(format!("unknown command {other:?}"))),
    };
    if help {
        print!("{section}");
        return Ok(());
    }
    let client = Client::connect(&server, token);
    match command.as_str() {
        "topic" => topic::run(&client, a, format),
        "produce" => produce::run(&client, a, format),
        "consume" => consume::run(&client, a, format),
        "group" => group::run(&client, a, format),
        "perf-produce" => perf::produce(&client, a, format == Format::Json),
        "perf-consume" => perf::consume(&client, a, format == Format::Json),
        _ => unreachable!("checked above"),
    }
}
