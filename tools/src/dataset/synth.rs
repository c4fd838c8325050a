//! Deterministic synthetic vectors shaped like SIFT-style descriptors: many clusters, each a
//! low-rank (intrinsic dimension ~12) Gaussian-ish cloud plus a little isotropic noise, so the
//! data has the structure real embeddings have (far fewer effective dimensions than
//! components) rather than the worst case of i.i.d. noise.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RANK: usize = 12;

/// Sum of four uniforms: a cheap, bounded, bell-shaped sample with mean 0 and variance 1.
fn bell(rng: &mut StdRng) -> f32 {
    let s: f32 = (0..4).map(|_| rng.gen_range(-1.0f32..1.0)).sum();
    s * (3.0f32 / 4.0).sqrt()
}

/// The cluster model for (`dim`, `clusters`, `model_seed`): centres and per-cluster bases.
pub struct ClusterModel {
    dim: usize,
    centres: Vec<f32>,
    bases: Vec<f32>,
}

impl ClusterModel {
    pub fn new(dim: usize, clusters: usize, model_seed: u64) -> ClusterModel {
        let mut rng = StdRng::seed_from_u64(model_seed);
        let centres = (0..clusters * dim)
            .map(|_| rng.gen_range(0.0f32..100.0))
            .collect();
        let bases = (0..clusters * RANK * dim)
            .map(|_| bell(&mut rng) * 4.0)
            .collect();
        ClusterModel {
            dim,
            centres,
            bases,
        }
    }

    pub fn clusters(&self) -> usize {
        self.centres.len() / self.dim.max(1)
    }

    /// `n` points (row-major) drawn with `seed`.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<f32> {
        self.sample_labeled(n, seed, None).0
    }

    /// `n` points drawn with `seed` from the clusters in `only` (all when `None`), with the
    /// cluster of each point. `sample` is this with every cluster (the same stream).
    pub fn sample_labeled(
        &self,
        n: usize,
        seed: u64,
        only: Option<&[usize]>,
    ) -> (Vec<f32>, Vec<u32>) {
        let d = self.dim;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * d);
        let mut labels = Vec::with_capacity(n);
        let mut coef = [0f32; RANK];
        let pool = only.map_or(self.clusters(), <[usize]>::len).max(1);
        for _ in 0..n {
            let pick = rng.gen_range(0..pool);
            let c = only.and_then(|o| o.get(pick).copied()).unwrap_or(pick);
            labels.push(c as u32);
            coef.iter_mut().for_each(|x| *x = bell(&mut rng));
            let centre = self.centres.get(c * d..(c + 1) * d).unwrap_or_default();
            let basis = self
                .bases
                .get(c * RANK * d..(c + 1) * RANK * d)
                .unwrap_or_default();
            for (j, m) in centre.iter().enumerate() {
                let mut x = *m + bell(&mut rng);
                for (r, a) in coef.iter().enumerate() {
                    x += a * basis.get(r * d + j).copied().unwrap_or(0.0);
                }
                out.push(x);
            }
        }
        (out, labels)
    }
}
