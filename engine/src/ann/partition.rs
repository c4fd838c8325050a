//! Coarse partitions of a segment's vectors (IVF lists): k-means centroids, every vector in the
//! list of its nearest centroid. The planner's partition plan walks only the lists nearest the
//! query — all of a list's members for a dense filter, or the filter's matches that fall in
//! those lists for a sparse one — instead of the whole graph or every match.
//!
//! Written here rather than taken from a crate: it is a few dozen lines over the engine's own
//! SIMD distances and rayon, and the lists' layout is part of the segment format (the graph's
//! nodes are numbered list by list, see `docs/format.md`, "ANN codes").

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::simd;

/// Most lists a segment may have (a bound of the format, `docs/format.md`).
pub(crate) const MAX_PARTITIONS: usize = 65_535;
/// Training sample per list (faiss warns below 39).
const TRAIN_PER_LIST: usize = 40;
/// Lloyd iterations over the sample.
const ITERS: usize = 10;

/// The list count for `n` vectors when the options say "auto": about `√n` lists of `√n`
/// members, which balances the centroid scan against the list scan.
pub(crate) fn auto_count(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize)
        .clamp(1, MAX_PARTITIONS)
        .min(n)
}

/// The nearest of the centroids (dimension-major `soa`, `buf.len()` of them) to `x` by
/// squared L2: (index, distance). One pass per dimension over all centroids vectorises (a
/// distance call per centroid was ~8× slower at 64-d).
#[inline]
fn nearest(x: &[f32], soa: &[f32], buf: &mut [f32]) -> (usize, f32) {
    simd::distances_soa(x, soa, buf, false);
    let mut best = (0usize, f32::INFINITY);
    for (c, &d) in buf.iter().enumerate() {
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Row-major centroids (`dim` each) to dimension-major (how the query side keeps them too).
pub(crate) fn to_soa(rows: &[f32], dim: usize) -> Vec<f32> {
    let p = rows.len() / dim.max(1);
    let mut soa = vec![0f32; rows.len()];
    for (c, row) in rows.chunks_exact(dim.max(1)).enumerate() {
        for (t, x) in row.iter().enumerate() {
            if let Some(slot) = soa.get_mut(t * p + c) {
                *slot = *x;
            }
        }
    }
    soa
}

/// Train `p` centroids (row-major) on a seeded sample of `data` (`dim` floats per row) with
/// Lloyd's k-means under squared L2. An empty list is re-seeded with the sample point farthest
/// from its centroid. Deterministic for the same data, `p` and seed.
pub(crate) fn train(data: &[f32], dim: usize, p: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / dim.max(1);
    let p = p.min(n);
    if p == 0 || dim == 0 {
        return Vec::new();
    }
    let row = |i: usize| data.get(i * dim..i * dim + dim).unwrap_or_default();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x1F5_0C7A));
    order.truncate(n.min(p.saturating_mul(TRAIN_PER_LIST)).max(p));
    let mut cent: Vec<f32> = order
        .iter()
        .take(p)
        .flat_map(|&i| row(i))
        .copied()
        .collect();
    for _ in 0..ITERS {
        let soa = to_soa(&cent, dim);
        let assigned: Vec<(usize, f32)> = order
            .par_iter()
            .map_init(|| vec![0f32; p], |buf, &i| nearest(row(i), &soa, buf))
            .collect();
        let (sum, cnt) = order
            .par_iter()
            .zip(&assigned)
            .fold(
                || (vec![0f64; p * dim], vec![0usize; p]),
                |(mut sum, mut cnt), (&i, &(c, _))| {
                    if let Some(s) = sum.get_mut(c * dim..c * dim + dim) {
                        s.iter_mut()
                            .zip(row(i))
                            .for_each(|(a, x)| *a += f64::from(*x));
                    }
                    if let Some(k) = cnt.get_mut(c) {
                        *k += 1;
                    }
                    (sum, cnt)
                },
            )
            .reduce(
                || (vec![0f64; p * dim], vec![0usize; p]),
                |(mut a, mut ca), (b, cb)| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    ca.iter_mut().zip(&cb).for_each(|(x, y)| *x += y);
                    (a, ca)
                },
            );
        // Farthest sample points first, for re-seeding empty lists (sorted only if one is).
        let mut far: Vec<usize> = Vec::new();
        if cnt.contains(&0) {
            far = (0..assigned.len()).collect();
            far.sort_by(|&a, &b| {
                let da = assigned.get(a).map_or(0.0, |x| x.1);
                let db = assigned.get(b).map_or(0.0, |x| x.1);
                db.total_cmp(&da).then(a.cmp(&b))
            });
        }
        let mut far = far.into_iter();
        for c in 0..p {
            let k = cnt.get(c).copied().unwrap_or(0);
            let Some(dst) = cent.get_mut(c * dim..c * dim + dim) else {
                continue;
            };
            if k == 0 {
                if let Some(j) = far.next() {
                    dst.copy_from_slice(row(order.get(j).copied().unwrap_or(0)));
                }
            } else if let Some(s) = sum.get(c * dim..c * dim + dim) {
                dst.iter_mut()
                    .zip(s)
                    .for_each(|(y, x)| *y = (*x / k as f64) as f32);
            }
        }
    }
    cent
}

/// The list of every row of `data`: its nearest centroid by squared L2.
pub(crate) fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    let p = centroids.len() / dim.max(1);
    let soa = to_soa(centroids, dim);
    data.par_chunks(dim.max(1))
        .map_init(|| vec![0f32; p], |buf, x| nearest(x, &soa, buf).0 as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn separated_blobs_get_one_list_each() {
        // Four tight blobs far apart, 4 lists: each blob is one list.
        let (dim, per) = (8, 200);
        let mut rng = StdRng::seed_from_u64(3);
        let mut data = Vec::new();
        for b in 0..4 {
            for _ in 0..per {
                for t in 0..dim {
                    let centre = if t == b { 100.0 } else { 0.0 };
                    data.push(centre + rng.gen_range(-1.0f32..1.0));
                }
            }
        }
        let c = train(&data, dim, 4, 7);
        assert_eq!(c.len(), 4 * dim);
        assert_eq!(c, train(&data, dim, 4, 7), "deterministic");
        let a = assign(&data, dim, &c);
        for b in 0..4 {
            let first = a[b * per];
            assert!(
                a[b * per..(b + 1) * per].iter().all(|&x| x == first),
                "blob {b} split"
            );
            for o in 0..b {
                assert_ne!(a[o * per], first, "blobs {o} and {b} share a list");
            }
        }
    }

    #[test]
    fn more_lists_than_points_and_empty_input() {
        let data: Vec<f32> = (0..6).map(|x| x as f32).collect(); // 3 points of dim 2
        let c = train(&data, 2, 10, 1);
        assert_eq!(c.len(), 3 * 2, "lists capped at the point count");
        assert!(train(&[], 2, 4, 1).is_empty());
        assert_eq!(auto_count(1_000_000), 1000);
        assert_eq!(auto_count(3), 2);
        assert_eq!(auto_count(0), 0);
    }
}
