//! Command-line arguments of `ktmrm-test`.

use clap::{Parser, Subcommand};

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
    /// Write a key. Keys and values accept \xNN escapes.
    Put {
        /// Key (1–255 bytes).
        key: String,
        /// Value (0–65,536 bytes).
        value: String,
        /// NAME: run in a new transaction with that description and commit it; HANDLE (a
        /// number, 0x… allowed): pass that handle value as is.
        #[arg(long)]
        tx: Option<String>,
    },
    /// Read a key.
    Get {
        /// Key.
        key: String,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
    },
    /// Delete a key.
    Delete {
        /// Key.
        key: String,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
    },
    /// List keys with a prefix (all pages).
    List {
        /// Prefix (empty = every key).
        #[arg(default_value = "")]
        prefix: String,
        /// As for put.
        #[arg(long)]
        tx: Option<String>,
    },
    /// Run a script (FILE, or - for standard input); one output line per command.
    Script {
        /// Script path or -.
        file: String,
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
        /// Worker threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Accounts to transfer between.
        #[arg(long, default_value_t = 16)]
        accounts: usize,
    },
    /// Crash a simulated durable machine at every step of every protocol path of the crash
    /// scenarios, restart it, and check recovery (always on the simulator).
    CrashMatrix {
        /// Scenario names (default: all); see --list.
        names: Vec<String>,
        /// List the scenarios, then exit.
        #[arg(long)]
        list: bool,
        /// Inline delivery only and no second crash during recovery (about a sixth of the runs).
        #[arg(long)]
        quick: bool,
    },
    /// Per-operation latency percentiles through the transport; with the simulator also the
    /// engine suite: baselines measured in the same run, ratios, targets, memory per key.
    Bench {
        /// Timed iterations per operation.
        #[arg(long, default_value_t = 2000)]
        iterations: usize,
        /// A smaller engine suite (seconds instead of tens of seconds; ratios less stable).
        #[arg(long)]
        quick: bool,
    },
}
