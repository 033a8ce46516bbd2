//! The script format (issue 4): one command per line, one output line per command, so a run is
//! reproducible and diffable against a golden `.out` file.
//!
//! ```text
//! begin T1              driver-created transaction (BEGIN) bound to the name T1
//! put T1 key value      PUT in T1; `put - key value` is a non-transacted put
//! get T1 key            ok VALUE | err STATUS_…
//! delete - key
//! list T1 prefix        ok K1 K2 … (in the driver's bytewise order); `list T1` lists every key
//! commit T1             or: rollback T1
//! veto T1               simulator only: a second RM in T1 votes no at PREPARE
//! ```
//! Blank lines and `#` comments are ignored; tokens are separated by spaces. In keys and values
//! `\xNN` stands for any byte and `\\` for a backslash; outputs use the same escapes.
//! Parsing happens before anything runs: an unknown command, a wrong number of tokens, a bad
//! escape, a name used before its `begin` or begun twice stops with the line number.

use crate::client::{Client, Transaction, show};
use crate::error::Error;
use crate::transport::TransportKind;
use std::collections::HashMap;
use std::fmt;

/// Which transaction a data command runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tx {
    /// `-`: not transacted.
    None,
    /// A name bound by an earlier `begin`.
    Named(String),
}

/// One parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `begin NAME`.
    Begin(String),
    /// `put TX key value`.
    Put(Tx, Vec<u8>, Vec<u8>),
    /// `get TX key`.
    Get(Tx, Vec<u8>),
    /// `delete TX key`.
    Delete(Tx, Vec<u8>),
    /// `list TX [prefix]`.
    List(Tx, Vec<u8>),
    /// `commit NAME`.
    Commit(String),
    /// `rollback NAME`.
    Rollback(String),
    /// `veto NAME`.
    Veto(String),
}

/// A command and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The command text without comment and surrounding blanks.
    pub text: String,
    /// The command.
    pub command: Command,
}

/// Why a script cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// Decodes `\xNN` and `\\` escapes.
pub fn unescape(token: &str) -> Result<Vec<u8>, String> {
    let b = token.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = token
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("incomplete escape in {token:?}"))?;
                let v = u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad escape \\x{hex} in {token:?}"))?;
                out.push(v);
                i += 4;
            }
            _ => return Err(format!("bad escape in {token:?} (use \\xNN or \\\\)")),
        }
    }
    Ok(out)
}

/// Parses a whole script; nothing runs unless every line parses.
pub fn parse(src: &str) -> Result<Vec<Line>, ScriptError> {
    let mut begun: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::new();
    for (i, raw) in src.lines().enumerate() {
        let number = i + 1;
        let text = raw.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let err = |message: String| ScriptError {
            line: number,
            message,
        };
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let (verb, args) = tokens
            .split_first()
            .ok_or_else(|| err("empty command".into()))?;
        let arity = |lo: usize, hi: usize, usage: &str| {
            if args.len() < lo || args.len() > hi {
                Err(err(format!(
                    "`{verb}` takes {usage}, got {} token(s)",
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        let bytes = |t: &str| unescape(t).map_err(err);
        let name = |t: &str| -> Result<String, ScriptError> {
            if t == "-" {
                return Err(err(format!("`{verb}` needs a transaction name, not `-`")));
            }
            if !begun.contains_key(t) {
                return Err(err(format!("transaction {t:?} is used before `begin {t}`")));
            }
            Ok(t.to_owned())
        };
        let tx = |t: &str| -> Result<Tx, ScriptError> {
            if t == "-" {
                Ok(Tx::None)
            } else {
                name(t).map(Tx::Named)
            }
        };
        let command = match *verb {
            "begin" => {
                arity(1, 1, "a name")?;
                let n = args[0];
                if n == "-" {
                    return Err(err(
                        "`-` means \"no transaction\" and cannot be begun".into()
                    ));
                }
                if let Some(first) = begun.get(n) {
                    return Err(err(format!(
                        "transaction {n:?} was already begun on line {first}; use a new name"
                    )));
                }
                begun.insert(n.to_owned(), number);
                Command::Begin(n.to_owned())
            }
            "put" => {
                arity(3, 3, "TX KEY VALUE")?;
                Command::Put(tx(args[0])?, bytes(args[1])?, bytes(args[2])?)
            }
            "get" => {
                arity(2, 2, "TX KEY")?;
                Command::Get(tx(args[0])?, bytes(args[1])?)
            }
            "delete" => {
                arity(2, 2, "TX KEY")?;
                Command::Delete(tx(args[0])?, bytes(args[1])?)
            }
            "list" => {
                arity(1, 2, "TX [PREFIX]")?;
                Command::List(
                    tx(args[0])?,
                    args.get(1).map_or(Ok(Vec::new()), |p| bytes(p))?,
                )
            }
            "commit" | "rollback" | "veto" => {
                arity(1, 1, "a transaction name")?;
                let n = name(args[0])?;
                match *verb {
                    "commit" => Command::Commit(n),
                    "rollback" => Command::Rollback(n),
                    _ => Command::Veto(n),
                }
            }
            other => {
                return Err(err(format!(
                    "unknown command `{other}` (begin, put, get, delete, list, commit, rollback, veto)"
                )));
            }
        };
        lines.push(Line {
            number,
            text: text.to_owned(),
            command,
        });
    }
    Ok(lines)
}

/// One command's result.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// 1-based line number in the script.
    pub line: usize,
    /// The command text.
    pub command: String,
    /// `ok`, `ok VALUE`, `ok K1 K2 …` or `err STATUS_NAME`.
    pub output: String,
}

/// Refuses, before anything runs, commands the transport cannot perform.
pub fn check_supported(lines: &[Line], kind: TransportKind) -> Result<(), ScriptError> {
    if kind == TransportKind::Device
        && let Some(l) = lines.iter().find(|l| matches!(l.command, Command::Veto(_)))
    {
        return Err(ScriptError {
            line: l.number,
            message: "`veto` needs the simulated device (run with --sim)".into(),
        });
    }
    Ok(())
}

fn ok_or_err(r: Result<String, Error>) -> String {
    match r {
        Ok(s) if s.is_empty() => "ok".into(),
        Ok(s) => format!("ok {s}"),
        Err(e) => format!("err {}", e.script_name()),
    }
}

/// Runs parsed lines in order. `err` answers are normal output; the caller decides the exit.
pub fn run(client: &Client, lines: &[Line]) -> Result<Vec<Outcome>, ScriptError> {
    check_supported(lines, client.kind())?;
    // A name whose `begin` failed keeps that error, so its later commands report the cause.
    let mut txs: HashMap<String, Result<Transaction, Error>> = HashMap::new();
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let handle =
            |tx: &Tx, txs: &HashMap<String, Result<Transaction, Error>>| -> Result<u64, Error> {
                match tx {
                    Tx::None => Ok(0),
                    Tx::Named(n) => match txs.get(n) {
                        Some(Ok(t)) => Ok(t.handle()),
                        Some(Err(e)) => Err(e.clone()),
                        None => Err(Error::BadAnswer {
                            op: n.clone(),
                            detail: "unbound name".into(),
                        }),
                    },
                }
            };
        let r: Result<String, Error> = match &l.command {
            Command::Begin(n) => {
                let t = client.begin_with(crate::client::TxSource::Begin, 0, n);
                let r = t.as_ref().map(|_| String::new()).map_err(Clone::clone);
                txs.insert(n.clone(), t);
                r
            }
            Command::Put(tx, k, v) => handle(tx, &txs)
                .and_then(|h| client.put_in(h, k, v))
                .map(|()| String::new()),
            Command::Get(tx, k) => handle(tx, &txs)
                .and_then(|h| client.get_in(h, k))
                .map(|v| show(&v)),
            Command::Delete(tx, k) => handle(tx, &txs)
                .and_then(|h| client.delete_in(h, k))
                .map(|()| String::new()),
            Command::List(tx, p) => handle(tx, &txs)
                .and_then(|h| client.list_in(h, p))
                .map(|keys| keys.iter().map(|k| show(k)).collect::<Vec<_>>().join(" ")),
            Command::Commit(n) | Command::Rollback(n) | Command::Veto(n) => match txs.get_mut(n) {
                Some(Ok(t)) => match &l.command {
                    Command::Commit(_) => t.commit(),
                    Command::Rollback(_) => t.rollback(),
                    _ => t.veto(),
                }
                .map(|()| String::new()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Error::BadAnswer {
                    op: n.clone(),
                    detail: "unbound name".into(),
                }),
            },
        };
        out.push(Outcome {
            line: l.number,
            command: l.text.clone(),
            output: ok_or_err(r),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_strips_comments() {
        let s = "# header\n\nbegin T1   # comment\nput T1 k v\nput - k2 a\\x20b\nget T1 k\ndelete - k\n\
                 list T1 pre\nlist -\ncommit T1\nbegin T2\nrollback T2\nveto T2\n";
        let lines = parse(s).unwrap();
        assert_eq!(lines.len(), 11);
        assert_eq!(
            lines[0],
            Line {
                number: 3,
                text: "begin T1".into(),
                command: Command::Begin("T1".into())
            }
        );
        assert_eq!(
            lines[2].command,
            Command::Put(Tx::None, b"k2".to_vec(), b"a b".to_vec())
        );
        assert_eq!(lines[6].command, Command::List(Tx::None, Vec::new()));
    }

    #[test]
    fn rejects_with_line_numbers() {
        let cases = [
            ("put T1 k v\n", 1, "used before"),
            ("begin T1\nbegin T1\n", 2, "already begun"),
            ("\n\nfrobnicate x\n", 3, "unknown command"),
            ("put - k\n", 1, "takes TX KEY VALUE"),
            ("get - k\\q\n", 1, "bad escape"),
            ("get - k\\x4\n", 1, "incomplete escape"),
            ("begin -\n", 1, "cannot be begun"),
            ("begin T\ncommit -\n", 2, "not `-`"),
        ];
        for (src, line, needle) in cases {
            let e = parse(src).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e}");
            assert!(e.message.contains(needle), "{src:?}: {e}");
        }
    }

    #[test]
    fn escapes_round_trip() {
        let raw = b"a b\\\x00\xff~";
        assert_eq!(unescape(&show(raw)).unwrap(), raw);
    }
}
