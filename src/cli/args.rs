//! Argument helpers shared by the commands, and the error type that picks
//! streamctl's exit code.

/// What went wrong, and the exit code it earns.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: exit 2.
    Usage(String),
    /// The call failed: exit 1.
    Runtime(String),
    /// The reader of our output went away (`| head`): exit 0 quietly.
    BrokenPipe,
}

pub(super) type CliResult<T = ()> = Result<T, CliError>;

pub(super) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Runtime(format!("output: {e}"))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Format {
    Text,
    Json,
    Raw,
}

pub(super) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(super) fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> CliResult<T> {
    v.parse()
        .map_err(|_| usage(format!("{flag}: {v:?} is not a valid number")))
}

pub(super) fn opt_str(
    a: &mut pico_args::Arguments,
    flag: &'static str,
) -> CliResult<Option<String>> {
    a.opt_value_from_str(flag)
        .map_err(|e| usage(format!("{flag}: {e}")))
}

/// An optional numeric flag.
pub(super) fn opt_num<T: std::str::FromStr>(
    a: &mut pico_args::Arguments,
    flag: &'static str,
) -> CliResult<Option<T>> {
    opt_str(a, flag)?.map(|v| parse_num(flag, &v)).transpose()
}

pub(super) fn finish(a: pico_args::Arguments) -> CliResult {
    let rest = a.finish();
    match rest.first() {
        Some(x) => Err(usage(format!(
            "unexpected argument {:?}",
            x.to_string_lossy()
        ))),
        None => Ok(()),
    }
}

/// A required `--flag VALUE`.
pub(super) fn required<T: std::str::FromStr>(
    a: &mut pico_args::Arguments,
    flag: &'static str,
    what: &str,
) -> CliResult<T> {
    match opt_str(a, flag)? {
        Some(v) => parse_num(flag, &v),
        None => Err(usage(format!("{what} needs {flag}"))),
    }
}

/// The next free argument (a name).
pub(super) fn free(a: &mut pico_args::Arguments, what: &str) -> CliResult<String> {
    a.free_from_str().map_err(|_| usage(what))
}
