//! Line editing for `streamctl shell` on a terminal: the arrows move in the
//! line and through the history, Home/End and Ctrl-A/Ctrl-E jump, Backspace
//! and Delete erase, Ctrl-U clears, Ctrl-C drops the line, Ctrl-D on an
//! empty line ends the input. Written here rather than taken from a crate:
//! the shell needs only this, and a line-editing crate would bring a
//! terminal library and its features into a build that shares them with
//! the gRPC C core.
//!
//! [`Line`] is the editing itself (bytes in, state out, no terminal);
//! [`read_line`] puts the terminal in raw mode and draws.

use std::io::{Read, Write};

/// What a key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Keep reading.
    Editing,
    /// Enter: the line.
    Done(String),
    /// Ctrl-C: the line is dropped.
    Cancelled,
    /// Ctrl-D on an empty line.
    EndOfInput,
}

/// The line being edited, and where in the history it is.
pub struct Line<'h> {
    chars: Vec<char>,
    cursor: usize,
    history: &'h [String],
    /// Index into `history` shown; `history.len()` is the new line.
    recalled: usize,
    /// The new line as typed, kept while the history is browsed.
    draft: Vec<char>,
    /// Bytes of an escape sequence or a UTF-8 character not complete yet.
    pending: Vec<u8>,
}

impl<'h> Line<'h> {
    pub fn new(history: &'h [String]) -> Self {
        Line {
            chars: Vec::new(),
            cursor: 0,
            history,
            recalled: history.len(),
            draft: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Characters after the cursor (for drawing).
    pub fn after_cursor(&self) -> usize {
        self.chars.len() - self.cursor
    }

    /// Feeds one byte from the terminal.
    pub fn feed(&mut self, byte: u8) -> Outcome {
        self.pending.push(byte);
        if self.pending[0] == 0x1b {
            return self.escape();
        }
        let first = self.pending[0];
        if first < 0x80 {
            self.pending.clear();
            return self.control_or_char(first);
        }
        // A UTF-8 character: wait for its continuation bytes.
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let c = s.chars().next().unwrap_or('\u{fffd}');
                self.pending.clear();
                self.insert(c);
            }
            Err(e) if e.error_len().is_some() || self.pending.len() >= 4 => {
                self.pending.clear();
                self.insert('\u{fffd}');
            }
            Err(_) => {}
        }
        Outcome::Editing
    }

    fn control_or_char(&mut self, b: u8) -> Outcome {
        match b {
            b'\r' | b'\n' => return Outcome::Done(self.text()),
            0x03 => return Outcome::Cancelled,
            0x04 if self.chars.is_empty() => return Outcome::EndOfInput,
            0x04 => self.delete(),
            0x7f | 0x08 => self.backspace(),
            0x01 => self.cursor = 0,
            0x05 => self.cursor = self.chars.len(),
            0x02 => self.cursor = self.cursor.saturating_sub(1),
            0x06 => self.cursor = (self.cursor + 1).min(self.chars.len()),
            0x15 => {
                self.chars.drain(..self.cursor);
                self.cursor = 0;
            }
            0x0b => self.chars.truncate(self.cursor),
            0x10 => self.recall(-1),
            0x0e => self.recall(1),
            b if b >= 0x20 => self.insert(b as char),
            _ => {} // other control characters are not typed into a line
        }
        Outcome::Editing
    }

    /// ESC [ X, ESC O X, ESC [ N ~: arrows, Home, End, Delete.
    fn escape(&mut self) -> Outcome {
        let seq = self.pending.clone();
        let done = match seq.as_slice() {
            [0x1b] => false,
            [0x1b, b'[' | b'O'] => false,
            [0x1b, b'[', d @ ..] if d.iter().all(u8::is_ascii_digit) && d.len() < 3 => false,
            [0x1b, b'[' | b'O', b'A'] => {
                self.recall(-1);
                true
            }
            [0x1b, b'[' | b'O', b'B'] => {
                self.recall(1);
                true
            }
            [0x1b, b'[' | b'O', b'C'] => {
                self.cursor = (self.cursor + 1).min(self.chars.len());
                true
            }
            [0x1b, b'[' | b'O', b'D'] => {
                self.cursor = self.cursor.saturating_sub(1);
                true
            }
            [0x1b, b'[' | b'O', b'H'] | [0x1b, b'[', b'1' | b'7', b'~'] => {
                self.cursor = 0;
                true
            }
            [0x1b, b'[' | b'O', b'F'] | [0x1b, b'[', b'4' | b'8', b'~'] => {
                self.cursor = self.chars.len();
                true
            }
            [0x1b, b'[', b'3', b'~'] => {
                self.delete();
                true
            }
            // Anything else is dropped whole, never typed into the line.
            _ => true,
        };
        if done {
            self.pending.clear();
        }
        Outcome::Editing
    }

    fn insert(&mut self, c: char) {
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Up (-1) or down (+1) the history; below the newest is the draft.
    fn recall(&mut self, step: isize) {
        let to = self.recalled as isize + step;
        if to < 0 || to > self.history.len() as isize {
            return;
        }
        if self.recalled == self.history.len() {
            self.draft = self.chars.clone();
        }
        self.recalled = to as usize;
        self.chars = match self.history.get(self.recalled) {
            Some(l) => l.chars().collect(),
            None => self.draft.clone(),
        };
        self.cursor = self.chars.len();
    }
}

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    #[allow(unsafe_code)]
    fn enter() -> std::io::Result<RawMode> {
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        // No line buffering, no echo, no signals from Ctrl-C: the editor
        // handles those keys. Output processing stays (\n is \r\n).
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        raw.c_iflag &= !(libc::IXON | libc::ICRNL);
        raw.c_cc[libc::VMIN] = 1;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: sets fd 0's attributes from a valid termios.
        if unsafe { libc::tcsetattr(0, libc::TCSADRAIN, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe { libc::tcsetattr(0, libc::TCSADRAIN, &self.saved) };
    }
}

/// Reads one line from the terminal with editing; `None` at end of input.
/// Ctrl-C gives an empty line.
pub fn read_line(prompt: &str, history: &[String]) -> std::io::Result<Option<String>> {
    let raw = RawMode::enter()?;
    let mut line = Line::new(history);
    let mut err = std::io::stderr();
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    write!(err, "{prompt}")?;
    err.flush()?;
    let result = loop {
        if stdin.read(&mut byte)? == 0 {
            break None;
        }
        match line.feed(byte[0]) {
            Outcome::Editing => {}
            Outcome::Done(text) => break Some(text),
            Outcome::Cancelled => {
                write!(err, "^C")?;
                break Some(String::new());
            }
            Outcome::EndOfInput => break None,
        }
        // Redraw: the prompt and the line, erase the rest, cursor back.
        write!(err, "\r{prompt}{}\x1b[K", line.text())?;
        if line.after_cursor() > 0 {
            write!(err, "\x1b[{}D", line.after_cursor())?;
        }
        err.flush()?;
    };
    drop(raw);
    writeln!(err)?;
    Ok(result)
}

/// Reads a line from the terminal without echoing it (a password);
/// `None` at end of input or on Ctrl-C.
pub fn read_secret(prompt: &str) -> std::io::Result<Option<String>> {
    let raw = RawMode::enter()?;
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let mut stdin = std::io::stdin().lock();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    let result = loop {
        if stdin.read(&mut byte)? == 0 {
            break None;
        }
        match byte[0] {
            b'\r' | b'\n' => break Some(String::from_utf8_lossy(&bytes).into_owned()),
            3 | 4 => break None, // Ctrl-C, Ctrl-D
            0x7f | 8 => {
                bytes.pop();
            }
            b => bytes.push(b),
        }
    };
    drop(raw);
    writeln!(err)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_in(history: &[String], keys: &[u8]) -> (Outcome, String) {
        let mut line = Line::new(history);
        let mut last = Outcome::Editing;
        for b in keys {
            last = line.feed(*b);
            if last != Outcome::Editing {
                break;
            }
        }
        (last, line.text())
    }

    #[test]
    fn arrows_recall_history_and_never_become_text() {
        let history = vec!["topic list".to_string(), "group list".to_string()];
        // Up, Up, Down: the newest but one, then the newest.
        let (out, _) = type_in(&history, b"\x1b[A\x1b[A\x1b[B\r");
        assert_eq!(out, Outcome::Done("group list".into()));
        // Up past the oldest stays; Down below the newest is the draft.
        let (out, _) = type_in(&history, b"top\x1b[A\x1b[A\x1b[A\x1b[B\x1b[B\r");
        assert_eq!(out, Outcome::Done("top".into()));
        // An unknown sequence (F5) is dropped whole.
        let (out, _) = type_in(&[], b"a\x1b[15~b\r");
        assert_eq!(out, Outcome::Done("ab".into()));
    }

    #[test]
    fn the_cursor_moves_and_edits_where_it_is() {
        // Left six times, insert; Home, Delete, End, Backspace.
        let (out, _) = type_in(&[], b"topc list\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x1b[Di\r");
        assert_eq!(out, Outcome::Done("topic list".into()));
        let (out, _) = type_in(&[], b"xtopic\x1b[H\x1b[3~\x1b[Fs\x7f\r");
        assert_eq!(out, Outcome::Done("topic".into()));
        // Ctrl-U clears before the cursor; Ctrl-A / Ctrl-E jump.
        let (out, _) = type_in(
            &[],
            b"junk list\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x15topic\x05!\r",
        );
        assert_eq!(out, Outcome::Done("topic list!".into()));
    }

    #[test]
    fn control_keys_and_utf8() {
        assert_eq!(type_in(&[], b"abc\x03").0, Outcome::Cancelled);
        assert_eq!(type_in(&[], b"\x04").0, Outcome::EndOfInput);
        // Ctrl-D with text deletes under the cursor instead.
        let (out, _) = type_in(&[], b"ab\x1b[D\x04\r");
        assert_eq!(out, Outcome::Done("a".into()));
        let (out, _) = type_in(
            &[],
            "é→x"
                .as_bytes()
                .iter()
                .chain(b"\r")
                .copied()
                .collect::<Vec<_>>()
                .as_slice(),
        );
        assert_eq!(out, Outcome::Done("é→x".into()));
        // A stray control byte is not typed.
        let (out, _) = type_in(&[], b"a\x07b\r");
        assert_eq!(out, Outcome::Done("ab".into()));
    }
}
