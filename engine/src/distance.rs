//! Exact distance functions. Smaller is closer for every metric.

use crate::ann::simd;
use crate::Metric;

/// Distance between `a` and `b` (same length) under `metric` (SIMD kernels where the CPU has
/// them; every search path, exact or graph, uses this one function).
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_distances() {
        let (a, b) = ([3.0f32, 0.0], [0.0f32, 4.0]);
        assert_eq!(distance(Metric::L2, &a, &b), 5.0);
        assert_eq!(
            distance(Metric::InnerProduct, &[1.0, 2.0], &[3.0, 4.0]),
            -11.0
        );
        assert!((distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-6);
        assert!(distance(Metric::Cosine, &[1.0, 1.0], &[2.0, 2.0]).abs() < 1e-6);
        assert_eq!(distance(Metric::Cosine, &[0.0, 0.0], &[1.0, 0.0]), 1.0);
    }
}
