//! Windows only: one ktmw32 transaction over two resource managers — the transacted registry
//! (TxR, a durable RM) and ktmrm (a volatile RM on the driver's own TM) — committed or rolled
//! back together, enlisting in both orders. Whether KTM joins them without promotion is not
//! documented (docs/ktm.md §0, unverified), so these scenarios report what KTM does:
//! `STATUS_TRANSACTION_REQUIRED_PROMOTION` is explained and reported as a skip, a split outcome
//! (one RM committed, the other not) fails.

use super::scenarios::{Ctx, Scenario};
use super::{Step, Stop, fail};
use crate::client::TxSource;
use crate::status;
use crate::transport::{TransportKind, wide};
use ktmrm_proto::NtStatus;
use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, GetLastError};
use windows_sys::Win32::Storage::FileSystem::{CommitTransaction, RollbackTransaction};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_CURRENT_USER, KEY_QUERY_VALUE, KEY_SET_VALUE, REG_DWORD, REG_OPTION_NON_VOLATILE,
    RRF_RT_REG_DWORD, RegCloseKey, RegCreateKeyTransactedW, RegDeleteKeyValueW, RegGetValueW,
    RegSetValueExW,
};

/// Where the registry values go (HKCU needs no administrator rights).
const SUBKEY: &str = r"Software\ktmrm-test";
const PROMOTION: u32 = 6837; // ERROR_TRANSACTION_REQUIRED_PROMOTION

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "txr-commit-registry-first",
            rule: "registry value + ktmrm key in one transaction, registry enlisted first: commit applies both",
            run: |c| txr(c, true, true),
        },
        Scenario {
            name: "txr-commit-ktmrm-first",
            rule: "registry value + ktmrm key in one transaction, ktmrm enlisted first: commit applies both",
            run: |c| txr(c, false, true),
        },
        Scenario {
            name: "txr-rollback-registry-first",
            rule: "registry value + ktmrm key, registry first: rollback discards both",
            run: |c| txr(c, true, false),
        },
        Scenario {
            name: "txr-rollback-ktmrm-first",
            rule: "registry value + ktmrm key, ktmrm first: rollback discards both",
            run: |c| txr(c, false, false),
        },
    ]
}

fn win32(what: &str, code: u32) -> Stop {
    if code == PROMOTION {
        return Stop::Skip(format!(
            "{what}: KTM answered ERROR_TRANSACTION_REQUIRED_PROMOTION (STATUS_TRANSACTION_REQUIRED_PROMOTION): \
             joining the durable registry RM and ktmrm's volatile RM in one transaction would need \
             promotion to a distributed (DTC) transaction, which KTM will not do here. The two cannot \
             commit atomically on this system without DTC."
        ));
    }
    let mapped = status::from_win32(code)
        .map(|s| format!(" (≈ {})", status::describe(s)))
        .unwrap_or_default();
    Stop::Fail(format!("{what}: Win32 error {code}{mapped}"))
}

/// Writes `name` = `value` under HKCU\SUBKEY through a key opened in transaction `tx`.
pub(super) fn reg_write(tx: u64, name: &str, value: u32) -> Result<(), Stop> {
    let (sub, name) = (wide(SUBKEY), wide(name));
    let mut key: HKEY = std::ptr::null_mut();
    let mut disposition = 0;
    // SAFETY: valid NUL-terminated strings and out-pointers; `tx` is a transaction handle this
    // process owns (docs/ktm.md §6).
    let r = unsafe {
        RegCreateKeyTransactedW(
            HKEY_CURRENT_USER,
            sub.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE | KEY_QUERY_VALUE,
            std::ptr::null(),
            &mut key,
            &mut disposition,
            crate::transport::device_handle(tx),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(win32("RegCreateKeyTransactedW", r));
    }
    let data = value.to_le_bytes();
    // SAFETY: `key` is open; `data` holds 4 bytes for REG_DWORD.
    let r = unsafe { RegSetValueExW(key, name.as_ptr(), 0, REG_DWORD, data.as_ptr(), 4) };
    // SAFETY: closes the key opened above.
    unsafe { RegCloseKey(key) };
    if r != 0 {
        return Err(win32("RegSetValueExW", r));
    }
    Ok(())
}

/// Reads the committed value (non-transacted), `None` if absent.
fn reg_read(name: &str) -> Result<Option<u32>, Stop> {
    let (sub, name) = (wide(SUBKEY), wide(name));
    let mut data = 0u32;
    let mut len = 4u32;
    // SAFETY: valid strings; `data` has room for the 4 bytes RRF_RT_REG_DWORD allows.
    let r = unsafe {
        RegGetValueW(
            HKEY_CURRENT_USER,
            sub.as_ptr(),
            name.as_ptr(),
            RRF_RT_REG_DWORD,
            std::ptr::null_mut(),
            (&mut data as *mut u32).cast(),
            &mut len,
        )
    };
    match r {
        0 => Ok(Some(data)),
        ERROR_FILE_NOT_FOUND => Ok(None),
        e => Err(win32("RegGetValueW", e)),
    }
}

fn reg_delete(name: &str) {
    let (sub, name) = (wide(SUBKEY), wide(name));
    // SAFETY: valid strings; a missing value is fine.
    unsafe { RegDeleteKeyValueW(HKEY_CURRENT_USER, sub.as_ptr(), name.as_ptr()) };
}

fn txr(c: &Ctx, registry_first: bool, commit: bool) -> Step<String> {
    if c.client.kind() != TransportKind::Device {
        return Err(Stop::Skip(
            "needs the transacted registry and the real driver".into(),
        ));
    }
    let name = format!(
        "txr-{}-{}",
        if commit { "commit" } else { "rollback" },
        if registry_first {
            "reg-first"
        } else {
            "ktmrm-first"
        }
    );
    let ended_by = if commit {
        "CommitTransaction"
    } else {
        "RollbackTransaction"
    };
    let key = c.k("txr");
    reg_delete(&name);
    // A ktmw32 transaction, as an application using TxR would create it.
    let t = c.begin_from(TxSource::Ktmw32)?;
    let h = t.handle();
    if registry_first {
        reg_write(h, &name, 42)?;
        t.put(&key, b"42")?;
    } else {
        t.put(&key, b"42")?;
        reg_write(h, &name, 42)?;
    }
    // End it through ktmw32, as the application would.
    let tx = crate::transport::device_handle(h);
    // SAFETY: `tx` is the open transaction handle; the calls are synchronous.
    let ok = unsafe {
        if commit {
            CommitTransaction(tx)
        } else {
            RollbackTransaction(tx)
        }
    };
    let outcome = if ok != 0 {
        "ok".to_owned()
    } else {
        // SAFETY: reads the calling thread's last-error value.
        let code = unsafe { GetLastError() };
        if code == PROMOTION {
            return Err(win32(ended_by, code));
        }
        format!(
            "Win32 error {code}{}",
            status::from_win32(code)
                .map(|s| format!(" ({})", status::name(s)))
                .unwrap_or_default()
        )
    };
    drop(t);
    let reg = reg_read(&name)?;
    let kv = match c.client.get(&key) {
        Ok(v) => Some(v),
        Err(e) if e.status() == Some(NtStatus::OBJECT_NAME_NOT_FOUND) => None,
        Err(e) => return Err(e.into()),
    };
    reg_delete(&name);
    let report = format!(
        "{ended_by} → {outcome}; registry value {:?}, ktmrm key {:?}",
        reg,
        kv.as_deref().map(crate::client::show)
    );
    match (commit, ok != 0, reg.is_some(), kv.is_some()) {
        (true, true, true, true) | (false, true, false, false) => Ok(report),
        (true, false, false, false) => Err(Stop::Skip(format!(
            "KTM refused the commit and rolled both back: {report}"
        ))),
        _ => fail(format!("the two RMs disagree: {report}")),
    }
}
