//! Vec growth that cannot allocate: every push goes into capacity reserved earlier
//! with `try_reserve`, writing the spare capacity directly. Plain `push`/`extend_from_slice`
//! carry an allocating growth path that ends in a panic (capacity overflow, allocation error)
//! which the optimizer cannot always remove; the panic-path probe (crates/panic-probe) showed it
//! surviving, so these two never contain it.

use alloc::vec::Vec;

/// Appends `x` if there is spare capacity; otherwise gives it back.
pub(crate) fn push<T>(v: &mut Vec<T>, x: T) -> Result<(), T> {
    let len = v.len();
    let Some(slot) = v.spare_capacity_mut().first_mut() else {
        return Err(x);
    };
    slot.write(x);
    // SAFETY: the element at index `len` (the first spare slot, within capacity) was just
    // initialised, so the first `len + 1` elements are initialised. `len < capacity <= isize::MAX`,
    // so the addition cannot overflow.
    unsafe { v.set_len(len.wrapping_add(1)) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows() {
        let mut v: Vec<u8> = Vec::new();
        assert_eq!(push(&mut v, 1), Err(1));
        v.try_reserve_exact(3).unwrap();
        let cap = v.capacity();
        assert_eq!(push(&mut v, 1), Ok(()));
        assert_eq!(push(&mut v, 2), Ok(()));
        assert_eq!(push(&mut v, 3), Ok(()));
        while v.len() < cap {
            push(&mut v, 9).unwrap();
        }
        assert_eq!(push(&mut v, 4), Err(4));
        assert_eq!(v.capacity(), cap);
        assert_eq!(&v[..3], &[1, 2, 3]);
    }
}
