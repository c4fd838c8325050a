//! Exact distance functions. Smaller is closer for every metric.

use crate::simd;
use crate::Metric;

/// Distance between `a` and `b` (same length) under `metric`, in the convention every query
/// reports and every radius is given in — the one faiss, hnswlib and Qdrant print: **squared**
/// Euclidean distance for L2, `1 − cos` for cosine, `−a·b` for inner product. Smaller is
/// closer for every metric.
///
/// For L2 it is the square of the f32 Euclidean distance the search ranks by, so it is the
/// exact value a [`crate::Hit`] carries (within an ulp of `Σ (a−b)²` summed in f32).
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    reported(metric, search_distance(metric, a, b))
}

/// The distance the search ranks by internally (every search path, exact or graph, uses this
/// one function; SIMD kernels where the CPU has them): Euclidean (not squared) for L2, which
/// the planner's statistics and the code-space conversions are written in.
pub(crate) fn search_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => simd::l2_sq(a, b).sqrt(),
        Metric::InnerProduct => -simd::dot(a, b),
        Metric::Cosine => {
            let (na, nb) = (simd::dot(a, a).sqrt(), simd::dot(b, b).sqrt());
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                1.0 - simd::dot(a, b) / (na * nb)
            }
        }
    }
}

/// A search distance in the reported convention ([`distance`]).
pub(crate) fn reported(metric: Metric, d: f32) -> f32 {
    match metric {
        Metric::L2 => d * d,
        Metric::InnerProduct | Metric::Cosine => d,
    }
}

/// A radius in the reported convention as a search distance no smaller than every search
/// distance whose reported value lies within it (the search prunes with it; the reported
/// values are then checked against the radius itself). `r` is finite, and >= 0 for L2.
pub(crate) fn search_radius(metric: Metric, r: f32) -> f32 {
    match metric {
        Metric::L2 => r.max(0.0).sqrt().next_up(),
        Metric::InnerProduct | Metric::Cosine => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_distances() {
        let (a, b) = ([3.0f32, 0.0], [0.0f32, 4.0]);
        assert_eq!(distance(Metric::L2, &a, &b), 25.0);
        assert_eq!(search_distance(Metric::L2, &a, &b), 5.0);
        assert_eq!(
            distance(Metric::InnerProduct, &[1.0, 2.0], &[3.0, 4.0]),
            -11.0
        );
        assert!((distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-6);
        assert!(distance(Metric::Cosine, &[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-6);
        assert_eq!(distance(Metric::Cosine, &[0.0, 0.0], &[1.0, 0.0]), 1.0);
    }

    #[test]
    fn a_radius_admits_every_distance_it_reports_within() {
        // Every search distance whose square is within r is within search_radius(r).
        for i in 0..20_000u32 {
            let d = i as f32 * 0.000_37;
            let r = reported(Metric::L2, d);
            assert!(d <= search_radius(Metric::L2, r), "{d} {r}");
        }
    }
}
