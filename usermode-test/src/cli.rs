//! Command-line arguments of `ktmrm-test`.

use clap::{Parser, Subcommand, ValueEnum};
use ktmrm_client::client::Isolation;
use std::ffi::OsString;
use std::path::PathBuf;

/// ktmrm client and conformance harness: talks to the ktmrm driver (\\.\KtmRm) on Windows, or to
/// the in-process simulated device with --sim (the only device off Windows).
#[derive(Debug, Parser)]
#[command(name = "ktmrm-test", version, about, long_about = None)]
pub struct Cli {
    /// Use the simulated device (forced off Windows). Each run starts from an empty store.
    #[arg(long, global = true)]
    pub sim: bool,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Protocol version and limits (GET_VERSION).
    Version,
    /// Driver counters (STATS).
    Stats,
    /// Write a key. Keys, values and prefixes are bytes: any bytes the shell passes, plus \xNN
    /// escapes for any byte and \\ for a backslash.
    Put {
        /// Key (1–255 bytes).
        key: OsString,
        /// Value (0–65,536 bytes).
        value: OsString,
        /// NAME: run in a new transaction with that description and commit it; HANDLE (a
        /// number, 0x… allowed): pass that handle value as is.
        #[arg(long)]
        tx: Option<String>,
        /// The transaction's isolation level (with --tx): a new one is begun at it, a HANDLE's
        /// request states it (default: read-committed for a new one, not stated for a HANDLE).
        #[arg(long, value_enum, requires = "tx")]
        isolation: Option<Level>,
    },
    /// Read a key.
    Get {
        /// Key.
        key: OsString,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
        /// As for put.
        #[arg(long, value_enum, requires = "tx")]
        isolation: Option<Level>,
    },
    /// Delete a key.
    Delete {
        /// Key.
        key: OsString,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
        /// As for put.
        #[arg(long, value_enum, requires = "tx")]
        isolation: Option<Level>,
    },
    /// List keys with a prefix (all pages).
    List {
        /// Prefix (empty = every key).
        #[arg(default_value = "")]
        prefix: OsString,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
        /// As for put.
        #[arg(long, value_enum, requires = "tx")]
        isolation: Option<Level>,
    },
    /// Run a script (FILE, or - for standard input); one output line per command. `err` lines
    /// are results: the exit status is 0 once the script ran, unless --expect finds a difference.
    Script {
        /// Script path or -. UTF-8, or UTF-8/UTF-16 with a byte-order mark.
        file: PathBuf,
        /// Compare the output with this file (e.g. the script's .out): exit 0 when they match
        /// line for line, else print a unified diff and exit 1.
        #[arg(long, value_name = "OUT")]
        expect: Option<PathBuf>,
    },
    /// Replay a trace of raw requests and KTM actions (JSON lines; FILE or -) and print each
    /// step's status and output bytes as one JSON line.
    Replay {
        /// Trace path or -.
        file: PathBuf,
    },
    /// Run the conformance scenarios (all, or the NAMEs given).
    Scenarios {
        /// Scenario names.
        names: Vec<String>,
        /// List the scenarios and the rule each checks, then exit.
        #[arg(long)]
        list: bool,
    },
    /// Send every malformed request and check each answer, then that nothing changed.
    BadInput,
    /// Concurrent bank transfers in transactions, then consistency checks.
    Stress {
        /// Worker threads (1–256).
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Seconds to run (0.1–86,400).
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Accounts to transfer between (2–100,000).
        #[arg(long, default_value_t = 16)]
        accounts: usize,
        /// The transfers' isolation level: read-committed re-reads the balances under the
        /// write locks; serializable leaves that to the driver and retries aborts.
        #[arg(long, value_enum, default_value_t = Level::ReadCommitted)]
        isolation: Level,
    },
    /// Crash a simulated durable machine at every step of every protocol path of the crash
    /// scenarios, restart it, and check recovery (always on the simulator).
    CrashMatrix {
        /// Scenario names (default: all); see --list.
        names: Vec<String>,
        /// List the scenarios, then exit.
        #[arg(long)]
        list: bool,
        /// Inline delivery only, and no second crash during recovery (fewer runs; the summary
        /// counts them).
        #[arg(long)]
        quick: bool,
    },
    /// Per-operation latency percentiles through the transport; with the simulator also the
    /// engine suite: baselines measured in the same run, ratios, targets, memory per key.
    Bench {
        /// Timed iterations per operation (1–1,000,000).
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        /// A smaller engine suite: fewer operations and repetitions, smaller stores; its ratios
        /// vary more from run to run.
        #[arg(long)]
        quick: bool,
        /// Instead, the durable suite (simulator): the durable engine with its log in a real
        /// file, forces per commit at 1-8 committers, against the fsync floor and SQLite.
        #[arg(long)]
        durable: bool,
        /// Where the durable suite puts its files (default: a new directory in the system's
        /// temporary directory); SQLite's and the floor's go there too.
        #[arg(long, requires = "durable")]
        dir: Option<std::path::PathBuf>,
    },
}

/// A transaction's isolation level, as `--isolation` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// Reads see committed data; only writes conflict (the default).
    ReadCommitted,
    /// Commits only if every read is still what it was (README "Semantics").
    Serializable,
}

impl Level {
    /// The level requests state.
    #[must_use]
    pub fn isolation(self) -> Isolation {
        match self {
            Level::ReadCommitted => Isolation::ReadCommitted,
            Level::Serializable => Isolation::Serializable,
        }
    }
}
