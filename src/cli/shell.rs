//! `streamctl shell`: the same commands, one per line, over one connection,
//! for people exploring. Lines are split like a POSIX shell splits words
//! (quotes and backslashes), history is kept in memory and in
//! `~/.streamctl_history`, and a failed command prints its error and the
//! shell goes on. On a terminal, lines are edited with the arrows and the
//! usual keys ([`super::line_editor`]); the up arrow recalls the history.

use super::args::{usage, CliError, CliResult};
use super::client::Client;
use std::ffi::OsString;
use std::io::{BufRead, Write};

pub(super) const HELP: &str = "\
streamctl shell
    Reads commands, one per line, and runs each over one connection:
        topic list
        produce orders --key k1 --value hello
        consume orders --from-beginning --limit 10 --format json
    Besides the commands of `streamctl --help`:
        help [COMMAND]   the commands, or one command's flags
        history          the lines run so far, numbered
        !N  !!           run line N of the history again, or the last one
        exit, quit       leave (so does end of input)
    In the shell, produce takes --value or --file (standard input is the
    shell's). The exit code is that of the last command.
";

/// What `help` adds to the commands' list in the shell.
const SHELL_COMMANDS: &str = "
IN THE SHELL:
    help [COMMAND]       this, or one command's flags
    history              the lines run so far, numbered
    !N  !!               run line N of the history again, or the last one
    exit, quit           leave (so do Ctrl-D and the end of input)
    Up/Down recall earlier lines; Left/Right, Home/End, Ctrl-A/E/U edit.
";

/// Lines of history kept (in memory and in the file).
const HISTORY_LINES: usize = 1000;

/// `connect` makes the client; with `per_line`, once per command (a TLS
/// connection is handed to grpc whole and cannot reconnect by itself
/// after the server closes it, idle for 10 minutes or restarted).
pub(super) fn run(connect: &dyn Fn() -> CliResult<Client>, per_line: bool) -> CliResult {
    let interactive = stdin_is_terminal();
    let kept = if per_line { None } else { Some(connect()?) };
    let mut history = History::load();
    let mut last = 0;
    loop {
        let line = if interactive {
            super::line_editor::read_line("streamhouse> ", &history.lines)?
        } else {
            let mut line = String::new();
            (std::io::stdin().lock().read_line(&mut line)? > 0).then_some(line)
        };
        let Some(line) = line else {
            break;
        };
        let line = match history.expand(line.trim()) {
            Ok(Some(line)) => line,
            Ok(None) => continue,
            Err(e) => {
                last = super::exit_code(Err(e));
                continue;
            }
        };
        if matches!(line.as_str(), "exit" | "quit") {
            break;
        }
        history.push(&line);
        let result = match &kept {
            Some(client) => run_line(client, &line, &history),
            None => connect().and_then(|client| run_line(&client, &line, &history)),
        };
        last = super::exit_code(result);
        // Whatever a command printed is out before the next prompt.
        std::io::stdout().flush()?;
    }
    match last {
        0 => Ok(()),
        // The last command printed its error already; only the code is left.
        2 => Err(CliError::Usage("the last command failed".into())),
        _ => Err(CliError::Runtime("the last command failed".into())),
    }
}

fn run_line(client: &Client, line: &str, history: &History) -> CliResult {
    let words = split_words(line)?;
    let Some(command) = words.first().map(String::as_str) else {
        return Ok(());
    };
    match command {
        "help" => {
            match words.get(1) {
                Some(c) if c == "shell" => print!("{HELP}"),
                Some(c) => print!("{}", super::help_section(c)?),
                None => print!("{}{SHELL_COMMANDS}", super::HELP),
            }
            Ok(())
        }
        "history" => {
            let mut o = super::output::out();
            for (i, l) in history.lines.iter().enumerate() {
                writeln!(o, "{:5}  {l}", i + 1)?;
            }
            Ok(())
        }
        "shell" => Err(usage("already in the shell")),
        "exit" | "quit" => Ok(()),
        "produce" if !words.iter().any(|w| w == "--value" || w == "--file") => {
            Err(usage("in the shell, produce needs --value V or --file F"))
        }
        _ => {
            let mut a =
                pico_args::Arguments::from_vec(words[1..].iter().map(OsString::from).collect());
            let format = super::parse_format(&mut a)?;
            if a.contains(["-h", "--help"]) {
                print!("{}", super::help_section(command)?);
                return Ok(());
            }
            super::execute(client, command, a, format)
        }
    }
}

/// Splits a line into words: whitespace separates, single quotes keep
/// everything literally, double quotes keep spaces and honour `\"` and
/// `\\`, a backslash outside quotes escapes the next character.
fn split_words(line: &str) -> CliResult<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(usage("unclosed ' in the line")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(usage("unclosed \" in the line")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(usage("unclosed \" in the line")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err(usage("a line cannot end in \\")),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The lines run so far, and the file they are kept in (if HOME is set).
struct History {
    lines: Vec<String>,
    file: Option<std::path::PathBuf>,
}

impl History {
    fn load() -> History {
        let file = super::args::env_var("HOME")
            .map(|h| std::path::Path::new(&h).join(".streamctl_history"));
        let mut lines: Vec<String> = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        let excess = lines.len().saturating_sub(HISTORY_LINES);
        lines.drain(..excess);
        History { lines, file }
    }

    /// `!N` and `!!` name an earlier line; blank lines and comments are
    /// skipped (`None`).
    fn expand(&self, line: &str) -> CliResult<Option<String>> {
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('!') else {
            return Ok(Some(line.to_string()));
        };
        let index = if rest == "!" {
            self.lines.len()
        } else {
            rest.parse::<usize>()
                .map_err(|_| usage(format!("{line:?}: use !N (a history number) or !!")))?
        };
        match index.checked_sub(1).and_then(|i| self.lines.get(i)) {
            Some(l) => {
                eprintln!("{l}");
                Ok(Some(l.clone()))
            }
            None => Err(usage(format!("{line:?}: no such line in the history"))),
        }
    }

    /// Remembers a line; the file is best effort (a read-only home must
    /// not stop the shell).
    fn push(&mut self, line: &str) {
        self.lines.push(line.to_string());
        if self.lines.len() > HISTORY_LINES {
            self.lines.remove(0);
        }
        if let Some(f) = &self.file {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                log::debug!("history file {}: {e}", f.display());
            }
        }
    }
}

#[allow(unsafe_code)]
fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only reads its integer argument.
    unsafe { libc::isatty(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(l: &str) -> Vec<String> {
        split_words(l).unwrap()
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(words("  topic   list "), ["topic", "list"]);
        assert_eq!(
            words(r#"produce t --value "a b \"c\"" --key 'x y\'"#),
            ["produce", "t", "--value", "a b \"c\"", "--key", "x y\\"]
        );
        assert_eq!(words(r"a\ b c"), ["a b", "c"]);
        assert_eq!(words(r#"--value """#), ["--value", ""]);
        assert_eq!(words(r#"k"v w"x"#), ["kv wx"]);
        assert!(words("").is_empty());
        for bad in ["'open", "\"open", "end\\", "\"x\\"] {
            assert!(split_words(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn history_expands_numbers_and_bang_bang() {
        let h = History {
            lines: vec!["topic list".into(), "group list".into()],
            file: None,
        };
        assert_eq!(h.expand("!1").unwrap().as_deref(), Some("topic list"));
        assert_eq!(h.expand("!!").unwrap().as_deref(), Some("group list"));
        assert_eq!(h.expand("x").unwrap().as_deref(), Some("x"));
        assert_eq!(h.expand("").unwrap(), None);
        assert_eq!(h.expand("# note").unwrap(), None);
        for bad in ["!0", "!3", "!x", "!-1"] {
            assert!(h.expand(bad).is_err(), "{bad}");
        }
    }
}
