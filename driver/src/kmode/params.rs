//! The driver's settings: `Parameters` under the service key (`TraceLevel`, and the durable
//! configuration of `crate::durable`), read once in DriverEntry at PASSIVE_LEVEL.

use super::close_handle;
use super::sys::{object_attributes, unicode};
use crate::durable::{self, Config};
use crate::ktm::{access, obj};
use crate::names;
use crate::registry;
use crate::trace::{self, Level};
use core::ptr::null_mut;
use ktmrm_proto::NtStatus;
use wdk_sys::ntddk::{ZwOpenKey, ZwQueryValueKey};
use wdk_sys::{_KEY_VALUE_INFORMATION_CLASS, HANDLE, PCUNICODE_STRING, ULONG};

/// Reads `Parameters` under the service key: applies `TraceLevel` and returns the durable
/// configuration (`Durable`, `LogDirectory`, `TmLogPath`; defaults for what is absent or
/// malformed, see `crate::durable`). Not inlined into DriverEntry, so that its buffers are off
/// the stack before DriverEntry goes on to start the driver.
#[inline(never)]
pub(super) fn read_parameters(registry_path: PCUNICODE_STRING) -> Config {
    let mut config = Config::default();
    if registry_path.is_null() {
        return config;
    }
    let mut service_oa = object_attributes(
        registry_path.cast_mut(),
        obj::KERNEL_HANDLE | obj::CASE_INSENSITIVE,
        null_mut(),
    );
    let mut service: HANDLE = null_mut();
    // ZwOpenKey(PHANDLE KeyHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES
    // ObjectAttributes): PASSIVE_LEVEL. On success the driver owns a kernel handle (closed below).
    // SAFETY: pointers to locals; RegistryPath is the I/O manager's string, valid during
    // DriverEntry, and ZwOpenKey only reads it.
    let st = NtStatus(unsafe { ZwOpenKey(&mut service, access::KEY_READ, &mut service_oa) });
    if !st.is_success() {
        return config;
    }
    let mut sub = unicode(names::PARAMETERS_KEY);
    let mut params_oa = object_attributes(
        &mut sub,
        obj::KERNEL_HANDLE | obj::CASE_INSENSITIVE,
        service,
    );
    let mut params: HANDLE = null_mut();
    // ZwOpenKey again, relative to the service key: PASSIVE_LEVEL; owned kernel handle.
    // SAFETY: pointers to locals; `service` is open.
    let st = NtStatus(unsafe { ZwOpenKey(&mut params, access::KEY_READ, &mut params_oa) });
    close_handle("service key", service);
    if !st.is_success() {
        return config; // no Parameters key: defaults
    }
    let mut words = [0u32; durable::PARTIAL_SZ_LEN.div_ceil(4)]; // ULONG-aligned buffer
    if let Some(b) = query_value(params, names::TRACE_LEVEL_VALUE, &mut words)
        && let Some(v) = registry::partial_dword(b.bytes(), b.len)
    {
        trace::set_level(Level::from_registry(v));
    }
    if let Some(b) = query_value(params, durable::DURABLE_VALUE, &mut words)
        && let Some(v) = registry::partial_dword(b.bytes(), b.len)
    {
        config.set_durable(v);
    }
    if let Some(b) = query_value(params, durable::LOG_DIRECTORY_VALUE, &mut words)
        && let Some(p) = durable::partial_sz(b.bytes(), b.len)
    {
        config.log_directory = p;
    }
    if let Some(b) = query_value(params, durable::TM_LOG_VALUE, &mut words)
        && let Some(p) = durable::partial_sz(b.bytes(), b.len)
    {
        config.tm_log = p;
    }
    close_handle("Parameters key", params);
    config
}

/// The bytes `ZwQueryValueKey` returned.
struct Queried {
    bytes: [u8; durable::PARTIAL_SZ_LEN],
    len: usize,
}

impl Queried {
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// `KeyValuePartialInformation` of value `name` under `key`, into `words`; `None` when absent
/// or larger than the buffer.
fn query_value(key: HANDLE, name: &'static [u16], words: &mut [u32]) -> Option<Queried> {
    let mut value = unicode(name);
    let mut returned: ULONG = 0;
    let len = ULONG::try_from(words.len().saturating_mul(4)).ok()?;
    // ZwQueryValueKey(HANDLE KeyHandle, PUNICODE_STRING ValueName, KEY_VALUE_INFORMATION_CLASS
    //   KeyValueInformationClass, PVOID KeyValueInformation, ULONG Length, PULONG ResultLength):
    //   PASSIVE_LEVEL. Fills the caller's buffer; STATUS_BUFFER_OVERFLOW/TOO_SMALL if the value
    //   is larger, STATUS_OBJECT_NAME_NOT_FOUND if absent.
    // SAFETY: `words` is a live buffer of exactly `len` bytes; other pointers are locals.
    let st = NtStatus(unsafe {
        ZwQueryValueKey(
            key,
            &mut value,
            _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation,
            words.as_mut_ptr().cast(),
            len,
            &mut returned,
        )
    });
    if !st.is_success() {
        return None;
    }
    let mut q = Queried {
        bytes: [0; durable::PARTIAL_SZ_LEN],
        len: usize::try_from(returned).ok()?,
    };
    for (chunk, word) in q.bytes.chunks_mut(4).zip(words.iter()) {
        let b = word.to_ne_bytes();
        chunk.copy_from_slice(b.get(..chunk.len())?);
    }
    Some(q)
}
