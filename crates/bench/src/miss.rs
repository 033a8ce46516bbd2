//! The cost of one cache miss on this machine, to judge the scale ratio by: a dependent chain
//! of loads, each to a random cache line of a buffer as large as a big store, so each load
//! misses every cache level (and mostly the TLB), as a cold leaf does. No hardware counters
//! needed (VMs often hide them).

use std::time::Instant;

/// Nanoseconds per dependent load from a random line of a `bytes`-sized buffer (median of
/// `reps` chases of `steps` loads each).
#[must_use]
pub fn miss_ns(bytes: usize, steps: usize, reps: usize) -> f64 {
    const LINE: usize = 64 / std::mem::size_of::<usize>();
    let lines = (bytes / 64).max(2);
    // Sattolo's algorithm: one cycle through every line, in a random order (splitmix64).
    let mut order: Vec<usize> = (0..lines).collect();
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..lines).rev() {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = z;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let j = (x % i as u64) as usize;
        order.swap(i, j);
    }
    let mut next = vec![0usize; lines * LINE];
    for w in 0..lines {
        let from = order[w];
        let to = order[(w + 1) % lines];
        next[from * LINE] = to * LINE;
    }
    drop(order);
    let mut times = Vec::with_capacity(reps);
    let mut at = 0usize;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        for _ in 0..steps {
            at = next[at];
        }
        times.push(t.elapsed().as_nanos() as f64 / steps.max(1) as f64);
    }
    std::hint::black_box(at);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_larger_than_the_caches_costs_more_per_load_than_one_inside_l1() {
        let small = miss_ns(16 << 10, 200_000, 3);
        let large = miss_ns(64 << 20, 200_000, 3);
        assert!(small > 0.0 && large > 2.0 * small, "{small} vs {large}");
    }
}
