//! Distance kernels: AVX2 + FMA where the CPU has them (checked at run time), a portable scalar
//! fallback everywhere else. Written by hand because they are the inner loop of graph build and
//! search; the scalar versions are the reference the SIMD ones are tested against.

/// Squared Euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if a.len() >= 8 && has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::l2_sq(a, b) };
        }
    }
    l2_sq_scalar(a, b)
}

/// Dot product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if a.len() >= 8 && has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::dot(a, b) };
        }
    }
    dot_scalar(a, b)
}

/// Distances from `q` to the `out.len()` points of `soa`, stored dimension-major (`soa[t * n +
/// i]` is component `t` of point `i`): squared L2, or the negative dot product when `ip`. One
/// pass per dimension over a contiguous row vectorises across points (the partition plan
/// ranks ~1,000 centroids per query this way: a call per centroid cost ~30 ns each).
pub fn distances_soa(q: &[f32], soa: &[f32], out: &mut [f32], ip: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { x86::distances_soa(q, soa, out, ip) };
            return;
        }
    }
    distances_soa_body(q, soa, out, ip);
}

#[inline(always)]
fn distances_soa_body(q: &[f32], soa: &[f32], out: &mut [f32], ip: bool) {
    let n = out.len();
    out.fill(0.0);
    if n == 0 {
        return;
    }
    for (x, row) in q.iter().zip(soa.chunks_exact(n)) {
        if ip {
            for (o, c) in out.iter_mut().zip(row) {
                *o -= x * c;
            }
        } else {
            for (o, c) in out.iter_mut().zip(row) {
                let d = x - c;
                *o += d * d;
            }
        }
    }
}

/// A scalar-quantised code's weighted distance: `Σ w (a − c)²`, or `Σ w c` when `ip` (see
/// `QueryTable::Sq8`). Over the common length.
#[inline]
pub fn sq8_weighted(a: &[f32], w: &[f32], code: &[u8], ip: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::sq8_weighted(a, w, code, ip) };
        }
    }
    sq8_weighted_body(a, w, code, ip)
}

/// Eight independent lanes (a running scalar sum does not vectorise: float addition is not
/// reassociated), then the remainder.
#[inline(always)]
fn sq8_weighted_body(a: &[f32], w: &[f32], code: &[u8], ip: bool) -> f32 {
    let n = a.len().min(w.len()).min(code.len());
    let (a, w, code) = (
        a.get(..n).unwrap_or_default(),
        w.get(..n).unwrap_or_default(),
        code.get(..n).unwrap_or_default(),
    );
    let mut lanes = [0f32; 8];
    let (ac, wc, cc) = (a.chunks_exact(8), w.chunks_exact(8), code.chunks_exact(8));
    let (ar, wr, cr) = (ac.remainder(), wc.remainder(), cc.remainder());
    for ((a8, w8), c8) in ac.zip(wc).zip(cc) {
        for (l, ((x, wt), c)) in lanes.iter_mut().zip(a8.iter().zip(w8).zip(c8)) {
            let c = f32::from(*c);
            *l += if ip {
                wt * c
            } else {
                let d = x - c;
                wt * d * d
            };
        }
    }
    let mut s = lanes.iter().sum::<f32>();
    for ((x, wt), c) in ar.iter().zip(wr).zip(cr) {
        let c = f32::from(*c);
        s += if ip {
            wt * c
        } else {
            let d = x - c;
            wt * d * d
        };
    }
    s
}

/// Reference squared Euclidean distance (over the common length).
pub fn l2_sq_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Reference dot product (over the common length).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether the SIMD kernels are in use on this CPU.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx2_fma() -> bool {
    // std caches the CPUID result; this is one atomic load.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sq8_weighted(a: &[f32], w: &[f32], code: &[u8], ip: bool) -> f32 {
        // The portable body, compiled with AVX2 (8 lanes: byte -> float converts vectorise).
        super::sq8_weighted_body(a, w, code, ip)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn distances_soa(q: &[f32], soa: &[f32], out: &mut [f32], ip: bool) {
        // The portable body, compiled here with AVX2 enabled (it auto-vectorises 8 wide).
        super::distances_soa_body(q, soa, out, ip);
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so both 8-lane loads at i and i + 8 are in bounds of both
            // slices; unaligned loads have no alignment requirement.
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                );
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            }
            i += 16;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d, d, acc0);
            }
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        for (x, y) in a.iter().zip(b).take(n).skip(i) {
            s += (x - y) * (x - y);
        }
        s
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so both loads are in bounds of both slices.
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                acc0 =
                    _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            }
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        for (x, y) in a.iter().zip(b).take(n).skip(i) {
            s += x * y;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn simd_equals_scalar_within_tolerance() {
        let mut rng = StdRng::seed_from_u64(7);
        for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 31, 64, 100, 128, 384, 1000] {
            for _ in 0..20 {
                let a: Vec<f32> = (0..len).map(|_| rng.gen_range(-10.0..10.0)).collect();
                let b: Vec<f32> = (0..len).map(|_| rng.gen_range(-10.0..10.0)).collect();
                let (l, ls) = (l2_sq(&a, &b), l2_sq_scalar(&a, &b));
                let (d, ds) = (dot(&a, &b), dot_scalar(&a, &b));
                let tol = |x: f32| 1e-4 * x.abs().max(1.0) + 1e-3;
                assert!((l - ls).abs() <= tol(ls), "l2 len {len}: {l} vs {ls}");
                let mag: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
                assert!((d - ds).abs() <= tol(mag), "dot len {len}: {d} vs {ds}");
            }
        }
    }

    #[test]
    fn dimension_major_distances_equal_pairwise() {
        let mut rng = StdRng::seed_from_u64(8);
        for (n, dim) in [(0usize, 4usize), (1, 3), (13, 8), (100, 64), (7, 100)] {
            let pts: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..dim).map(|_| rng.gen_range(-5.0..5.0)).collect())
                .collect();
            let q: Vec<f32> = (0..dim).map(|_| rng.gen_range(-5.0..5.0)).collect();
            let soa: Vec<f32> = (0..dim)
                .flat_map(|t| pts.iter().map(move |p| p[t]))
                .collect();
            for ip in [false, true] {
                let mut out = vec![f32::NAN; n];
                distances_soa(&q, &soa, &mut out, ip);
                for (p, o) in pts.iter().zip(&out) {
                    let want = if ip {
                        -dot_scalar(&q, p)
                    } else {
                        l2_sq_scalar(&q, p)
                    };
                    assert!(
                        (o - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{o} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn hand_computed() {
        let a = [1.0f32; 20];
        let b: Vec<f32> = (0..20).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &b), 190.0);
        let want: f32 = (0..20).map(|i| ((i - 1) * (i - 1)) as f32).sum();
        assert_eq!(l2_sq(&a, &b), want);
    }
}
