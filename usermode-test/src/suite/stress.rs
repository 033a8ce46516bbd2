//! Concurrent bank transfers in KTM transactions, then proof that nothing was lost or invented.
//!
//! Each transfer reads two balances in its transaction, writes both, and writes a ledger entry
//! in the same transaction. Reads take no locks (README "Semantics": reads never block), so at
//! read committed a transfer first takes both keys' write locks and then re-reads the committed
//! balances (tx 0): while it holds the locks nobody else can commit them, so a changed value
//! means the read was stale and the transfer retries. At serializable it does no such thing: the
//! driver refuses a transfer whose reads another commit invalidated (a write answers
//! STATUS_TRANSACTIONAL_CONFLICT, or the commit STATUS_TRANSACTION_ABORTED), and it retries.
//! Conflicts (another transfer holds a lock) retry too.

use super::{Report, Stop, expect_eq, expect_none_left_live};
use crate::client::{Client, Isolation, TxSource};
use crate::error::{Error, Result};
use crate::transport::{Transport, TransportKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ktmrm_proto::NtStatus;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to run.
#[derive(Clone, Debug)]
pub struct StressConfig {
    /// Worker threads.
    pub threads: usize,
    /// How long to transfer.
    pub duration: Duration,
    /// Accounts to transfer between (≥ 2).
    pub accounts: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The transfers' isolation level (read committed re-reads the balances by hand).
    pub isolation: Isolation,
}

/// The worker threads a run takes.
pub const THREADS: std::ops::RangeInclusive<usize> = 1..=256;
/// The accounts a run takes: a transfer needs two, and each is a key of the store.
pub const ACCOUNTS: std::ops::RangeInclusive<usize> = 2..=100_000;
/// The seconds a run takes: long enough for a transfer to commit, at most a day.
pub const SECONDS: std::ops::RangeInclusive<f64> = 0.1..=86_400.0;

impl StressConfig {
    /// Refuses a configuration outside [`THREADS`], [`ACCOUNTS`] or [`SECONDS`], naming the
    /// argument (as the CLI spells it) and its range.
    pub fn check(&self) -> std::result::Result<(), String> {
        let secs = self.duration.as_secs_f64();
        if !THREADS.contains(&self.threads) {
            return Err(format!(
                "--threads {} is out of range: use {}–{}",
                self.threads,
                THREADS.start(),
                THREADS.end()
            ));
        }
        if !ACCOUNTS.contains(&self.accounts) {
            return Err(format!(
                "--accounts {} is out of range: use {}–100,000",
                self.accounts,
                ACCOUNTS.start()
            ));
        }
        if !SECONDS.contains(&secs) {
            return Err(format!(
                "--seconds {secs} is out of range: use {}–86,400",
                SECONDS.start()
            ));
        }
        Ok(())
    }
}

/// Starting balance of every account.
const INITIAL: u64 = 1_000;

/// What the run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StressSummary {
    /// Transfers whose commit succeeded.
    pub commits: u64,
    /// The transfers' isolation level.
    pub isolation: &'static str,
    /// Transfers whose commit failed other than by a serializable abort (must be invisible).
    pub failed_commits: u64,
    /// Serializable transfers whose commit answered STATUS_TRANSACTION_ABORTED because another
    /// commit invalidated their reads (retried; must be invisible).
    pub aborts: u64,
    /// Writes refused with STATUS_TRANSACTIONAL_CONFLICT (retried).
    pub conflicts: u64,
    /// Read-committed transfers retried because a balance changed between the read and the
    /// lock.
    pub stale_reads: u64,
    /// Transfers skipped for lack of funds.
    pub insufficient: u64,
    /// Errors other than the above (each fails the run).
    pub unexpected: Vec<String>,
    /// Seconds run.
    pub seconds: f64,
    /// Committed transfers per second.
    pub commits_per_second: f64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    conflicts: AtomicU64,
}

/// A transfer the worker saw committed (or saw fail).
struct Transfer {
    ledger: Vec<u8>,
    from: usize,
    to: usize,
    amount: u64,
    committed: bool,
    /// Failed with STATUS_TRANSACTION_ABORTED at serializable (and retried).
    aborted: bool,
}

#[derive(Default)]
struct WorkerLog {
    transfers: Vec<Transfer>,
    conflicts: u64,
    stale: u64,
    insufficient: u64,
    unexpected: Vec<String>,
}

/// A small xorshift generator: deterministic per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn acct(prefix: &[u8], i: usize) -> Vec<u8> {
    [prefix, format!("acct/{i:05}").as_bytes()].concat()
}

fn parse(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

enum Try {
    Done,
    Retry,
}

fn is(e: &Error, st: NtStatus) -> bool {
    e.status() == Some(st)
}

/// One transfer attempt.
fn transfer(
    c: &Client,
    prefix: &[u8],
    (source, level): (TxSource, Isolation),
    id: (usize, u64),
    pick: (usize, usize, u64),
    log: &mut WorkerLog,
    n: &Counters,
) -> Result<Try> {
    let (from, to, amount) = pick;
    let (ka, kb) = (acct(prefix, from), acct(prefix, to));
    let serializable = level == Isolation::Serializable;
    let mut t = c.begin_with(source, level, 0, "ktmrm-test stress")?;
    let bad = |k: &[u8]| Error::BadAnswer {
        op: format!("balance {}", crate::client::show(k)),
        detail: "not a number".into(),
    };
    let a = parse(&t.get(&ka)?).ok_or_else(|| bad(&ka))?;
    let b = parse(&t.get(&kb)?).ok_or_else(|| bad(&kb))?;
    if a < amount {
        log.insufficient += 1;
        return Ok(Try::Done);
    }
    for (k, v) in [(&ka, a - amount), (&kb, b + amount)] {
        match t.put(k, v.to_string().as_bytes()) {
            Err(e) if is(&e, NtStatus::TRANSACTIONAL_CONFLICT) => {
                log.conflicts += 1;
                n.conflicts.fetch_add(1, Ordering::Relaxed);
                return Ok(Try::Retry);
            }
            r => r?,
        }
    }
    // We hold both locks now: the committed balances cannot move until we end. Serializable
    // leaves the check to the driver.
    if !serializable && (parse(&c.get(&ka)?) != Some(a) || parse(&c.get(&kb)?) != Some(b)) {
        log.stale += 1;
        return Ok(Try::Retry);
    }
    let ledger = [prefix, format!("ledger/{:03}/{:08}", id.0, id.1).as_bytes()].concat();
    match t.put(&ledger, format!("{from} {to} {amount}").as_bytes()) {
        Err(e) if serializable && is(&e, NtStatus::TRANSACTIONAL_CONFLICT) => {
            log.conflicts += 1;
            n.conflicts.fetch_add(1, Ordering::Relaxed);
            return Ok(Try::Retry);
        }
        r => r?,
    }
    let (committed, aborted) = match t.commit() {
        Ok(()) => {
            n.commits.fetch_add(1, Ordering::Relaxed);
            (true, false)
        }
        Err(e) if serializable && is(&e, NtStatus::TRANSACTION_ABORTED) => (false, true),
        Err(e) if e.status().is_some() => (false, false),
        Err(e) => return Err(e),
    };
    log.transfers.push(Transfer {
        ledger,
        from,
        to,
        amount,
        committed,
        aborted,
    });
    Ok(if aborted { Try::Retry } else { Try::Done })
}

fn worker(
    c: Client,
    prefix: Vec<u8>,
    thread: usize,
    cfg: StressConfig,
    deadline: Instant,
    n: Arc<Counters>,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    let mut rng =
        Rng(0x9E37_79B9_7F4A_7C15 ^ (thread as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    // Half the threads take transactions from BEGIN, half from CreateTransaction.
    let source = if thread.is_multiple_of(2) {
        TxSource::Begin
    } else {
        TxSource::Ktmw32
    };
    // Every attempt has its own ledger key, so a failed one's is never a retry's.
    let mut seq = 0u64;
    while Instant::now() < deadline && log.unexpected.len() < 5 {
        let from = rng.below(cfg.accounts as u64) as usize;
        let to = (from + 1 + rng.below(cfg.accounts as u64 - 1) as usize) % cfg.accounts;
        let amount = 1 + rng.below(50);
        loop {
            seq += 1;
            match transfer(
                &c,
                &prefix,
                (source, cfg.isolation),
                (thread, seq),
                (from, to, amount),
                &mut log,
                &n,
            ) {
                Ok(Try::Done) => break,
                Ok(Try::Retry) if Instant::now() < deadline => std::thread::yield_now(),
                Ok(Try::Retry) => break,
                Err(e) => {
                    log.unexpected.push(format!("thread {thread}: {e}"));
                    break;
                }
            }
        }
    }
    log
}

/// Runs the transfers and the final checks.
pub fn run(transport: Arc<dyn Transport>, cfg: &StressConfig) -> Result<(Report, StressSummary)> {
    cfg.check().map_err(|reason| Error::Unsupported {
        op: "stress".into(),
        reason,
    })?;
    let client = Client::new(transport.clone())?;
    let prefix = match transport.kind() {
        TransportKind::Sim => b"stress/".to_vec(),
        TransportKind::Device => format!("ktmrm-test/stress-{}/", std::process::id()).into_bytes(),
    };
    client.delete_prefix(&prefix)?;
    for i in 0..cfg.accounts {
        client.put(&acct(&prefix, i), INITIAL.to_string().as_bytes())?;
    }
    let stats_before = client.stats()?;
    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let bar = if cfg.progress {
        ProgressBar::new(cfg.duration.as_millis() as u64)
    } else {
        ProgressBar::hidden()
    };
    if cfg.progress {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed}/{duration} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    }
    let workers: Vec<_> = (0..cfg.threads)
        .map(|i| {
            let (c, p, cfg, n) = (
                client.clone(),
                prefix.clone(),
                cfg.clone(),
                counters.clone(),
            );
            std::thread::spawn(move || worker(c, p, i, cfg, deadline, n))
        })
        .collect();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        bar.set_position(start.elapsed().as_millis().min(cfg.duration.as_millis()) as u64);
        bar.set_message(format!(
            "{} commits, {} conflicts",
            counters.commits.load(Ordering::Relaxed),
            counters.conflicts.load(Ordering::Relaxed)
        ));
    }
    let mut logs = Vec::new();
    for w in workers {
        logs.push(w.join().unwrap_or_else(|_| WorkerLog {
            unexpected: vec!["a worker thread panicked".into()],
            ..WorkerLog::default()
        }));
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();

    let mut s = StressSummary {
        isolation: match cfg.isolation {
            Isolation::Serializable => "serializable",
            _ => "read-committed",
        },
        seconds,
        ..StressSummary::default()
    };
    for l in &logs {
        s.commits += l.transfers.iter().filter(|t| t.committed).count() as u64;
        s.failed_commits += l
            .transfers
            .iter()
            .filter(|t| !t.committed && !t.aborted)
            .count() as u64;
        s.aborts += l.transfers.iter().filter(|t| t.aborted).count() as u64;
        s.conflicts += l.conflicts;
        s.stale_reads += l.stale;
        s.insufficient += l.insufficient;
        s.unexpected.extend(l.unexpected.iter().cloned());
    }
    s.commits_per_second = s.commits as f64 / seconds.max(1e-9);

    let mut report = Report::new("stress", transport.kind());
    report.run(
        "no-unexpected-errors",
        "every failure was a conflict, a stale read, a serializable abort or lack of funds",
        || {
            if s.unexpected.is_empty() {
                Ok(String::new())
            } else {
                Err(Stop::Fail(s.unexpected.join("\n")))
            }
        },
    );
    report.run(
        "made-progress",
        "transfers committed under contention",
        || {
            if s.commits > 0 {
                Ok(format!("{} commits", s.commits))
            } else {
                Err(Stop::Fail("no transfer committed".into()))
            }
        },
    );
    let balances: Result<Vec<u64>> = (0..cfg.accounts)
        .map(|i| {
            client
                .get(&acct(&prefix, i))
                .map(|v| parse(&v).unwrap_or(u64::MAX))
        })
        .collect();
    let balances = balances?;
    report.run(
        "total-unchanged",
        "the sum of all balances is what it was",
        || {
            let total: u64 = balances.iter().sum();
            expect_eq("total balance", total, INITIAL * cfg.accounts as u64)?;
            Ok(format!("{total} over {} accounts", cfg.accounts))
        },
    );
    let ledger: BTreeMap<Vec<u8>, Vec<u8>> = client
        .snapshot(&[&prefix[..], b"ledger/"].concat())?
        .into_iter()
        .collect();
    report.run(
        "commits-visible",
        "every reported commit is visible, and nothing else is",
        || {
            let mut problems = Vec::new();
            let mut replay = vec![INITIAL as i64; cfg.accounts];
            for t in logs.iter().flat_map(|l| &l.transfers) {
                let want = format!("{} {} {}", t.from, t.to, t.amount).into_bytes();
                match (t.committed, ledger.get(&t.ledger)) {
                    (true, Some(v)) if *v == want => {
                        replay[t.from] -= t.amount as i64;
                        replay[t.to] += t.amount as i64;
                    }
                    (true, got) => problems.push(format!(
                        "committed {} shows {:?}",
                        crate::client::show(&t.ledger),
                        got.map(|v| crate::client::show(v))
                    )),
                    (false, Some(_)) => problems.push(format!(
                        "failed commit {} is visible",
                        crate::client::show(&t.ledger)
                    )),
                    (false, None) => {}
                }
            }
            let reported = s.commits as usize;
            if ledger.len() != reported {
                problems.push(format!(
                    "{} ledger entries for {reported} reported commits",
                    ledger.len()
                ));
            }
            let finals: Vec<i64> = balances.iter().map(|b| *b as i64).collect();
            if finals != replay {
                problems.push("balances differ from replaying the committed ledger".into());
            }
            if problems.is_empty() {
                Ok(format!(
                    "{reported} ledger entries replay to the final balances"
                ))
            } else {
                Err(Stop::Fail(problems.join("\n")))
            }
        },
    );
    let stats_after = client.stats()?;
    report.run(
        "driver-counters",
        "no live transactions left; the driver counted every commit",
        || {
            expect_none_left_live(&stats_before, &stats_after)?;
            let commits = stats_after.commits - stats_before.commits;
            if transport.kind() == TransportKind::Sim {
                expect_eq("commits counted", commits, s.commits)?;
            } else if commits < s.commits {
                return Err(Stop::Fail(format!(
                    "driver counted {commits} commits, we saw {}",
                    s.commits
                )));
            }
            Ok(format!(
                "{commits} commits, {} conflicts counted",
                stats_after.conflicts - stats_before.conflicts
            ))
        },
    );
    report.run(
        "protocol-clean",
        "the simulator's KTM protocol checker saw no violation",
        || {
            let v = transport.violations();
            if v.is_empty() {
                Ok(String::new())
            } else {
                Err(Stop::Fail(v.join("\n")))
            }
        },
    );
    if transport.kind() == TransportKind::Device {
        client.delete_prefix(&prefix)?;
    }
    Ok((report, s))
}
