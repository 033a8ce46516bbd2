//! Everything `ktmrm-test` prints goes through here, so that a closed standard output (`| head`)
//! ends the program at once and quietly, with status 141 — what a shell reports for a Unix tool
//! stopped by SIGPIPE — instead of a panic (`println!` panics when its write fails). Any other
//! failure to write standard output is reported on standard error and ends with status 1.

use std::io::{self, Write};

/// The exit status after a closed standard output: 128 + SIGPIPE (13).
pub const CLOSED_PIPE_STATUS: i32 = 141;

/// Writes `text` to standard output as is.
pub fn print(text: &str) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        failed(&e);
    }
}

/// Writes `text` and a newline to standard output.
pub fn line(text: impl std::fmt::Display) {
    print(&format!("{text}\n"));
}

/// Writes `text` and a newline to standard error. A closed standard error has nowhere to report
/// to, so its failure is ignored.
pub fn error_line(text: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

fn failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(CLOSED_PIPE_STATUS);
    }
    error_line(format!("ktmrm-test: cannot write standard output: {e}"));
    std::process::exit(1);
}
