//! `script` (commands in the script language, optionally compared with an expected output) and
//! `replay` (a trace of raw requests).

use std::io::Read;
use std::path::Path;

use ktmrm_client::{Backend, Client, diff, script};
use serde_json::json;

use crate::cli::Cli;
use crate::out;
use crate::outcome::{CliError, Outcome, Verdict, usage};

pub fn script(cli: &Cli, backend: &Backend, file: &Path, expect: Option<&Path>) -> Outcome {
    let src = read_text(file)?;
    let expected = expect.map(read_text).transpose()?;
    let name = file.display();
    let lines = script::parse(&src).or_else(|e| usage(format!("{name}: {e}")))?;
    let client = Client::new(backend.connect()?)?;
    let results = script::run(&client, &lines).or_else(|e| usage(format!("{name}: {e}")))?;
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
    Ok(Verdict::of(mismatch.is_none()))
}

pub fn replay(backend: &Backend, file: &Path) -> Outcome {
    let src = read_text(file)?;
    let answers = ktmrm_client::replay::run(&*backend.connect()?, &src)
        .or_else(|e| usage(format!("{}: {}", file.display(), e.0)))?;
    for a in answers {
        out::line(a);
    }
    Ok(Verdict::Passed)
}

/// Reads a script, trace or expected-output file (`-`: standard input) as text.
fn read_text(path: &Path) -> Result<String, CliError> {
    let mut raw = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_end(&mut raw).map(drop)
    } else {
        std::fs::read(path).map(|b| raw = b)
    };
    read.or_else(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    script::decode(&raw).or_else(|e| usage(format!("{}: {e}", path.display())))
}
