//! Allocation-failure injection over the conformance scenarios: while a scenario runs against
//! the simulated device, the engine's Nth allocation fails (only the engine's: the simulator
//! marks when engine code runs, see `ktm_sim::alloc_scope`), for every N until the scenario
//! completes without reaching it. Every run must end without a crash,
//! with the KTM protocol checker clean (each notification answered, no enlistment or reference
//! leaked), no live transaction left, and STATS agreeing with what LIST and GET show. A run in
//! which the failure point is never reached must pass outright.

mod common;

use ktm_sim::alloc_scope::engine_running;
use ktmrm_client::Client;
use ktmrm_client::suite::{Verdict, scenarios};
use ktmrm_client::transport::{Backend, SimConfig, SimTransport, Transport};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

struct FailingAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static FAIL_AT: Cell<u64> = const { Cell::new(u64::MAX) };
}

// SAFETY: forwards to the system allocator; the bookkeeping uses const thread-locals only.
unsafe impl GlobalAlloc for FailingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) && engine_running() {
            let n = COUNT.with(|c| c.replace(c.get() + 1));
            if n == FAIL_AT.with(Cell::get) {
                return std::ptr::null_mut();
            }
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: FailingAlloc = FailingAlloc;

#[test]
fn engine_allocation_failures_during_every_scenario_are_clean() {
    let names: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
    let mut injected = 0u64;
    for name in &names {
        for fail_at in 0.. {
            let devices: Arc<Mutex<Vec<Arc<SimTransport>>>> = Arc::default();
            let held = devices.clone();
            let connect = move || {
                let t = Arc::new(SimTransport::new(SimConfig::default()));
                held.lock().unwrap().push(t.clone());
                Ok(t as Arc<dyn Transport>)
            };
            COUNT.with(|c| c.set(0));
            FAIL_AT.with(|f| f.set(fail_at));
            ARMED.with(|a| a.set(true));
            let report = scenarios::run_with(
                &Backend::Sim(SimConfig::default()),
                &[name.to_string()],
                connect,
            );
            ARMED.with(|a| a.set(false));
            let hit = COUNT.with(Cell::get) > fail_at;
            let report = report.unwrap_or_else(|e| panic!("{name} @{fail_at}: {e}"));
            for t in devices.lock().unwrap().iter() {
                let v = t.device().finish();
                assert!(v.is_empty(), "{name} @{fail_at}: {v:?}");
                let client = Client::new(t.clone() as Arc<dyn Transport>).unwrap();
                let s = client.stats().unwrap();
                assert_eq!(
                    s.live_transactions, 0,
                    "{name} @{fail_at}: live transaction left"
                );
                let snap = client.snapshot(b"").unwrap();
                let bytes: usize = snap.iter().map(|(k, v)| k.len() + v.len()).sum();
                assert_eq!(
                    (s.keys, s.bytes),
                    (snap.len() as u64, bytes as u64),
                    "{name} @{fail_at}"
                );
            }
            if !hit {
                let c = &report.checks[0];
                assert_eq!(
                    c.verdict,
                    Verdict::Pass,
                    "{name} without injection: {}",
                    c.detail
                );
                break;
            }
            injected += 1;
        }
    }
    eprintln!(
        "allocation failures injected across {} scenarios: {injected}",
        names.len()
    );
    common::assert_readme_says(&format!(
        "all {} conformance scenarios on the simulated device ({} points)",
        names.len(),
        ktmrm_client::client::grouped(injected as usize)
    ));
}
