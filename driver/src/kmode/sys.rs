//! What wdk-sys does not provide (windows-drivers-rs #119): a routine it has no binding for,
//! and the wdm.h macros/inlines the driver uses. Plus the small constructors every kernel call
//! site shares.

use crate::names;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr::null_mut;
use ktmrm_proto::NtStatus;
use wdk_sys::ntddk::IofCompleteRequest;
use wdk_sys::{
    BOOLEAN, CCHAR, DRIVER_OBJECT, GUID, HANDLE, IO_STACK_LOCATION, IRP, NTSTATUS,
    OBJECT_ATTRIBUTES, PCUNICODE_STRING, PDEVICE_OBJECT, PUNICODE_STRING, ULONG, ULONG_PTR,
    UNICODE_STRING,
};

// wdmsec.h is not among wdk-sys' headers, so the routine is declared here from its documented
// prototype (learn.microsoft.com, ddi/wdmsec/nf-wdmsec-wdmlibiocreatedevicesecure):
//   NTSTATUS WdmlibIoCreateDeviceSecure(PDRIVER_OBJECT DriverObject, ULONG DeviceExtensionSize,
//     PUNICODE_STRING DeviceName /*optional*/, DEVICE_TYPE DeviceType /*ULONG*/,
//     ULONG DeviceCharacteristics, BOOLEAN Exclusive, PCUNICODE_STRING DefaultSDDLString,
//     LPCGUID DeviceClassGuid /*optional*/, PDEVICE_OBJECT *DeviceObject);
// Library Wdmsec.lib (a static library in the WDK's km lib directory, which wdk-build already puts
// on the linker's search path). IRQL PASSIVE_LEVEL. NTAPI is the only convention on x64/ARM64,
// where it is the C convention, as bindgen spells every WDK routine.
#[link(name = "wdmsec", kind = "static")]
unsafe extern "C" {
    pub fn WdmlibIoCreateDeviceSecure(
        DriverObject: *mut DRIVER_OBJECT,
        DeviceExtensionSize: ULONG,
        DeviceName: PUNICODE_STRING,
        DeviceType: ULONG,
        DeviceCharacteristics: ULONG,
        Exclusive: BOOLEAN,
        DefaultSDDLString: PCUNICODE_STRING,
        DeviceClassGuid: *const GUID,
        DeviceObject: *mut PDEVICE_OBJECT,
    ) -> NTSTATUS;
}

/// A `UNICODE_STRING` over a constant name (no terminating NUL). The kernel routines it is passed
/// to only read it, though their prototypes say `PUNICODE_STRING`.
pub fn unicode(units: &'static [u16]) -> UNICODE_STRING {
    unicode_borrowed(units)
}

/// A `UNICODE_STRING` over `units`, which the caller keeps alive (and unchanged) for as long as
/// the kernel uses the string: for paths read from the registry. An over-long slice (more than
/// 32,767 units) gives an empty string.
pub fn unicode_borrowed(units: &[u16]) -> UNICODE_STRING {
    let len = names::unicode_byte_len(units.len()).unwrap_or(0);
    UNICODE_STRING {
        Length: len,
        MaximumLength: len,
        Buffer: units.as_ptr().cast_mut(),
    }
}

/// `InitializeObjectAttributes(&oa, name, attributes, root, NULL)` (a wdm.h macro).
pub fn object_attributes(
    name: PUNICODE_STRING,
    attributes: u32,
    root: HANDLE,
) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory: root,
        ObjectName: name,
        Attributes: attributes,
        SecurityDescriptor: null_mut(),
        SecurityQualityOfService: null_mut(),
    }
}

/// A handle's bits as a `HANDLE` (handles are numbers, not pointers: no provenance).
pub fn handle_from_bits(bits: usize) -> HANDLE {
    core::ptr::without_provenance_mut::<c_void>(bits)
}

/// `IoGetCurrentIrpStackLocation(Irp)` (a wdm.h inline: `Irp->Tail.Overlay.CurrentStackLocation`).
/// Any IRQL.
///
/// # Safety
/// `irp` is an IRP the I/O manager passed to one of this driver's dispatch routines and that the
/// driver has not completed yet.
pub unsafe fn current_stack(irp: *mut IRP) -> *mut IO_STACK_LOCATION {
    // SAFETY: `irp` is live and not completed (caller's contract); taking a reference to a field
    // of the IRP reads nothing yet.
    let tail = unsafe { &(*irp).Tail };
    // SAFETY: while a dispatch routine owns an IRP, `Tail.Overlay` is the active arm of the `Tail`
    // union (the I/O manager set CurrentStackLocation in it before calling the driver).
    let overlay = unsafe { &tail.Overlay };
    // SAFETY: same arm: `CurrentStackLocation` is the active member of its anonymous union.
    unsafe {
        overlay
            .__bindgen_anon_2
            .__bindgen_anon_1
            .CurrentStackLocation
    }
}

/// Sets `IoStatus` and completes the IRP: `IoCompleteRequest(Irp, IO_NO_INCREMENT)`, a wdm.h macro
/// for `IofCompleteRequest(PIRP Irp, CCHAR PriorityBoost)`, IRQL <= DISPATCH_LEVEL. After the call
/// the IRP belongs to the I/O manager again and must not be touched. Returns the status for the
/// dispatch routine to return (never STATUS_PENDING: every IRP completes synchronously).
///
/// # Safety
/// As for [`current_stack`]; `irp` must not be used after this returns.
pub unsafe fn complete(irp: *mut IRP, status: NtStatus, information: usize) -> NTSTATUS {
    // SAFETY: `irp` is live and owned by this dispatch routine (caller's contract), so the
    // driver may write its IoStatus.
    let io_status = unsafe { &mut (*irp).IoStatus };
    // Writing a `Copy` member of a union is safe.
    io_status.__bindgen_anon_1.Status = status.0;
    io_status.Information = information as ULONG_PTR;
    // SAFETY: the IRP is fully set up for completion and this is its only completion.
    unsafe {
        IofCompleteRequest(irp, 0 as CCHAR /* IO_NO_INCREMENT */)
    };
    status.0
}
