//! Panic-path probe. The driver's kernel-path code (ktmrm-core and ktmrm-proto) is instantiated
//! here with concrete types, as the driver does, and built `no_std` with the release profile
//! (panic = abort, LTO). The panic handler calls `ktmrm_panic_path_reached`, a symbol defined
//! nowhere: every panic path the optimizer could not prove unreachable leaves a reference to it
//! in the archive. `scripts/panic-paths.sh` counts those references and names the functions
//! that hold them. The write-ahead log's replay and encoding are instantiated too, and the durable
//! engine over the file log as the driver builds it (recovery, dispatch, notifications, RECOVER,
//! checkpoint).
#![cfg_attr(not(test), no_std)]
// Under `cargo test` the panic handler and allocator are std's, so theirs go unused.
#![cfg_attr(test, allow(dead_code))]

use core::alloc::{GlobalAlloc, Layout};
use ktmrm_core::port::{Answer, EnlistmentKey, KtmPort, Notification, TxId};
use ktmrm_core::{Engine, SpinLock, State, wal};
use ktmrm_proto::{Limits, NtStatus};

unsafe extern "C" {
    fn ktmrm_panic_path_reached() -> !;
    fn malloc(size: usize) -> *mut u8;
    fn free(p: *mut u8);
    fn ktmrm_probe_port_call(what: u32, a: u64) -> i32;
    fn ktmrm_probe_file_call(what: u32, offset: u64, buf: *mut u8, len: usize) -> i64;
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: never defined; a reference to it marks a surviving panic path.
    unsafe { ktmrm_panic_path_reached() }
}

/// The host allocator; allocation failure returns null, which the engine handles.
struct Malloc;

// SAFETY: forwards to malloc/free, which honour the 16-byte alignment every engine type needs.
unsafe impl GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C allocation.
        unsafe { malloc(layout.size()) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        // SAFETY: `ptr` came from malloc.
        unsafe { free(ptr) }
    }
}

#[cfg(not(test))]
#[global_allocator]
static ALLOC: Malloc = Malloc;

/// A port whose every call goes to an opaque external function, so nothing is constant-folded.
pub struct ProbePort;

fn call(what: u32, a: u64) -> i32 {
    // SAFETY: an opaque external function taking plain integers.
    unsafe { ktmrm_probe_port_call(what, a) }
}

impl KtmPort for ProbePort {
    type Caller = u32;
    type TxRef = u64;
    type Enlistment = u64;
    type Target = u64;

    fn reference_transaction(&self, _: &u32, handle: u64) -> Result<(u64, TxId), NtStatus> {
        match call(1, handle) {
            0 => Ok((
                handle,
                TxId(handle.to_le_bytes().repeat(2).try_into().unwrap_or([0; 16])),
            )),
            st => Err(NtStatus(st)),
        }
    }
    fn enlist(&self, tx: &u64, key: EnlistmentKey, _: u32) -> Result<u64, NtStatus> {
        match call(2, tx ^ key.0) {
            0 => Ok(key.0),
            st => Err(NtStatus(st)),
        }
    }
    fn close_enlistment(&self, e: u64) {
        call(3, e);
    }
    fn answer(&self, t: &u64, a: Answer) -> NtStatus {
        NtStatus(call(4, t ^ a as u64))
    }
    fn create_transaction(&self, _: &u32, timeout: u32, _: &[u8]) -> Result<u64, NtStatus> {
        match call(5, u64::from(timeout)) {
            0 => Ok(8),
            st => Err(NtStatus(st)),
        }
    }
    fn yield_now(&self) {
        call(6, 0);
    }
}

/// The engine as the probe instantiates it.
pub type ProbeEngine = Engine<ProbePort, SpinLock<State<u64>>>;

static ENGINE: ProbeEngine = Engine::new(SpinLock::new(State::new(Limits {
    max_live_transactions: 4096,
    max_write_set: 65_536,
    max_keys: 4_000_000,
    max_bytes: 1 << 30,
})));

/// IOCTL entry, as the driver's IRP_MJ_DEVICE_CONTROL calls it.
///
/// # Safety
/// `buffer` must point to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktmrm_probe_dispatch(
    code: u32,
    buffer: *mut u8,
    len: usize,
    input_len: usize,
    output_len: usize,
    information: *mut usize,
) -> i32 {
    let buf: &mut [u8] = if buffer.is_null() {
        &mut []
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(buffer, len) }
    };
    let (st, n) = ENGINE.dispatch(&ProbePort, &1, code, buf, input_len, output_len);
    if !information.is_null() {
        // SAFETY: the caller's contract.
        unsafe { information.write(n) };
    }
    st.0
}

/// Notification entry, as the driver's KTM callback calls it.
#[unsafe(no_mangle)]
pub extern "C" fn ktmrm_probe_notify(key: u64, notification: u32, target: u64) -> i32 {
    ENGINE
        .notify(
            &ProbePort,
            EnlistmentKey(key),
            Notification::from_bits(notification),
            &target,
        )
        .0
}

/// Log replay entry, as the driver's recovery at start runs it: `buf` holds consecutive records
/// as a log file stores them. Returns the number of records replayed, or the error's status.
///
/// # Safety
/// `buf` must point to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktmrm_probe_wal_replay(buf: *const u8, len: usize) -> i64 {
    let bytes: &[u8] = if buf.is_null() {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(buf, len) }
    };
    let mut r = wal::Replayer::new(None);
    let mut rest = bytes;
    let mut lsn = wal::Lsn::FIRST;
    while !rest.is_empty() {
        let n = wal::frame_len(rest).unwrap_or(rest.len()).min(rest.len());
        let (frame, tail) = rest.split_at(n);
        if let Err(e) = r.feed(lsn, frame) {
            return i64::from(e.status().0);
        }
        rest = tail;
        lsn = lsn.next();
    }
    match r.finish() {
        Ok(rec) => i64::try_from(rec.records).unwrap_or(i64::MAX),
        Err(e) => i64::from(e.status().0),
    }
}

/// Log append entry, as PREPARE logs a write set: encodes one Prepare record into `out`.
///
/// # Safety
/// `key`/`value` must point to `key_len`/`value_len` readable bytes, `out` to `out_len`
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktmrm_probe_wal_encode(
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    out: *mut u8,
    out_len: usize,
) -> i64 {
    if key.is_null() || value.is_null() || out.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract (all three checked non-null).
    let (k, v, o) = unsafe {
        (
            core::slice::from_raw_parts(key, key_len),
            core::slice::from_raw_parts(value, value_len),
            core::slice::from_raw_parts_mut(out, out_len),
        )
    };
    let writes: &[(&[u8], Option<&[u8]>)] = &[(k, Some(v))];
    let rec = wal::RecordRef::Prepare {
        tx: TxId([7; 16]),
        writes: &writes,
    };
    match wal::encode_into(&rec, wal::Lsn::FIRST, o) {
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(st) => i64::from(st.0),
    }
}

/// A log file whose every call goes to an opaque external function.
struct ProbeFile;

fn file_call(what: u32, offset: u64, buf: *mut u8, len: usize) -> Result<i64, NtStatus> {
    // SAFETY: an opaque external function; `buf` is valid for `len` bytes (or null with 0).
    let r = unsafe { ktmrm_probe_file_call(what, offset, buf, len) };
    if r < 0 {
        Err(NtStatus(i32::try_from(r).unwrap_or(i32::MIN)))
    } else {
        Ok(r)
    }
}

impl wal::FileIo for ProbeFile {
    fn len(&self) -> Result<u64, NtStatus> {
        file_call(1, 0, core::ptr::null_mut(), 0).map(|n| n.unsigned_abs())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, NtStatus> {
        let n = file_call(2, offset, buf.as_mut_ptr(), buf.len())?;
        Ok(usize::try_from(n).unwrap_or(0).min(buf.len()))
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), NtStatus> {
        file_call(3, offset, data.as_ptr().cast_mut(), data.len()).map(drop)
    }
    fn flush(&self) -> Result<(), NtStatus> {
        file_call(4, 0, core::ptr::null_mut(), 0).map(drop)
    }
    fn truncate(&self, len: u64) -> Result<(), NtStatus> {
        file_call(5, len, core::ptr::null_mut(), 0).map(drop)
    }
    fn replace(&self, data: &[u8]) -> Result<(), NtStatus> {
        file_call(6, 0, data.as_ptr().cast_mut(), data.len()).map(drop)
    }
}

/// The durable engine as the driver builds it: state recovered from the file log, then one
/// request, one notification, one RECOVER and a checkpoint. Returns the last status.
///
/// # Safety
/// `buffer` must point to `len` writable bytes (or be null).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ktmrm_probe_durable(
    code: u32,
    buffer: *mut u8,
    len: usize,
    input_len: usize,
    key: u64,
    notification: u32,
    uow: u64,
) -> i32 {
    let log = match wal::FileLog::open(
        ProbeFile,
        SpinLock::new(wal::FileLogState::new()),
        SpinLock::new(()),
    ) {
        Ok(l) => l,
        Err(st) => return st.0,
    };
    let limits = Limits {
        max_live_transactions: 4096,
        max_write_set: 65_536,
        max_keys: 4_000_000,
        max_bytes: 1 << 30,
    };
    let state = match State::<u64>::recover(limits, &log) {
        Ok((s, _)) => s,
        Err(e) => return e.status().0,
    };
    let engine: Engine<ProbePort, SpinLock<State<u64>>, _> =
        Engine::with_log(SpinLock::new(state), log);
    let buf: &mut [u8] = if buffer.is_null() {
        &mut []
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(buffer, len) }
    };
    let _ = engine.dispatch(&ProbePort, &1, code, buf, input_len, len);
    let _ = engine.notify(
        &ProbePort,
        EnlistmentKey(key),
        Notification::from_bits(notification),
        &key,
    );
    let mut id = [0u8; 16];
    id.iter_mut()
        .zip(uow.to_le_bytes().iter().cycle())
        .for_each(|(d, s)| *d = *s);
    let st = engine.recover(&ProbePort, TxId(id), &key);
    match engine.checkpoint() {
        Ok(_) => st.0,
        Err(e) => e.0,
    }
}
