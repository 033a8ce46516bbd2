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
        Command::Put {
            key,
            value,
            tx,
            isolation,
        } => store::put(cli, backend, key, value, store::tx_arg(tx, *isolation)),
        Command::Get { key, tx, isolation } => {
            store::get(cli, backend, key, store::tx_arg(tx, *isolation))
        }
        Command::Delete { key, tx, isolation } => {
            store::delete(cli, backend, key, store::tx_arg(tx, *isolation))
        }
        Command::List {
            prefix,
            tx,
            isolation,
        } => store::list(cli, backend, prefix, store::tx_arg(tx, *isolation)),
        Command::Script { file, expect } => scripts::script(cli, backend, file, expect.as_deref()),
        Command::Replay { file } => scripts::replay(backend, file),
        Command::Scenarios { names, list } => suites::scenarios(cli, backend, names, *list),
        Command::BadInput => suites::bad_input(cli, backend),
        Command::Stress {
            threads,
            seconds,
            accounts,
            isolation,
        } => suites::stress(
            cli,
            backend,
            (*threads, *seconds, *accounts),
            isolation.isolation(),
        ),
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
