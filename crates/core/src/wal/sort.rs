//! An in-place heapsort. `sort_unstable` would do, but it keeps a panic path for comparators it
//! cannot prove consistent, and the kernel path must have none; this one allocates nothing and
//! indexes only through checked accessors.

/// Sorts `v` so that no element is `less` than the one before it.
pub(crate) fn heapsort<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    let mut i = n.checked_div(2).unwrap_or(0);
    while let Some(j) = i.checked_sub(1) {
        i = j;
        sift_down(v, i, n, &less);
    }
    let mut end = n;
    while let Some(e) = end.checked_sub(1) {
        end = e;
        if end == 0 {
            break;
        }
        swap_ends(v.get_mut(..=end).unwrap_or(&mut []));
        sift_down(v, 0, end, &less);
    }
}

/// Swaps the first and last elements of `s`.
fn swap_ends<T>(s: &mut [T]) {
    if let Some((first, rest)) = s.split_first_mut()
        && let Some(last) = rest.last_mut()
    {
        core::mem::swap(first, last);
    }
}

fn sift_down<T>(v: &mut [T], mut root: usize, end: usize, less: &impl Fn(&T, &T) -> bool) {
    loop {
        let Some(left) = root.checked_mul(2).and_then(|c| c.checked_add(1)) else {
            return;
        };
        if left >= end {
            return;
        }
        let mut child = left;
        if let Some(right) = left.checked_add(1)
            && right < end
            && let (Some(a), Some(b)) = (v.get(left), v.get(right))
            && less(a, b)
        {
            child = right;
        }
        match (v.get(root), v.get(child)) {
            (Some(r), Some(c)) if less(r, c) => {}
            _ => return,
        }
        swap_ends(v.get_mut(root..=child).unwrap_or(&mut []));
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    proptest! {
        #[test]
        fn sorts_like_std(mut v in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut want = v.clone();
            want.sort();
            heapsort(&mut v, |a, b| a < b);
            prop_assert_eq!(v, want);
        }
    }

    #[test]
    fn tolerates_an_inconsistent_comparator() {
        let mut v: Vec<u32> = (0..100).collect();
        heapsort(&mut v, |_, _| true);
        heapsort(&mut v, |a, b| (a ^ b) & 1 == 1);
        assert_eq!(v.len(), 100);
    }
}
