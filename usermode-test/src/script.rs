//! The script format: one command per line, one output line per command, so a run is
//! reproducible and diffable against an expected-output `.out` file (`script FILE --expect OUT`).
//!
//! ```text
//! begin T1              driver-created transaction (BEGIN) bound to the name T1, read committed
//! begin T2 serializable the same at SERIALIZABLE (`begin T read-committed` states the default)
//! put T1 key value      PUT in T1; `put - key value` is a non-transacted put
//! get T1 key            ok VALUE | err STATUS_…
//! delete - key
//! list T1 prefix        ok K1 K2 … (in the driver's bytewise order); `list T1` lists every key
//! commit T1             or: rollback T1
//! veto T1               simulator only: a second RM in T1 votes no at PREPARE
//! ```
//! Tokens are separated by blanks. A comment starts with a `#` at the start of a line or right
//! after a blank and runs to the end of the line; a `#` inside a token is part of it (`a#b` is
//! the three bytes `a#b`; a token that starts with `#` is written `\x23…`). Blank lines are
//! ignored. In keys and values `\xNN` stands for any byte and `\\` for a backslash; outputs
//! use the same escapes. A script is UTF-8 text, or UTF-8 or UTF-16 with a byte-order mark (what
//! Windows editors and PowerShell's `>` write); [`decode`] reads it.
//! Parsing happens before anything runs: an unknown command, a wrong number of tokens, a bad
//! escape, a name used before its `begin` or begun twice, an unknown isolation level stops with
//! the line number. Every request of a named transaction states its level in the header.

use crate::client::{Client, Isolation, Transaction, show};
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
    /// `begin NAME [LEVEL]`.
    Begin(String, Isolation),
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

/// Decodes `\xNN` and `\\` escapes in `token` (any bytes: a command-line argument need not
/// be UTF-8).
pub fn unescape(token: impl AsRef<[u8]>) -> Result<Vec<u8>, String> {
    let b = token.as_ref();
    let shown = || String::from_utf8_lossy(b).into_owned();
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
                let hex = b
                    .get(i + 2..i + 4)
                    .ok_or_else(|| format!("incomplete escape in {:?}", shown()))?;
                let hex = String::from_utf8_lossy(hex);
                let v = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("bad escape \\x{hex} in {:?}", shown()))?;
                out.push(v);
                i += 4;
            }
            _ => {
                return Err(format!("bad escape in {:?} (use \\xNN or \\\\)", shown()));
            }
        }
    }
    Ok(out)
}

/// The text of a script file: UTF-8, with or without a byte-order mark, or UTF-16 (little or
/// big endian) with one. Anything else is refused with the offset of the first bad byte.
pub fn decode(bytes: &[u8]) -> Result<String, String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16, name: &str| {
        if !rest.len().is_multiple_of(2) {
            return Err(format!(
                "{name} text (byte-order mark) with an odd number of bytes ({})",
                rest.len() + 2
            ));
        }
        let units = rest.chunks_exact(2).map(|c| unit([c[0], c[1]]));
        char::decode_utf16(units)
            .collect::<Result<String, _>>()
            .map_err(|e| {
                format!(
                    "{name} text (byte-order mark) with an unpaired surrogate 0x{:04X}",
                    e.unpaired_surrogate()
                )
            })
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest, 3),
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes, "UTF-16LE"),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes, "UTF-16BE"),
        _ => utf8(bytes, 0),
    }
}

fn utf8(bytes: &[u8], offset: usize) -> Result<String, String> {
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(format!(
            "a NUL byte at offset {}: UTF-16 without a byte-order mark? Save the script as UTF-8, \
             or as UTF-16 with a byte-order mark",
            offset + at
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let at = offset + e.utf8_error().valid_up_to();
        format!(
            "not UTF-8 text (byte 0x{:02X} at offset {at}); save the script as UTF-8, or as \
             UTF-16 with a byte-order mark",
            bytes[at - offset]
        )
    })
}

/// `line` without its comment: from the first `#` at the start or right after a blank.
fn strip_comment(line: &str) -> &str {
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_blank {
            return &line[..i];
        }
        prev_blank = c.is_whitespace();
    }
    line
}

/// The isolation level a script or the command line names: `read-committed` or
/// `serializable`.
#[must_use]
pub fn isolation(name: &str) -> Option<Isolation> {
    match name {
        "read-committed" => Some(Isolation::ReadCommitted),
        "serializable" => Some(Isolation::Serializable),
        _ => None,
    }
}

/// Parses a whole script; nothing runs unless every line parses.
pub fn parse(src: &str) -> Result<Vec<Line>, ScriptError> {
    let mut begun: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::new();
    for (i, raw) in src.lines().enumerate() {
        let number = i + 1;
        let text = strip_comment(raw).trim();
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
                arity(1, 2, "a name and an optional isolation level")?;
                let n = args[0];
                let level = match args.get(1) {
                    None => Isolation::ReadCommitted,
                    Some(l) => isolation(l).ok_or_else(|| {
                        err(format!(
                            "unknown isolation level `{l}` (read-committed or serializable)"
                        ))
                    })?,
                };
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
                Command::Begin(n.to_owned(), level)
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

fn unbound(name: &str) -> Error {
    Error::BadAnswer {
        op: name.to_owned(),
        detail: "unbound name".into(),
    }
}

/// Runs `op` with the handle and level `tx` names (`-`: no transaction, no level); a name
/// whose `begin` failed answers that failure.
fn in_tx<T>(
    tx: &Tx,
    txs: &HashMap<String, Result<Transaction, Error>>,
    op: impl FnOnce((u64, Isolation)) -> Result<T, Error>,
) -> Result<T, Error> {
    match tx {
        Tx::None => op((0, Isolation::Unstated)),
        Tx::Named(n) => match txs.get(n) {
            Some(Ok(t)) => op((t.handle(), t.level())),
            Some(Err(e)) => Err(e.clone()),
            None => Err(unbound(n)),
        },
    }
}

/// Runs parsed lines in order. `err` answers are normal output; the caller decides the exit.
pub fn run(client: &Client, lines: &[Line]) -> Result<Vec<Outcome>, ScriptError> {
    check_supported(lines, client.kind())?;
    // A name whose `begin` failed keeps that error, so its later commands report the cause.
    let mut txs: HashMap<String, Result<Transaction, Error>> = HashMap::new();
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let r: Result<String, Error> = match &l.command {
            Command::Begin(n, level) => {
                let t = client.begin_with(crate::client::TxSource::Begin, *level, 0, n);
                let r = t.as_ref().map(|_| String::new()).map_err(Clone::clone);
                txs.insert(n.clone(), t);
                r
            }
            Command::Put(tx, k, v) => {
                in_tx(tx, &txs, |at| client.put_stating(at, k, v)).map(|()| String::new())
            }
            Command::Get(tx, k) => {
                in_tx(tx, &txs, |at| client.get_stating(at, k)).map(|v| show(&v))
            }
            Command::Delete(tx, k) => {
                in_tx(tx, &txs, |at| client.delete_stating(at, k)).map(|()| String::new())
            }
            Command::List(tx, p) => in_tx(tx, &txs, |at| client.list_stating(at, p))
                .map(|keys| keys.iter().map(|k| show(k)).collect::<Vec<_>>().join(" ")),
            Command::Commit(n) | Command::Rollback(n) | Command::Veto(n) => match txs.get_mut(n) {
                Some(Ok(t)) => match &l.command {
                    Command::Commit(_) => t.commit(),
                    Command::Rollback(_) => t.rollback(),
                    _ => t.veto(),
                }
                .map(|()| String::new()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(unbound(n)),
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
                command: Command::Begin("T1".into(), Isolation::ReadCommitted)
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
            (
                "\nbegin T snapshot\n",
                2,
                "unknown isolation level `snapshot`",
            ),
            (
                "begin T serializable extra\n",
                1,
                "takes a name and an optional",
            ),
        ];
        for (src, line, needle) in cases {
            let e = parse(src).unwrap_err();
            assert_eq!(e.line, line, "{src:?}: {e}");
            assert!(e.message.contains(needle), "{src:?}: {e}");
        }
    }

    #[test]
    fn begin_takes_an_isolation_level() {
        let lines = parse("begin A\nbegin B serializable\nbegin C read-committed\n").unwrap();
        let levels: Vec<_> = lines
            .iter()
            .map(|l| match &l.command {
                Command::Begin(_, level) => *level,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            levels,
            [
                Isolation::ReadCommitted,
                Isolation::Serializable,
                Isolation::ReadCommitted
            ]
        );
    }

    #[test]
    fn a_hash_inside_a_token_is_part_of_it() {
        let lines = parse("put - h a#b\nput - h2 a #b\n#x\n  # y\nput - h3 \\x23c\t#x\n").unwrap();
        assert_eq!(
            lines[0].command,
            Command::Put(Tx::None, b"h".to_vec(), b"a#b".to_vec())
        );
        assert_eq!(
            lines[1].command,
            Command::Put(Tx::None, b"h2".to_vec(), b"a".to_vec())
        );
        assert_eq!(
            lines[2].command,
            Command::Put(Tx::None, b"h3".to_vec(), b"#c".to_vec())
        );
        assert_eq!(lines.len(), 3);
        // `put - h a #b`: the comment leaves two tokens, which `put` refuses.
        let e = parse("put - h #b\n").unwrap_err();
        assert!(e.message.contains("takes TX KEY VALUE"), "{e}");
    }

    #[test]
    fn decodes_utf8_and_utf16_with_a_byte_order_mark() {
        let text = "put - k v\u{e9}\n";
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(text.as_bytes());
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for u in text.encode_utf16() {
            le.extend_from_slice(&u.to_le_bytes());
            be.extend_from_slice(&u.to_be_bytes());
        }
        for bytes in [text.as_bytes(), &bom8, &le, &be] {
            assert_eq!(decode(bytes).unwrap(), text, "{bytes:?}");
        }
        // Without a mark, UTF-16 is refused (its NUL bytes give it away), as is any other
        // non-UTF-8 text, with the offset and what to do.
        let e = decode(&le[2..]).unwrap_err();
        assert!(e.contains("NUL byte at offset 1"), "{e}");
        let e = decode(b"put - k \xff\n").unwrap_err();
        assert!(
            e.contains("byte 0xFF at offset 8") && e.contains("byte-order mark"),
            "{e}"
        );
        assert!(
            decode(&[0xFF, 0xFE, 0x41])
                .unwrap_err()
                .contains("odd number")
        );
        assert!(
            decode(&[0xFF, 0xFE, 0x00, 0xD8])
                .unwrap_err()
                .contains("surrogate")
        );
    }

    #[test]
    fn escapes_round_trip() {
        let raw = b"a b\\\x00\xff~";
        assert_eq!(unescape(show(raw)).unwrap(), raw);
    }
}
