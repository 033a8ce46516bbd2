//! The global allocator: non-paged, non-executable pool, tagged `KtRm` (`names::POOL_TAG`).
//!
//! `ExAllocatePool2` is the current routine but exists only from Windows 10 version 2004 (build
//! 19041), after the minimum ktmrm supports (1903, build 18362, set by its primitive-driver INF).
//! Importing it would keep the driver from loading there, so it is looked up once with
//! `MmGetSystemRoutineAddress` in DriverEntry; where it is absent (and before the lookup),
//! `ExAllocatePoolWithTag(NonPagedPoolNx, ..)` serves. Blocks from either are freed with
//! `ExFreePoolWithTag`. Pool blocks are 16-byte aligned on x64 (`crate::mem::POOL_ALIGNMENT`);
//! a layout that needs more fails (null), as `GlobalAlloc` allows, instead of being misaligned.

use super::sys::unicode;
use crate::mem::POOL_ALIGNMENT;
use crate::names;
use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};
use wdk_sys::ntddk::{ExFreePoolWithTag, MmGetSystemRoutineAddress};
use wdk_sys::{PVOID, SIZE_T, ULONG};

// wdk-sys blocks the deprecated ExAllocatePoolWithTag from its bindings, so it is declared here
// from its documented prototype (learn.microsoft.com, ddi/wdm/nf-wdm-exallocatepoolwithtag):
//   PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
// IRQL <= DISPATCH_LEVEL for non-paged pool; exported by ntoskrnl.exe since Windows 2000.
unsafe extern "C" {
    fn ExAllocatePoolWithTag(PoolType: i32, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
}

/// `POOL_TYPE::NonPagedPoolNx` (wdm.h; Windows 8 and later).
const NON_PAGED_POOL_NX: i32 = 512;
/// `POOL_FLAG_NON_PAGED` (wdm.h): non-paged, non-executable, zeroed.
const POOL_FLAG_NON_PAGED: u64 = 0x40;

/// `DECLSPEC_RESTRICT PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)`
/// (ddi/wdm/nf-wdm-exallocatepool2): IRQL <= DISPATCH_LEVEL for non-paged pool.
type ExAllocatePool2Fn = unsafe extern "C" fn(u64, SIZE_T, ULONG) -> PVOID;

/// `ExAllocatePool2`'s address once DriverEntry found it; null before, or where it is absent.
static EX_ALLOCATE_POOL2: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Looks up `ExAllocatePool2`. Called first thing in DriverEntry (PASSIVE_LEVEL, as
/// MmGetSystemRoutineAddress requires), before anything is allocated.
pub fn resolve() {
    let mut name = unicode(names::EX_ALLOCATE_POOL2_EXPORT);
    // MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName) -> PVOID: PASSIVE_LEVEL.
    // The address of an ntoskrnl/HAL export, or NULL; valid while the system runs.
    // SAFETY: `name` is a local UNICODE_STRING over a constant name.
    let routine = unsafe { MmGetSystemRoutineAddress(&mut name) };
    EX_ALLOCATE_POOL2.store(routine, Ordering::Release);
}

/// The driver's global allocator.
pub struct PoolAllocator;

// SAFETY: every block comes from non-paged pool with at least the layout's size, aligned to
// POOL_ALIGNMENT (larger alignments get null); `dealloc` frees exactly the blocks `alloc` made.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > POOL_ALIGNMENT {
            return core::ptr::null_mut();
        }
        let Ok(size) = SIZE_T::try_from(layout.size()) else {
            return core::ptr::null_mut();
        };
        let routine = EX_ALLOCATE_POOL2.load(Ordering::Acquire);
        let block = if routine.is_null() {
            // SAFETY: a plain pool allocation; callers run at PASSIVE_LEVEL.
            unsafe { ExAllocatePoolWithTag(NON_PAGED_POOL_NX, size, names::POOL_TAG) }
        } else {
            // SAFETY: `routine` is ntoskrnl's ExAllocatePool2 export (found by name in
            // `resolve`), whose prototype is ExAllocatePool2Fn; a data pointer to code converts
            // to a function pointer of the same size on x64.
            let f = unsafe { core::mem::transmute::<*mut c_void, ExAllocatePool2Fn>(routine) };
            // SAFETY: a plain pool allocation; callers run at PASSIVE_LEVEL.
            unsafe { f(POOL_FLAG_NON_PAGED, size, names::POOL_TAG) }
        };
        block.cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // ExFreePoolWithTag(PVOID P, ULONG Tag): IRQL <= DISPATCH_LEVEL for non-paged pool; the
        // tag must be the one the block was allocated with (Driver Verifier checks it).
        // SAFETY: `ptr` came from `alloc` above with this tag and is freed once (GlobalAlloc's
        // contract).
        unsafe { ExFreePoolWithTag(ptr.cast(), names::POOL_TAG) };
    }
}
