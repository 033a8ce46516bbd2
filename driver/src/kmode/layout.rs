//! Compile-time checks that the bindings the driver is built against have the documented x64
//! layout of every structure field it touches, and that the constants the portable modules
//! spell out by hand equal the headers'. A mismatch fails the build, on Windows with the real WDK
//! and in the Linux kernel check (scripts/kernel-check.sh) alike.
//!
//! Offsets and sizes are those of Windows 10/11 x64 (wdm.h / ntifs.h; the same in public symbols,
//! e.g. WinDbg `dt nt!_IRP`). `DEVICE_OBJECT` is `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` in
//! the WDK (0x150 bytes) but not in mingw-w64's headers (0x148); the driver never holds one by
//! value, so only the fields it reads are checked.

use crate::{durable, irp, ktm, registry};
use core::mem::{offset_of, size_of};
use ktmrm_core::port::notify_bits;
use wdk_sys::*;

macro_rules! at {
    ($t:ty, $($f:tt).+, $o:expr) => {
        const _: () = assert!(offset_of!($t, $($f).+) == $o);
    };
}
macro_rules! size {
    ($t:ty, $s:expr) => {
        const _: () = assert!(size_of::<$t>() == $s);
    };
}
macro_rules! same {
    ($a:expr, $b:expr) => {
        const _: () = assert!($a as i64 == $b as i64);
    };
}

// IRP and its current stack location (kmode::sys::current_stack, complete; on_device_control).
size!(IRP, 0xd0);
at!(IRP, AssociatedIrp, 0x18);
at!(IRP, IoStatus, 0x30);
at!(IRP, RequestorMode, 0x40);
at!(
    IRP,
    Tail.Overlay
        .__bindgen_anon_2
        .__bindgen_anon_1
        .CurrentStackLocation,
    0xb8
);
size!(IO_STACK_LOCATION, 0x48);
at!(IO_STACK_LOCATION, MajorFunction, 0x00);
at!(IO_STACK_LOCATION, Parameters, 0x08);
at!(
    IO_STACK_LOCATION,
    Parameters.DeviceIoControl.OutputBufferLength,
    0x08
);
at!(
    IO_STACK_LOCATION,
    Parameters.DeviceIoControl.InputBufferLength,
    0x10
);
at!(
    IO_STACK_LOCATION,
    Parameters.DeviceIoControl.IoControlCode,
    0x18
);
at!(IO_STACK_LOCATION, FileObject, 0x30);
size!(IO_STATUS_BLOCK, 0x10);
at!(IO_STATUS_BLOCK, Information, 0x08);

// File, device and driver objects (FsContext per handle, the extension, the dispatch table).
size!(FILE_OBJECT, 0xd8);
at!(FILE_OBJECT, FileName, 0x58);
at!(FILE_OBJECT, FsContext, 0x18);
at!(DEVICE_OBJECT, DeviceExtension, 0x40);
size!(DRIVER_OBJECT, 0x150);
at!(DRIVER_OBJECT, DeviceObject, 0x08);
at!(DRIVER_OBJECT, DriverUnload, 0x68);
at!(DRIVER_OBJECT, MajorFunction, 0x70);

// What the kernel calls take by pointer.
size!(OBJECT_ATTRIBUTES, 0x30);
at!(OBJECT_ATTRIBUTES, RootDirectory, 0x08);
at!(OBJECT_ATTRIBUTES, ObjectName, 0x10);
at!(OBJECT_ATTRIBUTES, Attributes, 0x18);
size!(UNICODE_STRING, 0x10);
at!(UNICODE_STRING, Buffer, 0x08);
size!(KEVENT, 0x18);
size!(EX_RUNDOWN_REF, 0x08);
size!(KGUARDED_MUTEX, 0x38);
size!(LARGE_INTEGER, 0x08);
size!(GUID, 0x10);

// File information the log file uses, and the layouts crate::durable builds as bytes.
size!(FILE_STANDARD_INFORMATION, 0x18);
at!(FILE_STANDARD_INFORMATION, EndOfFile, 0x08);
size!(FILE_END_OF_FILE_INFORMATION, 0x08);
size!(FILE_RENAME_INFORMATION, 0x18);
at!(FILE_RENAME_INFORMATION, RootDirectory, 0x08);
at!(FILE_RENAME_INFORMATION, FileNameLength, 0x10);
at!(
    FILE_RENAME_INFORMATION,
    FileName,
    durable::RenameInformation::NAME_OFFSET
);
same!(_FILE_INFORMATION_CLASS::FileStandardInformation, 5);
same!(_FILE_INFORMATION_CLASS::FileRenameInformation, 10);
same!(_FILE_INFORMATION_CLASS::FileEndOfFileInformation, 20);

// Registry values (crate::registry parses KEY_VALUE_PARTIAL_INFORMATION as bytes).
at!(KEY_VALUE_PARTIAL_INFORMATION, Type, 0x04);
at!(KEY_VALUE_PARTIAL_INFORMATION, DataLength, 0x08);
at!(
    KEY_VALUE_PARTIAL_INFORMATION,
    Data,
    registry::PARTIAL_INFO_DATA_OFFSET
);
same!(
    _KEY_VALUE_INFORMATION_CLASS::KeyValuePartialInformation,
    ktm::KEY_VALUE_PARTIAL_INFORMATION
);
same!(REG_DWORD, ktm::REG_DWORD);

// Constants the portable modules spell out.
same!(OBJ_KERNEL_HANDLE, ktm::obj::KERNEL_HANDLE);
same!(OBJ_CASE_INSENSITIVE, ktm::obj::CASE_INSENSITIVE);
same!(_MODE::KernelMode, ktm::obj::KERNEL_MODE);
same!(_MODE::UserMode, ktm::obj::USER_MODE);
same!(KEY_READ, ktm::access::KEY_READ);
same!(
    TRANSACTIONMANAGER_CREATE_RM,
    ktm::access::TRANSACTIONMANAGER_CREATE_RM
);
same!(
    TRANSACTIONMANAGER_QUERY_INFORMATION,
    ktm::access::TRANSACTIONMANAGER_QUERY_INFORMATION
);
same!(
    TRANSACTIONMANAGER_RECOVER,
    ktm::access::TRANSACTIONMANAGER_RECOVER
);
same!(RESOURCEMANAGER_ENLIST, ktm::access::RESOURCEMANAGER_ENLIST);
same!(
    RESOURCEMANAGER_GET_NOTIFICATION,
    ktm::access::RESOURCEMANAGER_GET_NOTIFICATION
);
same!(
    RESOURCEMANAGER_RECOVER,
    ktm::access::RESOURCEMANAGER_RECOVER
);
same!(
    RESOURCEMANAGER_QUERY_INFORMATION,
    ktm::access::RESOURCEMANAGER_QUERY_INFORMATION
);
same!(TRANSACTION_ENLIST, ktm::access::TRANSACTION_ENLIST);
same!(
    TRANSACTION_QUERY_INFORMATION,
    ktm::access::TRANSACTION_QUERY_INFORMATION
);
same!(
    _TRANSACTION_OUTCOME::TransactionOutcomeUndetermined,
    ktm::OUTCOME_UNDETERMINED
);
size!(TRANSACTION_BASIC_INFORMATION, 0x18);
at!(TRANSACTION_BASIC_INFORMATION, Outcome, 0x14);
same!(
    ENLISTMENT_SUBORDINATE_RIGHTS,
    ktm::access::ENLISTMENT_SUBORDINATE_RIGHTS
);
same!(
    ENLISTMENT_QUERY_INFORMATION,
    ktm::access::ENLISTMENT_QUERY_INFORMATION
);
same!(
    TRANSACTION_MANAGER_VOLATILE,
    ktm::TRANSACTION_MANAGER_VOLATILE
);
same!(RESOURCE_MANAGER_VOLATILE, ktm::RESOURCE_MANAGER_VOLATILE);
same!(TRANSACTION_DO_NOT_PROMOTE, ktm::TRANSACTION_DO_NOT_PROMOTE);
same!(TRANSACTION_NOTIFY_PREPREPARE, notify_bits::PREPREPARE);
same!(TRANSACTION_NOTIFY_PREPARE, notify_bits::PREPARE);
same!(TRANSACTION_NOTIFY_COMMIT, notify_bits::COMMIT);
same!(TRANSACTION_NOTIFY_ROLLBACK, notify_bits::ROLLBACK);
same!(
    TRANSACTION_NOTIFY_SINGLE_PHASE_COMMIT,
    notify_bits::SINGLE_PHASE_COMMIT
);
same!(
    TRANSACTION_NOTIFY_RM_DISCONNECTED,
    notify_bits::RM_DISCONNECTED
);
same!(TRANSACTION_NOTIFY_RECOVER, notify_bits::RECOVER);
same!(TRANSACTION_NOTIFY_LAST_RECOVER, notify_bits::LAST_RECOVER);
same!(TRANSACTION_NOTIFY_INDOUBT, notify_bits::INDOUBT);
same!(IRP_MJ_CREATE, irp::IRP_MJ_CREATE);
same!(IRP_MJ_CLOSE, irp::IRP_MJ_CLOSE);
same!(IRP_MJ_CLEANUP, irp::IRP_MJ_CLEANUP);
same!(IRP_MJ_DEVICE_CONTROL, irp::IRP_MJ_DEVICE_CONTROL);
same!(IRP_MJ_MAXIMUM_FUNCTION, irp::IRP_MJ_MAXIMUM_FUNCTION);
same!(FILE_DEVICE_SECURE_OPEN, irp::FILE_DEVICE_SECURE_OPEN);
same!(FILE_DEVICE_UNKNOWN, ktmrm_proto::FILE_DEVICE_UNKNOWN);
same!(METHOD_BUFFERED, ktmrm_proto::METHOD_BUFFERED);
