//! The store's commands: `version`, `stats`, `put`, `get`, `delete`, `list`.

use std::ffi::OsStr;

use ktmrm_client::client::{Isolation, show};
use ktmrm_client::{Backend, Client, Error, TxSource, script};
use serde_json::json;

use super::done;
use crate::cli::{Cli, Level};
use crate::outcome::{CliError, Outcome};

pub fn version(cli: &Cli, backend: &Backend) -> Outcome {
    let kind = backend.kind().name();
    let c = Client::new(backend.connect()?)?;
    let v = c.version()?;
    let l = v.limits;
    let text = format!(
        "ktmrm protocol {} on the {kind} device\nkeys ≤ {} bytes, values ≤ {} bytes, descriptions ≤ {} chars\n\
         quotas: {} live transactions, {} writes per transaction, {} keys, {} bytes",
        v.protocol_version,
        v.max_key_len,
        v.max_value_len,
        v.max_description_chars,
        l.max_live_transactions,
        l.max_write_set,
        l.max_keys,
        l.max_bytes
    );
    Ok(done(
        cli,
        text,
        json!({
            "transport": kind, "protocol_version": v.protocol_version, "max_key_len": v.max_key_len,
            "max_value_len": v.max_value_len, "max_description_chars": v.max_description_chars,
            "max_live_transactions": l.max_live_transactions, "max_write_set": l.max_write_set,
            "max_keys": l.max_keys, "max_bytes": l.max_bytes,
        }),
    ))
}

pub fn stats(cli: &Cli, backend: &Backend) -> Outcome {
    let c = Client::new(backend.connect()?)?;
    let s = c.stats()?;
    let pairs: Vec<(&str, u64)> = ktmrm_client::proto::Stats::FIELDS
        .iter()
        .copied()
        .zip(s.values())
        .collect();
    let text = pairs
        .iter()
        .map(|(k, v)| format!("{k:<24} {v}"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut obj = serde_json::Map::new();
    obj.insert("transport".into(), json!(backend.kind().name()));
    for (k, v) in pairs {
        obj.insert(k.into(), json!(v));
    }
    Ok(done(cli, text, serde_json::Value::Object(obj)))
}

pub fn put(cli: &Cli, backend: &Backend, key: &OsStr, value: &OsStr, tx: TxOpt<'_>) -> Outcome {
    let k = bytes("key", key)?;
    let v = bytes("value", value)?;
    let c = Client::new(backend.connect()?)?;
    with_tx(&c, tx, |at| c.put_stating(at, &k, &v))?;
    Ok(done(cli, "ok".into(), json!({ "ok": true })))
}

pub fn get(cli: &Cli, backend: &Backend, key: &OsStr, tx: TxOpt<'_>) -> Outcome {
    let k = bytes("key", key)?;
    let c = Client::new(backend.connect()?)?;
    let v = with_tx(&c, tx, |at| c.get_stating(at, &k))?;
    Ok(done(
        cli,
        show(&v),
        json!({ "value": show(&v), "len": v.len() }),
    ))
}

pub fn delete(cli: &Cli, backend: &Backend, key: &OsStr, tx: TxOpt<'_>) -> Outcome {
    let k = bytes("key", key)?;
    let c = Client::new(backend.connect()?)?;
    with_tx(&c, tx, |at| c.delete_stating(at, &k))?;
    Ok(done(cli, "ok".into(), json!({ "ok": true })))
}

pub fn list(cli: &Cli, backend: &Backend, prefix: &OsStr, tx: TxOpt<'_>) -> Outcome {
    let p = bytes("prefix", prefix)?;
    let c = Client::new(backend.connect()?)?;
    let keys: Vec<String> = with_tx(&c, tx, |at| c.list_stating(at, &p))?
        .iter()
        .map(|k| show(k))
        .collect();
    Ok(done(cli, keys.join("\n"), json!({ "keys": keys })))
}

/// `--tx` and `--isolation` (which clap accepts only with `--tx`).
pub struct TxOpt<'a> {
    tx: Option<&'a str>,
    level: Option<Level>,
}

/// The `--tx` and `--isolation` arguments of a store command.
pub fn tx_arg(tx: &Option<String>, level: Option<Level>) -> TxOpt<'_> {
    TxOpt {
        tx: tx.as_deref(),
        level,
    }
}

/// A `--tx` argument: a handle value, or the description of a transaction to create.
enum TxArg {
    Handle(u64),
    Named(String),
}

fn parse_tx(s: &str) -> TxArg {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    n.map_or_else(|| TxArg::Named(s.to_owned()), TxArg::Handle)
}

/// A key, value or prefix argument as bytes: on Unix any bytes the shell passed, on Windows the
/// UTF-8 of the argument; then `\\xNN` and `\\\\` escapes decoded.
fn bytes(what: &str, arg: &OsStr) -> Result<Vec<u8>, CliError> {
    #[cfg(unix)]
    let raw = std::os::unix::ffi::OsStrExt::as_bytes(arg);
    #[cfg(not(unix))]
    let raw = arg.to_str().map(str::as_bytes).ok_or_else(|| {
        CliError::Usage(format!(
            "the {what} is not valid Unicode; write such bytes as \\xNN escapes"
        ))
    })?;
    script::unescape(raw).map_err(|e| CliError::Usage(format!("{what}: {e}")))
}

/// Runs `op` with the handle `--tx` names and the level `--isolation` states: in a new
/// transaction committed afterwards, under a raw handle value, or outside any transaction.
fn with_tx<T>(
    client: &Client,
    opt: TxOpt<'_>,
    op: impl FnOnce((u64, Isolation)) -> Result<T, Error>,
) -> Result<T, Error> {
    let level = opt.level.map(Level::isolation);
    match opt.tx.map(parse_tx) {
        None => op((0, Isolation::Unstated)),
        Some(TxArg::Handle(h)) => op((h, level.unwrap_or(Isolation::Unstated))),
        Some(TxArg::Named(name)) => {
            let level = level.unwrap_or(Isolation::ReadCommitted);
            let mut t = client.begin_with(TxSource::Begin, level, 0, &name)?;
            let r = op((t.handle(), t.level()))?;
            t.commit()?;
            Ok(r)
        }
    }
}
