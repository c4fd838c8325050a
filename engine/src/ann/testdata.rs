//! Seeded synthetic data for ANN tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` points around `clusters` Gaussian-ish centres (the centres depend only on `dim` and
/// `clusters`, so queries drawn with another seed land near the same clusters).
pub(crate) fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    let mut crng = StdRng::seed_from_u64(0xC3A7 ^ (dim as u64) << 8 ^ clusters as u64);
    let centres: Vec<f32> = (0..clusters * dim)
        .map(|_| crng.gen_range(-10.0f32..10.0))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.gen_range(0..clusters.max(1));
        for j in 0..dim {
            let noise: f32 = (0..3).map(|_| rng.gen_range(-1.0f32..1.0)).sum();
            out.push(centres.get(c * dim + j).copied().unwrap_or(0.0) + 1.5 * noise);
        }
    }
    out
}

/// Exact `k` nearest (L2) row ids, ties by id.
pub(crate) fn brute_force(data: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<u32> {
    let mut d: Vec<(f32, u32)> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, r)| (crate::simd::l2_sq_scalar(q, r), i as u32))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}
