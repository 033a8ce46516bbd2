//! `ktmrm-test`: the ktmrm client CLI and conformance harness. Exit status 0 only when every
//! check passed; 1 when a check or a request failed; 2 when the input (arguments, script)
//! cannot be used.

mod cli;
mod out;

/// Counts allocated bytes, for the benchmark's memory per stored key.
#[global_allocator]
static ALLOC: ktmrm_bench::CountingAlloc = ktmrm_bench::CountingAlloc;

use clap::Parser;
use clap::error::ErrorKind;
use cli::{Cli, Command};
use ktmrm_client::suite::{Report, bad_input, bench, crash_matrix, scenarios, stress};
use ktmrm_client::{Backend, Client, Error, TxSource, client::show, diff, script, status};
use serde_json::json;
use std::ffi::OsStr;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How a command ended.
enum Outcome {
    /// Everything passed.
    Ok,
    /// A check failed (already reported).
    Failed,
    /// The input is unusable.
    Usage(String),
}

fn main() -> ExitCode {
    // Seen before parsing, so that an argument error is JSON too when --json was given.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e, json),
    };
    let backend = Backend::default_for_os(cli.sim);
    match run(&cli, &backend) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Ok(Outcome::Usage(msg)) => usage(&msg, cli.json),
        Err(e) => {
            if cli.json {
                let st = e.status().map(status::name);
                out::line(json!({ "error": { "message": e.to_string(), "status": st } }));
            } else if matches!(e, Error::NotInstalled) {
                // This one is meant to be read as is, first line first.
                out::error_line(&e);
            } else {
                out::error_line(format!("ktmrm-test: {e}"));
            }
            ExitCode::from(1)
        }
    }
}

/// Reports unusable input: exit status 2.
fn usage(msg: &str, json: bool) -> ExitCode {
    if json {
        out::line(json!({ "error": { "message": msg, "kind": "usage" } }));
    } else {
        out::error_line(format!("ktmrm-test: {msg}"));
    }
    ExitCode::from(2)
}

/// Help and version requests print and succeed; anything else clap refused is a usage error.
fn argument_error(e: &clap::Error, json: bool) -> ExitCode {
    let text = e.render().to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            if json {
                out::line(json!({ "help": text }));
            } else {
                out::print(&text);
            }
            ExitCode::SUCCESS
        }
        kind => {
            let mut msg = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            if kind == ErrorKind::InvalidUtf8 {
                msg.push_str(
                    ": keys, values and prefixes take any bytes (or \\xNN escapes); \
                     other arguments must be UTF-8 text",
                );
            }
            if json {
                return usage(&msg, true);
            }
            if kind == ErrorKind::InvalidUtf8 {
                out::error_line(format!("ktmrm-test: {msg}"));
            } else {
                let _ = e.print();
            }
            ExitCode::from(2)
        }
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
fn bytes(what: &str, arg: &OsStr) -> Result<Vec<u8>, Outcome> {
    #[cfg(unix)]
    let raw = std::os::unix::ffi::OsStrExt::as_bytes(arg);
    #[cfg(not(unix))]
    let raw = arg.to_str().map(str::as_bytes).ok_or_else(|| {
        Outcome::Usage(format!(
            "the {what} is not valid Unicode; write such bytes as \\xNN escapes"
        ))
    })?;
    script::unescape(raw).map_err(|e| Outcome::Usage(format!("{what}: {e}")))
}

/// Runs `op` with the handle `--tx` names: in a new transaction committed afterwards, under a
/// raw handle value, or outside any transaction.
fn with_tx<T>(
    client: &Client,
    tx: Option<&str>,
    op: impl FnOnce(u64) -> Result<T, Error>,
) -> Result<T, Error> {
    match tx.map(parse_tx) {
        None => op(0),
        Some(TxArg::Handle(h)) => op(h),
        Some(TxArg::Named(name)) => {
            let mut t = client.begin_with(TxSource::Begin, 0, &name)?;
            let r = op(t.handle())?;
            t.commit()?;
            Ok(r)
        }
    }
}

fn print_report(cli: &Cli, report: &Report, extra: Option<serde_json::Value>) -> Outcome {
    if cli.json {
        let mut v = serde_json::to_value(report).unwrap_or_default();
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), extra) {
            obj.insert("summary".into(), extra);
        }
        out::line(v);
    } else {
        out::print(&report.human(true));
    }
    if report.ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    }
}

fn done(cli: &Cli, text: String, value: serde_json::Value) -> Outcome {
    if cli.json {
        out::line(value);
    } else {
        out::line(text);
    }
    Outcome::Ok
}

fn run(cli: &Cli, backend: &Backend) -> Result<Outcome, Error> {
    let kind = backend.kind().name();
    match &cli.command {
        Command::Version => {
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
        Command::Stats => {
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
            obj.insert("transport".into(), json!(kind));
            for (k, v) in pairs {
                obj.insert(k.into(), json!(v));
            }
            Ok(done(cli, text, serde_json::Value::Object(obj)))
        }
        Command::Put { key, value, tx } => {
            let (k, v) = match (bytes("key", key), bytes("value", value)) {
                (Ok(k), Ok(v)) => (k, v),
                (Err(e), _) | (_, Err(e)) => return Ok(e),
            };
            let c = Client::new(backend.connect()?)?;
            with_tx(&c, tx.as_deref(), |h| c.put_in(h, &k, &v))?;
            Ok(done(cli, "ok".into(), json!({ "ok": true })))
        }
        Command::Get { key, tx } => {
            let k = match bytes("key", key) {
                Ok(k) => k,
                Err(e) => return Ok(e),
            };
            let c = Client::new(backend.connect()?)?;
            let v = with_tx(&c, tx.as_deref(), |h| c.get_in(h, &k))?;
            Ok(done(
                cli,
                show(&v),
                json!({ "value": show(&v), "len": v.len() }),
            ))
        }
        Command::Delete { key, tx } => {
            let k = match bytes("key", key) {
                Ok(k) => k,
                Err(e) => return Ok(e),
            };
            let c = Client::new(backend.connect()?)?;
            with_tx(&c, tx.as_deref(), |h| c.delete_in(h, &k))?;
            Ok(done(cli, "ok".into(), json!({ "ok": true })))
        }
        Command::List { prefix, tx } => {
            let p = match bytes("prefix", prefix) {
                Ok(p) => p,
                Err(e) => return Ok(e),
            };
            let c = Client::new(backend.connect()?)?;
            let keys: Vec<String> = with_tx(&c, tx.as_deref(), |h| c.list_in(h, &p))?
                .iter()
                .map(|k| show(k))
                .collect();
            Ok(done(cli, keys.join("\n"), json!({ "keys": keys })))
        }
        Command::Script { file, expect } => run_script(cli, backend, file, expect.as_deref()),
        Command::Replay { file } => run_replay(backend, file),
        Command::Scenarios { names, list } => {
            if *list {
                let all = scenarios::all();
                let text = all
                    .iter()
                    .map(|s| format!("{:<30} {}", s.name, s.rule))
                    .collect::<Vec<_>>()
                    .join("\n");
                let v: Vec<_> = all
                    .iter()
                    .map(|s| json!({ "name": s.name, "rule": s.rule }))
                    .collect();
                return Ok(done(cli, text, json!(v)));
            }
            if let Some(bad) = names
                .iter()
                .find(|n| !scenarios::all().iter().any(|s| s.name == n.as_str()))
            {
                return Ok(Outcome::Usage(format!(
                    "no scenario named {bad:?} (see `ktmrm-test scenarios --list`)"
                )));
            }
            let report = scenarios::run(backend, names)?;
            Ok(print_report(cli, &report, None))
        }
        Command::BadInput => {
            let report = bad_input::run(backend.connect()?)?;
            Ok(print_report(cli, &report, None))
        }
        Command::Stress {
            threads,
            seconds,
            accounts,
        } => {
            if !seconds.is_finite() || *seconds < 0.0 {
                return Ok(Outcome::Usage(format!(
                    "--seconds {seconds} is not a duration: use {}–86,400",
                    stress::SECONDS.start()
                )));
            }
            if !stress::SECONDS.contains(seconds) {
                return Ok(Outcome::Usage(format!(
                    "--seconds {seconds} is out of range: use {}–86,400",
                    stress::SECONDS.start()
                )));
            }
            let cfg = stress::StressConfig {
                threads: *threads,
                duration: Duration::from_secs_f64(*seconds),
                accounts: *accounts,
                progress: !cli.json && std::io::stderr().is_terminal(),
            };
            if let Err(msg) = cfg.check() {
                return Ok(Outcome::Usage(msg));
            }
            let (report, summary) = stress::run(backend.connect()?, &cfg)?;
            if !cli.json {
                out::line(format!(
                    "{} threads × {:.1} s: {} commits ({:.0}/s), {} conflicts retried, {} stale reads retried, {} failed commits",
                    cfg.threads,
                    summary.seconds,
                    summary.commits,
                    summary.commits_per_second,
                    summary.conflicts,
                    summary.stale_reads,
                    summary.failed_commits
                ));
            }
            Ok(print_report(
                cli,
                &report,
                serde_json::to_value(&summary).ok(),
            ))
        }
        Command::CrashMatrix { names, list, quick } => run_crash_matrix(cli, names, *list, *quick),
        Command::Bench {
            durable: true,
            quick,
            dir,
            ..
        } => run_durable_bench(cli, backend, *quick, dir.as_deref()),
        Command::Bench {
            iterations, quick, ..
        } => {
            if !(1..=1_000_000).contains(iterations) {
                return Ok(Outcome::Usage(format!(
                    "--iterations {iterations} is out of range: use 1–1,000,000"
                )));
            }
            let r = bench::run(backend.connect()?, *iterations)?;
            let mut json = serde_json::to_value(&r).unwrap_or_default();
            let mut human = r.human();
            // The engine suite's targets are its checks; on the device it does not run.
            let (mut passed, mut failed, mut skipped) = (0, 0, 1);
            if backend.kind() == ktmrm_client::transport::TransportKind::Sim {
                let cfg = if *quick {
                    ktmrm_bench::BenchConfig::quick()
                } else {
                    ktmrm_bench::BenchConfig::default()
                };
                let engine = ktmrm_bench::run(&cfg);
                passed = engine.targets.iter().filter(|t| t.met).count();
                failed = engine.targets.len() - passed;
                skipped = 0;
                human.push('\n');
                human.push_str(&bench::engine_table(&engine));
                if let (Some(obj), Ok(serde_json::Value::Object(more))) =
                    (json.as_object_mut(), serde_json::to_value(&engine))
                {
                    obj.extend(more);
                }
            }
            Ok(bench_verdict(
                cli,
                "bench",
                human,
                json,
                [passed, failed, skipped],
            ))
        }
    }
}

fn run_durable_bench(
    cli: &Cli,
    backend: &Backend,
    quick: bool,
    dir: Option<&std::path::Path>,
) -> Result<Outcome, Error> {
    if backend.kind() != ktmrm_client::transport::TransportKind::Sim {
        return Ok(Outcome::Usage(
            "bench --durable runs on the simulated device: add --sim".into(),
        ));
    }
    let temp;
    let dir = match dir {
        Some(d) => {
            // The suite writes files there: say now, and clearly, if it cannot.
            let usable =
                std::fs::create_dir_all(d).and_then(|()| tempfile::tempfile_in(d).map(drop));
            if let Err(e) = usable {
                return Ok(Outcome::Usage(format!(
                    "--dir {}: cannot write files there: {e}",
                    d.display()
                )));
            }
            d.to_path_buf()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("ktmrm-bench-")
                .tempdir()
                .map_err(|e| Error::Os {
                    op: "creating a temporary directory for bench --durable".into(),
                    code: e.raw_os_error().map_or(0, |c| c as u32),
                })?;
            temp.path().to_path_buf()
        }
    };
    let cfg = if quick {
        ktmrm_bench::durable::DurableConfig::quick(dir)
    } else {
        ktmrm_bench::durable::DurableConfig::new(dir)
    };
    let r = ktmrm_bench::durable::run(&cfg);
    let passed = r.targets.iter().filter(|t| t.met).count();
    let failed = r.targets.len() - passed;
    let json = serde_json::to_value(&r).unwrap_or_default();
    let human = bench::durable_table(&r);
    Ok(bench_verdict(
        cli,
        "bench --durable",
        human,
        json,
        [passed, failed, 0],
    ))
}

/// Ends a bench run: its targets as checks, `[passed, failed, skipped]`, in the closing line
/// and in the JSON; the exit status fails when a target was missed.
fn bench_verdict(
    cli: &Cli,
    what: &str,
    mut human: String,
    mut json: serde_json::Value,
    [passed, failed, skipped]: [usize; 3],
) -> Outcome {
    human.push_str(&format!(
        "{what}: {passed} passed, {failed} failed, {skipped} skipped"
    ));
    if let Some(obj) = json.as_object_mut() {
        obj.insert("passed".into(), json!(passed));
        obj.insert("failed".into(), json!(failed));
        obj.insert("skipped".into(), json!(skipped));
    }
    let outcome = done(cli, human, json);
    if failed == 0 {
        outcome
    } else {
        Outcome::Failed
    }
}

fn run_crash_matrix(
    cli: &Cli,
    names: &[String],
    list: bool,
    quick: bool,
) -> Result<Outcome, Error> {
    use crash_matrix::{Options, Scenario};
    if list {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        return Ok(done(cli, names.join("\n"), json!(names)));
    }
    let mut opts = Options::full();
    if quick {
        opts.modes = vec![ktm_sim::DeliveryMode::Inline];
        opts.recovery_crashes = false;
    }
    if !names.is_empty() {
        let mut picked = Vec::new();
        for n in names {
            match Scenario::ALL.iter().find(|s| s.name() == n) {
                Some(s) => picked.push(*s),
                None => {
                    return Ok(Outcome::Usage(format!(
                        "no crash scenario named {n:?} (see `ktmrm-test crash-matrix --list`)"
                    )));
                }
            }
        }
        opts.scenarios = picked;
    }
    let bar = if !cli.json && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let summary = crash_matrix::run(&opts, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let ok = summary.violations.is_empty();
    if cli.json {
        out::line(serde_json::to_value(&summary).unwrap_or_default());
    } else {
        let mut text = format!(
            "{:<16} {:<9} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9}\n",
            "scenario", "mode", "points", "crashes", "failures", "applied", "absent", "in doubt"
        );
        for r in &summary.rows {
            text.push_str(&format!(
                "{:<16} {:<9} {:>6} {:>7} {:>8} {:>8} {:>7} {:>9}\n",
                r.scenario,
                r.mode,
                r.points,
                r.crashes,
                r.failures,
                r.applied,
                r.absent,
                r.in_doubt
            ));
        }
        for v in &summary.violations {
            text.push_str(&format!("VIOLATION: {v}\n"));
        }
        text.push_str(&format!(
            "crash matrix: {} log-device failures, {} crash points tried, {} crashes, {} \
             violations\n\
             crash-matrix: {} passed, {} failed, {} skipped\n",
            summary.log_failures,
            summary.crash_points,
            summary.crashes,
            summary.violations.len(),
            summary.passed,
            summary.failed,
            summary.skipped
        ));
        out::print(&text);
    }
    Ok(if ok { Outcome::Ok } else { Outcome::Failed })
}

/// Reads a script or expected-output file (`-`: standard input) as text.
fn read_text(path: &Path) -> Result<String, String> {
    let mut raw = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut raw).map(drop)
    } else {
        std::fs::read(path).map(|b| raw = b)
    };
    read.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    script::decode(&raw).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_replay(backend: &Backend, file: &Path) -> Result<Outcome, Error> {
    let src = match read_text(file) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Usage(e)),
    };
    match ktmrm_client::replay::run(&*backend.connect()?, &src) {
        Ok(answers) => {
            for a in answers {
                out::line(a);
            }
            Ok(Outcome::Ok)
        }
        Err(e) => Ok(Outcome::Usage(format!("{}: {}", file.display(), e.0))),
    }
}

fn run_script(
    cli: &Cli,
    backend: &Backend,
    file: &Path,
    expect: Option<&Path>,
) -> Result<Outcome, Error> {
    let src = match read_text(file) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::Usage(e)),
    };
    let expected = match expect.map(read_text).transpose() {
        Ok(e) => e,
        Err(e) => return Ok(Outcome::Usage(e)),
    };
    let name = file.display();
    let lines = match script::parse(&src) {
        Ok(l) => l,
        Err(e) => return Ok(Outcome::Usage(format!("{name}: {e}"))),
    };
    let client = Client::new(backend.connect()?)?;
    let results = match script::run(&client, &lines) {
        Ok(r) => r,
        Err(e) => return Ok(Outcome::Usage(format!("{name}: {e}"))),
    };
    let got: String = results.iter().map(|r| format!("{}\n", r.output)).collect();
    let mismatch = match (&expected, expect) {
        (Some(want), Some(path)) => {
            diff::unified(want, &got, &path.display().to_string(), &name.to_string())
        }
        _ => None,
    };
    if cli.json {
        let mut v = json!({ "transport": backend.kind(), "results": results });
        if let Some(path) = expect {
            v["expect"] = json!({
                "file": path.display().to_string(),
                "matches": mismatch.is_none(),
                "diff": mismatch,
            });
        }
        out::line(v);
    } else if let Some(d) = &mismatch {
        out::print(d);
    } else if let Some(path) = expect {
        out::line(format!(
            "{name}: the output matches {} ({} lines)",
            path.display(),
            results.len()
        ));
    } else {
        out::print(&got);
    }
    Ok(if mismatch.is_some() {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}
