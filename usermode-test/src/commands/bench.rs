//! `bench`: latency through the transport and the engine suite, or the durable suite.

use std::path::Path;

use ktmrm_client::suite::bench;
use ktmrm_client::transport::TransportKind;
use ktmrm_client::{Backend, Error};
use serde_json::json;

use super::done;
use crate::cli::Cli;
use crate::outcome::{Outcome, Verdict, usage};

/// Per-operation latency through the transport; on the simulator also the engine suite.
pub fn latency(cli: &Cli, backend: &Backend, iterations: usize, quick: bool) -> Outcome {
    if !(1..=1_000_000).contains(&iterations) {
        return usage(format!(
            "--iterations {iterations} is out of range: use 1–1,000,000"
        ));
    }
    let r = bench::run(backend.connect()?, iterations)?;
    let mut json = serde_json::to_value(&r).unwrap_or_default();
    let mut human = r.human();
    // The engine suite's targets are its checks; on the device it does not run.
    let (mut passed, mut failed, mut skipped) = (0, 0, 1);
    if backend.kind() == TransportKind::Sim {
        let cfg = if quick {
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
    Ok(verdict(
        cli,
        "bench",
        human,
        json,
        [passed, failed, skipped],
    ))
}

/// The durable suite (`bench --durable`, simulator only), its files in `dir` or a temporary
/// directory.
pub fn durable(cli: &Cli, backend: &Backend, quick: bool, dir: Option<&Path>) -> Outcome {
    if backend.kind() != TransportKind::Sim {
        return usage("bench --durable runs on the simulated device: add --sim");
    }
    let temp;
    let dir = match dir {
        Some(d) => {
            // The suite writes files there: say now, and clearly, if it cannot.
            let usable =
                std::fs::create_dir_all(d).and_then(|()| tempfile::tempfile_in(d).map(drop));
            if let Err(e) = usable {
                return usage(format!(
                    "--dir {}: cannot write files there: {e}",
                    d.display()
                ));
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
    Ok(verdict(
        cli,
        "bench --durable",
        human,
        json,
        [passed, failed, 0],
    ))
}

/// Ends a bench run: its targets as checks, `[passed, failed, skipped]`, in the closing line
/// and in the JSON; the verdict fails when a target was missed.
fn verdict(
    cli: &Cli,
    what: &str,
    mut human: String,
    mut json: serde_json::Value,
    [passed, failed, skipped]: [usize; 3],
) -> Verdict {
    human.push_str(&format!(
        "{what}: {passed} passed, {failed} failed, {skipped} skipped"
    ));
    if let Some(obj) = json.as_object_mut() {
        obj.insert("passed".into(), json!(passed));
        obj.insert("failed".into(), json!(failed));
        obj.insert("skipped".into(), json!(skipped));
    }
    done(cli, human, json);
    Verdict::of(failed == 0)
}
