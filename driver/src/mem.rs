//! Fallible allocation. `Box::new` calls `handle_alloc_error` when the allocator returns null,
//! which in the kernel is a bugcheck; `Box::try_new` is unstable. [`try_box`] allocates through
//! the global allocator (`crate::pool`: non-paged pool, 16-byte aligned on x64) and drops the
//! value on failure, so callers answer `STATUS_INSUFFICIENT_RESOURCES`. Dropping (rather than
//! handing the value back) keeps the result pointer-sized: a `Result<Box<T>, T>` is as large as
//! `T`, and large values in kernel stack frames are what this module exists to avoid.

use alloc::alloc::{Layout, alloc};
use alloc::boxed::Box;
use ktmrm_proto::NtStatus;

/// The alignment every non-paged pool block has on 64-bit Windows (`MEMORY_ALLOCATION_ALIGNMENT`).
/// wdk-alloc ignores `Layout::align()` (windows-drivers-rs #303), so [`try_box`] refuses types
/// that need more.
pub const POOL_ALIGNMENT: usize = 16;

/// Moves `value` to the heap, or drops it and answers `STATUS_INSUFFICIENT_RESOURCES` when the
/// allocator has no memory (or the type needs more alignment than pool gives).
pub fn try_box<T>(value: T) -> Result<Box<T>, NtStatus> {
    let layout = Layout::new::<T>();
    if layout.size() == 0 {
        // No allocation happens for a zero-sized type, so this cannot fail.
        return Ok(Box::new(value));
    }
    if layout.align() > POOL_ALIGNMENT {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // SAFETY: `layout` has a non-zero size (checked above), as `alloc` requires.
    let ptr = unsafe { alloc(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(NtStatus::INSUFFICIENT_RESOURCES);
    }
    // SAFETY: `ptr` is a fresh, exclusive allocation of `size_of::<T>()` bytes, aligned for `T`.
    unsafe { ptr.write(value) };
    // SAFETY: `ptr` was allocated by the global allocator with `Layout::new::<T>()` and holds an
    // initialised `T`: exactly what `Box::from_raw` requires to own and later free it.
    Ok(unsafe { Box::from_raw(ptr) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_values_of_every_size() {
        assert_eq!(*try_box(7u8).ok().unwrap(), 7);
        assert_eq!(*try_box([1u64; 64]).ok().unwrap(), [1u64; 64]);
        let _: Box<()> = try_box(()).ok().unwrap();
        let s = try_box(String::from("kept")).ok().unwrap();
        assert_eq!(s.as_str(), "kept");
    }

    #[test]
    fn refuses_over_aligned_types() {
        #[repr(align(64))]
        struct Wide(#[allow(dead_code)] u8);
        assert_eq!(
            try_box(Wide(1)).err(),
            Some(NtStatus::INSUFFICIENT_RESOURCES)
        );
    }
}
