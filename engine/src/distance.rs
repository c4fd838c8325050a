//! Exact distance functions. Smaller is closer for every metric. Scalar for now; SIMD kernels
//! arrive with the disk-ANN issue and must agree with these within tolerance.

use crate::Metric;

/// Distance between `a` and `b` (same length) under `metric`.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt(),
        Metric::InnerProduct => -dot(a, b),
        Metric::Cosine => {
            let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                1.0 - dot(a, b) / (na * nb)
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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
