//! Windows only: a transaction of the Distributed Transaction Coordinator (MSDTC) whose KTM
//! transaction carries a ktmrm write, committed or aborted by DTC (the promoted path).
//!
//! DTC begins the transaction (`ITransactionDispenser::BeginTransaction`) and hands out its KTM
//! transaction (`IKernelTransaction::GetHandle`); KTM is the subordinate and DTC the superior
//! (docs/ktm.md §1, S9, S20): ktmrm gets PREPREPARE, PREPARE and COMMIT or ROLLBACK as in
//! any two-phase commit, never single-phase commit. Skipped when MSDTC is not running (start it
//! with `net start msdtc`) or when KTM refuses to join ktmrm's own TM to it (reported as found).
//!
//! The COM interfaces are called through their vtables (windows-sys declares functions, not
//! interfaces); each layout below is the IDL's method order after IUnknown's three.

use super::scenarios::{Ctx, Scenario};
use super::{Step, Stop, fail};
use crate::transport::TransportKind;
use ktmrm_proto::NtStatus;
use std::ffi::c_void;
use std::ptr::null_mut;
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::DistributedTransactionCoordinator::{
    DtcGetTransactionManagerExW, ISOLATIONLEVEL_READCOMMITTED, XACTTC_SYNC,
};
use windows_sys::core::{GUID, HRESULT};

/// `IID_ITransactionDispenser` (transact.h).
const IID_ITRANSACTION_DISPENSER: GUID = GUID::from_u128(0x3a6ad9e1_23b9_11cf_ad60_00aa00a74ccd);
/// `IID_IKernelTransaction` (txdtc.h).
const IID_IKERNEL_TRANSACTION: GUID = GUID::from_u128(0x79427a2b_f895_40e0_be79_b57dc82ed231);

#[repr(C)]
struct UnknownVtbl {
    query_interface:
        unsafe extern "system" fn(*mut c_void, *const GUID, *mut *mut c_void) -> HRESULT,
    add_ref: unsafe extern "system" fn(*mut c_void) -> u32,
    release: unsafe extern "system" fn(*mut c_void) -> u32,
}

/// `ITransactionDispenser`: GetOptionsObject, BeginTransaction.
#[repr(C)]
struct DispenserVtbl {
    unknown: UnknownVtbl,
    get_options_object: usize,
    begin_transaction: unsafe extern "system" fn(
        *mut c_void,
        *mut c_void,
        i32,
        u32,
        *mut c_void,
        *mut *mut c_void,
    ) -> HRESULT,
}

/// `ITransaction`: Commit, Abort, GetTransactionInfo.
#[repr(C)]
struct TransactionVtbl {
    unknown: UnknownVtbl,
    commit: unsafe extern "system" fn(*mut c_void, i32, u32, u32) -> HRESULT,
    abort: unsafe extern "system" fn(*mut c_void, *mut c_void, i32, i32) -> HRESULT,
    get_transaction_info: usize,
}

/// `IKernelTransaction`: GetHandle.
#[repr(C)]
struct KernelTransactionVtbl {
    unknown: UnknownVtbl,
    get_handle: unsafe extern "system" fn(*mut c_void, *mut HANDLE) -> HRESULT,
}

/// An owned COM interface pointer with vtable `V`, released on drop.
struct Com<V> {
    ptr: *mut c_void,
    _vtbl: std::marker::PhantomData<V>,
}

impl<V> Com<V> {
    fn new(ptr: *mut c_void) -> Option<Self> {
        (!ptr.is_null()).then_some(Com {
            ptr,
            _vtbl: std::marker::PhantomData,
        })
    }

    fn vtbl(&self) -> &V {
        // SAFETY: a COM object starts with a pointer to its vtable, whose layout `V` mirrors.
        unsafe { &**self.ptr.cast::<*const V>() }
    }

    fn unknown(&self) -> &UnknownVtbl {
        // SAFETY: every vtable starts with IUnknown's three methods.
        unsafe { &**self.ptr.cast::<*const UnknownVtbl>() }
    }

    fn query<W>(&self, iid: &GUID) -> Result<Com<W>, HRESULT> {
        let mut out = null_mut();
        // SAFETY: QueryInterface on a live object with a valid IID and out-pointer.
        let hr = unsafe { (self.unknown().query_interface)(self.ptr, iid, &mut out) };
        if hr < 0 {
            return Err(hr);
        }
        Com::new(out).ok_or(hr)
    }
}

impl<V> Drop for Com<V> {
    fn drop(&mut self) {
        // SAFETY: releases the one reference this wrapper owns.
        unsafe { (self.unknown().release)(self.ptr) };
    }
}

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "dtc-promoted-commit",
            rule: "a ktmrm write in an MSDTC transaction (KTM subordinate) is applied when DTC commits",
            run: |c| dtc(c, true),
        },
        Scenario {
            name: "dtc-promoted-abort",
            rule: "a ktmrm write in an MSDTC transaction is discarded when DTC aborts",
            run: |c| dtc(c, false),
        },
    ]
}

fn hr_text(hr: HRESULT) -> String {
    format!("HRESULT 0x{:08X}", hr as u32)
}

fn dtc(c: &Ctx, commit: bool) -> Step<String> {
    if c.client.kind() != TransportKind::Device {
        return Err(Stop::Skip("needs MSDTC and the real driver".into()));
    }
    let mut out = null_mut();
    // SAFETY: local host and default TM (NULLs), a valid IID and out-pointer.
    let hr = unsafe {
        DtcGetTransactionManagerExW(
            std::ptr::null(),
            std::ptr::null(),
            &IID_ITRANSACTION_DISPENSER,
            0,
            null_mut(),
            &mut out,
        )
    };
    let Some(dispenser) = (hr >= 0).then(|| Com::<DispenserVtbl>::new(out)).flatten() else {
        return Err(Stop::Skip(format!(
            "MSDTC is not available ({}); start it with `net start msdtc`",
            hr_text(hr)
        )));
    };
    let mut out = null_mut();
    // SAFETY: BeginTransaction(punkOuter NULL, read committed, no flags, no options, out).
    let hr = unsafe {
        (dispenser.vtbl().begin_transaction)(
            dispenser.ptr,
            null_mut(),
            ISOLATIONLEVEL_READCOMMITTED,
            0,
            null_mut(),
            &mut out,
        )
    };
    let Some(tx) = (hr >= 0)
        .then(|| Com::<TransactionVtbl>::new(out))
        .flatten()
    else {
        return fail(format!(
            "ITransactionDispenser::BeginTransaction: {}",
            hr_text(hr)
        ));
    };
    let ktx: Com<KernelTransactionVtbl> = tx.query(&IID_IKERNEL_TRANSACTION).map_err(|hr| {
        Stop::Fail(format!(
            "QueryInterface(IKernelTransaction): {}",
            hr_text(hr)
        ))
    })?;
    let mut h: HANDLE = null_mut();
    // SAFETY: GetHandle on a live IKernelTransaction with a valid out-pointer; the handle is ours.
    let hr = unsafe { (ktx.vtbl().get_handle)(ktx.ptr, &mut h) };
    if hr < 0 || h.is_null() {
        return fail(format!("IKernelTransaction::GetHandle: {}", hr_text(hr)));
    }
    let key = c.k("dtc");
    let put = c.client.put_in(h as u64, &key, b"dtc");
    let end = if put.is_ok() {
        if commit {
            // SAFETY: Commit(fRetaining FALSE, XACTTC_SYNC, grfRM 0) on the live transaction.
            unsafe { (tx.vtbl().commit)(tx.ptr, 0, XACTTC_SYNC as u32, 0) }
        } else {
            // SAFETY: Abort(no reason, fRetaining FALSE, fAsync FALSE).
            unsafe { (tx.vtbl().abort)(tx.ptr, null_mut(), 0, 0) }
        }
    } else {
        // SAFETY: as above; nothing to keep after the failed write.
        unsafe { (tx.vtbl().abort)(tx.ptr, null_mut(), 0, 0) }
    };
    // SAFETY: closes the KTM transaction handle GetHandle gave this process.
    unsafe { CloseHandle(h) };
    if let Err(e) = put {
        if e.status() == Some(NtStatus::TRANSACTION_REQUIRED_PROMOTION) {
            return Err(Stop::Skip(format!(
                "KTM would not join ktmrm to the DTC transaction: {e}"
            )));
        }
        return Err(e.into());
    }
    let seen = match c.client.get(&key) {
        Ok(v) => Some(v),
        Err(e) if e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND) => None,
        Err(e) => return Err(e.into()),
    };
    let report = format!(
        "DTC {} → {}; ktmrm key {:?}",
        if commit { "Commit" } else { "Abort" },
        hr_text(end),
        seen.as_deref().map(crate::client::show)
    );
    match (commit, end >= 0, seen.is_some()) {
        (true, true, true) | (false, true, false) => Ok(report),
        _ => fail(report),
    }
}
