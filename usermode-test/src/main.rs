//! `ktmrm-test`: the ktmrm client CLI and conformance harness. Exit status 0 only when every
//! check passed; 1 when a check or a request failed; 2 when the input (arguments, script)
//! cannot be used.

mod cli;
mod commands;
mod out;
mod outcome;

/// Counts allocated bytes, for the benchmark's memory per stored key.
#[global_allocator]
static ALLOC: ktmrm_bench::CountingAlloc = ktmrm_bench::CountingAlloc;

use clap::Parser;
use clap::error::ErrorKind;
use cli::Cli;
use ktmrm_client::Backend;
use outcome::CliError;
use serde_json::json;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Seen before parsing, so that an argument error is JSON too when --json was given.
    let json = std::env::args_os().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return argument_error(&e, json),
    };
    let backend = Backend::default_for_os(cli.sim);
    match commands::run(&cli, &backend) {
        Ok(verdict) => verdict.exit_code(),
        Err(e) => e.report(cli.json),
    }
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
            if json || kind == ErrorKind::InvalidUtf8 {
                return CliError::Usage(msg).report(json);
            }
            // clap's own rendering, with its usage line and hint.
            let _ = e.print();
            ExitCode::from(2)
        }
    }
}
