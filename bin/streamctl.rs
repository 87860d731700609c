//! `streamctl`: the StreamHouse command-line client.
//!
//! The commands arrive with the server (issue #4); until then this binary
//! answers `--help` and says what is missing.

use std::process::ExitCode;

const HELP: &str = "\
streamctl - the StreamHouse command-line client

USAGE:
    streamctl [--server ADDR] [--token TOKEN] [--format text|json] COMMAND

COMMANDS (planned):
    topic create|list|describe|delete
    produce TOPIC ...
    consume TOPIC ...
    group get|commit|list
    perf-produce / perf-consume

STATUS: the commands are not built yet; the server they talk to is not
built either.
";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    eprintln!("streamctl: commands are not built yet; see `streamctl --help`");
    ExitCode::from(2)
}
