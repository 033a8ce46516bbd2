//! One function per subcommand; [`run`] picks the one the command line names.

mod bench;
mod crash;
mod scripts;
mod store;
mod suites;

use ktmrm_client::Backend;

use crate::cli::{Cli, Command};
use crate::out;
use crate::outcome::{Outcome, Verdict};

/// Runs the command `cli` names on `backend`.
pub fn run(cli: &Cli, backend: &Backend) -> Outcome {
    match &cli.command {
        Command::Version => store::version(cli, backend),
        Command::Stats => store::stats(cli, backend),
        Command::Put { key, value, tx } => store::put(cli, backend, key, value, tx.as_deref()),
        Command::Get { key, tx } => store::get(cli, backend, key, tx.as_deref()),
        Command::Delete { key, tx } => store::delete(cli, backend, key, tx.as_deref()),
        Command::List { prefix, tx } => store::list(cli, backend, prefix, tx.as_deref()),
        Command::Script { file, expect } => scripts::script(cli, backend, file, expect.as_deref()),
        Command::Replay { file } => scripts::replay(backend, file),
        Command::Scenarios { names, list } => suites::scenarios(cli, backend, names, *list),
        Command::BadInput => suites::bad_input(cli, backend),
        Command::Stress {
            threads,
            seconds,
            accounts,
        } => suites::stress(cli, backend, *threads, *seconds, *accounts),
        Command::CrashMatrix { names, list, quick } => crash::matrix(cli, names, *list, *quick),
        Command::Bench {
            durable: true,
            quick,
            dir,
            ..
        } => bench::durable(cli, backend, *quick, dir.as_deref()),
        Command::Bench {
            iterations, quick, ..
        } => bench::latency(cli, backend, *iterations, *quick),
    }
}

/// Prints a command's result: `text`, or `value` with `--json`.
fn done(cli: &Cli, text: String, value: serde_json::Value) -> Verdict {
    if cli.json {
        out::line(value);
    } else {
        out::line(text);
    }
    Verdict::Passed
}
