//! Compressed vector codes that steer the graph search from memory: SQ8 (one byte per
//! dimension, per-dimension min/step) and PQ (product quantisation: `m` sub-spaces of 256
//! centroids each, one byte per sub-space, trained per segment with seeded k-means).
//! Hand-written: they are part of the on-disk format (`docs/format.md`, "ANN codes").

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::Space;
use crate::simd;

/// Which code a segment's ANN index uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// One byte per dimension (quarter of the raw size).
    Sq8,
    /// Product quantisation with this many one-byte sub-spaces (`0` = `dim / 4`, at least 1).
    Pq(u32),
    /// PQ sized by measurement on each segment's own vectors: `dim / 4` sub-spaces, or
    /// `dim / 2` where the smaller codes rank fewer than 95 % of sample rows' true 10 nearest
    /// among their 20 nearest by code distance and the larger ones rank more and fit the
    /// memory budget (`docs/benchmarks.md`, "Codes that measure themselves").
    Auto,
}

impl CodeKind {
    pub(crate) fn tag(self) -> u32 {
        match self {
            CodeKind::Sq8 => 1,
            CodeKind::Pq(_) | CodeKind::Auto => 2,
        }
    }
}

/// Trained quantiser parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Quantizer {
    Sq8 { lo: Vec<f32>, step: Vec<f32> },
    Pq(Pq),
}

/// Product quantiser: sub-space `j` covers dims `bounds[j]..bounds[j+1]`; its 256 centroids are
/// stored dimension-major ("structure of arrays": `centroids[bounds[j] * 256 + t * 256 + c]` is
/// component `t` of centroid `c`), so distances from one point to all 256 centroids are
/// straight vector loops.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pq {
    pub dim: usize,
    pub bounds: Vec<usize>,
    pub centroids: Vec<f32>,
}

pub(crate) const PQ_CENTROIDS: usize = 256;
/// Training sample per segment: about 40 points per centroid, the usual floor for k-means.
const PQ_TRAIN_SAMPLE: usize = 10_240;
const PQ_ITERS: usize = 10;

impl Pq {
    pub(crate) fn m(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    fn sub(&self, j: usize) -> (usize, usize) {
        let s = self.bounds.get(j).copied().unwrap_or(0);
        let e = self.bounds.get(j + 1).copied().unwrap_or(s);
        (s, e)
    }

    /// Offset of sub-space `j`'s centroid table.
    fn table_at(&self, j: usize) -> usize {
        self.sub(j).0 * PQ_CENTROIDS
    }

    fn soa(&self, j: usize) -> &[f32] {
        let (s, e) = self.sub(j);
        let at = self.table_at(j);
        self.centroids
            .get(at..at + (e - s) * PQ_CENTROIDS)
            .unwrap_or_default()
    }

    /// Component `t` of centroid `c` in sub-space `j`.
    #[cfg(test)]
    fn component(&self, j: usize, t: usize, c: usize) -> f32 {
        self.soa(j)
            .get(t * PQ_CENTROIDS + c)
            .copied()
            .unwrap_or(0.0)
    }

    pub(crate) fn bounds_for(dim: usize, m: usize) -> Vec<usize> {
        let m = m.clamp(1, dim.max(1));
        (0..=m).map(|j| j * dim / m).collect()
    }

    /// Train on `rows` (row-major, `dim` wide) with seeded k-means per sub-space.
    pub(crate) fn train(rows: &[f32], dim: usize, m: usize, seed: u64) -> Pq {
        let n = rows.len() / dim.max(1);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        idx.truncate(PQ_TRAIN_SAMPLE);
        idx.sort_unstable();
        let bounds = Pq::bounds_for(dim, m);
        let tables: Vec<Vec<f32>> = bounds
            .windows(2)
            .enumerate()
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|(j, w)| {
                let (s, e) = (
                    w.first().copied().unwrap_or(0),
                    w.get(1).copied().unwrap_or(0),
                );
                let sample: Vec<f32> = idx
                    .iter()
                    .flat_map(|&i| rows.get(i * dim + s..i * dim + e).unwrap_or_default())
                    .copied()
                    .collect();
                kmeans_soa(&sample, e - s, seed ^ (j as u64).wrapping_mul(0x9E37))
            })
            .collect();
        Pq {
            dim,
            bounds,
            centroids: tables.concat(),
        }
    }

    pub(crate) fn encode(&self, v: &[f32], out: &mut Vec<u8>) {
        let mut d = [0f32; PQ_CENTROIDS];
        for j in 0..self.m() {
            let (s, e) = self.sub(j);
            to_all_centroids(
                Space::L2,
                v.get(s..e).unwrap_or_default(),
                self.soa(j),
                &mut d,
            );
            out.push(argmin(&d).0 as u8);
        }
    }

    #[cfg(test)]
    pub(crate) fn decode(&self, code: &[u8]) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.dim);
        for (j, &c) in code.iter().enumerate().take(self.m()) {
            let (s, e) = self.sub(j);
            v.extend((0..e - s).map(|t| self.component(j, t, c as usize)));
        }
        v
    }
}

/// Distances (in `space`) from `x` to all 256 centroids of a dimension-major table.
#[inline]
fn to_all_centroids(space: Space, x: &[f32], soa: &[f32], out: &mut [f32; PQ_CENTROIDS]) {
    // The same loop as the SIMD kernel's portable body; there it runs 8 wide under AVX2.
    simd::distances_soa(x, soa, out, space == Space::Ip);
}

/// (index, value) of the smallest entry (first on ties; NaN-free input). Eight independent
/// lanes find the minimum (this vectorises; a running compare-and-select over 256 entries was
/// a serial dependency chain and most of PQ training), then one scan finds its position.
#[inline]
fn argmin(d: &[f32]) -> (usize, f32) {
    let mut lanes = [f32::INFINITY; 8];
    let chunks = d.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, x) in lanes.iter_mut().zip(c) {
            *m = if *x < *m { *x } else { *m };
        }
    }
    let mut min = f32::INFINITY;
    for x in lanes.iter().chain(tail) {
        if *x < min {
            min = *x;
        }
    }
    let at = d.iter().position(|x| *x == min).unwrap_or(0);
    (at, min)
}

/// Lloyd's k-means with 256 centroids, returned dimension-major (`d * 256` floats). Initial
/// centroids are distinct seeded sample points; an empty cluster is re-seeded with the point
/// farthest from its centroid. With fewer points than centroids, points repeat.
fn kmeans_soa(points: &[f32], d: usize, seed: u64) -> Vec<f32> {
    let k = PQ_CENTROIDS;
    let n = points.len() / d.max(1);
    let row = |i: usize| points.get(i * d..i * d + d).unwrap_or_default();
    let mut cent = vec![0f32; k * d];
    if n == 0 || d == 0 {
        return cent;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let set = |cent: &mut Vec<f32>, c: usize, x: &[f32]| {
        for (t, v) in x.iter().enumerate() {
            if let Some(slot) = cent.get_mut(t * k + c) {
                *slot = *v;
            }
        }
    };
    for c in 0..k {
        let i = order.get(c % n).copied().unwrap_or(0);
        set(&mut cent, c, row(i));
    }
    let mut assign = vec![0usize; n];
    let mut dist = [0f32; PQ_CENTROIDS];
    for _ in 0..PQ_ITERS {
        let mut far = (f32::NEG_INFINITY, 0usize);
        for (i, a) in assign.iter_mut().enumerate() {
            to_all_centroids(Space::L2, row(i), &cent, &mut dist);
            let (c, dd) = argmin(&dist);
            *a = c;
            if dd > far.0 {
                far = (dd, i);
            }
        }
        let mut sum = vec![0f64; k * d];
        let mut cnt = vec![0usize; k];
        for (i, &a) in assign.iter().enumerate() {
            if let Some(c) = cnt.get_mut(a) {
                *c += 1;
            }
            for (t, x) in row(i).iter().enumerate() {
                if let Some(s) = sum.get_mut(t * k + a) {
                    *s += f64::from(*x);
                }
            }
        }
        for c in 0..k {
            match cnt.get(c).copied().unwrap_or(0) {
                0 if n >= k => set(&mut cent, c, row(far.1)),
                0 => {}
                m => {
                    for t in 0..d {
                        if let (Some(y), Some(s)) = (cent.get_mut(t * k + c), sum.get(t * k + c)) {
                            *y = (*s / m as f64) as f32;
                        }
                    }
                }
            }
        }
    }
    cent
}

impl Quantizer {
    pub(crate) fn train(kind: CodeKind, rows: &[f32], dim: usize, seed: u64) -> Quantizer {
        match kind {
            CodeKind::Sq8 => {
                let mut lo = vec![f32::INFINITY; dim];
                let mut hi = vec![f32::NEG_INFINITY; dim];
                for r in rows.chunks_exact(dim.max(1)) {
                    for ((l, h), x) in lo.iter_mut().zip(hi.iter_mut()).zip(r) {
                        *l = l.min(*x);
                        *h = h.max(*x);
                    }
                }
                let step = lo
                    .iter()
                    .zip(&hi)
                    .map(|(l, h)| if h > l { (h - l) / 255.0 } else { 0.0 })
                    .collect();
                lo.iter_mut()
                    .filter(|l| !l.is_finite())
                    .for_each(|l| *l = 0.0);
                Quantizer::Sq8 { lo, step }
            }
            CodeKind::Pq(0) | CodeKind::Auto => {
                Quantizer::Pq(Pq::train(rows, dim, default_pq(dim).0 as usize, seed))
            }
            CodeKind::Pq(m) => {
                let m = m as usize;
                Quantizer::Pq(Pq::train(rows, dim, m, seed))
            }
        }
    }

    pub(crate) fn kind(&self) -> CodeKind {
        match self {
            Quantizer::Sq8 { .. } => CodeKind::Sq8,
            Quantizer::Pq(p) => CodeKind::Pq(p.m() as u32),
        }
    }

    pub(crate) fn code_bytes(&self) -> usize {
        match self {
            Quantizer::Sq8 { lo, .. } => lo.len(),
            Quantizer::Pq(p) => p.m(),
        }
    }

    pub(crate) fn encode(&self, v: &[f32], out: &mut Vec<u8>) {
        match self {
            Quantizer::Sq8 { lo, step } => {
                for ((x, l), s) in v.iter().zip(lo).zip(step) {
                    let q = if *s > 0.0 { ((x - l) / s).round() } else { 0.0 };
                    out.push(q.clamp(0.0, 255.0) as u8);
                }
            }
            Quantizer::Pq(p) => p.encode(v, out),
        }
    }

    #[cfg(test)]
    pub(crate) fn decode(&self, code: &[u8]) -> Vec<f32> {
        match self {
            Quantizer::Sq8 { lo, step } => code
                .iter()
                .zip(lo.iter().zip(step))
                .map(|(c, (l, s))| l + s * f32::from(*c))
                .collect(),
            Quantizer::Pq(p) => p.decode(code),
        }
    }

    /// Per-query state for fast code distances.
    /// Per-query state; `buf` is a reused allocation (PQ tables are 1 KiB per sub-space).
    pub(crate) fn query_table(&self, space: Space, q: &[f32], mut buf: Vec<f32>) -> QueryTable {
        match self {
            Quantizer::Sq8 { lo, step } => {
                // A code `c` decodes to `lo + step · c`, so in code units:
                // L2: Σ step² (a − c)² with a = (q − lo) / step (a dimension with step 0
                // contributes the constant (q − lo)²); IP: −Σ q (lo + step c) =
                // −Σ q lo + Σ (−q step) c. One weighted kernel serves both.
                let mut w = Vec::with_capacity(q.len());
                let mut a = Vec::with_capacity(q.len());
                let mut bias = 0f32;
                for ((x, l), st) in q.iter().zip(lo).zip(step) {
                    match space {
                        Space::L2 if *st > 0.0 => {
                            w.push(st * st);
                            a.push((x - l) / st);
                        }
                        Space::L2 => {
                            bias += (x - l) * (x - l);
                            w.push(0.0);
                            a.push(0.0);
                        }
                        Space::Ip => {
                            bias -= x * l;
                            w.push(-x * st);
                            a.push(0.0);
                        }
                    }
                }
                QueryTable::Sq8 {
                    a,
                    w,
                    bias,
                    ip: space == Space::Ip,
                }
            }
            Quantizer::Pq(p) => {
                let m = p.m();
                let mut t = std::mem::take(&mut buf);
                t.clear();
                t.reserve(m * PQ_CENTROIDS);
                let mut d = [0f32; PQ_CENTROIDS];
                for j in 0..m {
                    let (s, e) = p.sub(j);
                    to_all_centroids(space, q.get(s..e).unwrap_or_default(), p.soa(j), &mut d);
                    t.extend_from_slice(&d);
                }
                QueryTable::Pq(t)
            }
        }
    }
}

/// Sum of one table entry per sub-space. Rows are fixed 256-entry arrays indexed by a byte, so
/// there are no bounds checks; four accumulators break the add dependency chain (the search
/// spends most of its time here).
#[inline(always)]
#[allow(
    clippy::indexing_slicing,
    reason = "a u8 index into a 256-entry array is always in bounds"
)]
fn pq_adc(t: &[f32], code: &[u8]) -> f32 {
    let (rows, _) = t.as_chunks::<PQ_CENTROIDS>();
    let mut acc = [0f32; 4];
    let mut rc = rows.chunks_exact(4).zip(code.chunks_exact(4));
    for (r, c) in rc.by_ref() {
        if let ([r0, r1, r2, r3], [c0, c1, c2, c3]) = (r, c) {
            acc[0] += r0[*c0 as usize];
            acc[1] += r1[*c1 as usize];
            acc[2] += r2[*c2 as usize];
            acc[3] += r3[*c3 as usize];
        }
    }
    let done = rows.len().min(code.len()) / 4 * 4;
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (r, &c) in rows.iter().zip(code).skip(done) {
        s += r[c as usize];
    }
    s
}

/// Sample rows [`CodeKind::Auto`] measures codes with: 2,000 true neighbours, so a share
/// near the 0.95 bar is known to about ±0.01 (binomial; neighbours of one row correlate), well
/// inside the gaps measured between the sets (0.911 vs 0.984).
const MEASURE_QUERIES: usize = 200;
/// The neighbours each sample row must find (recall@10, the product's figure).
const MEASURE_K: usize = 10;
/// ... among this many nearest by code distance: twice `k`, about the graph list at which the
/// three benchmark sets reach recall 0.95 (L 16–24, `docs/benchmarks.md`): codes that rank a
/// neighbour past it make the search walk longer lists for the same recall.
const MEASURE_DEPTH: usize = 2 * MEASURE_K;
/// The share of true neighbours `dim / 4` codes must rank within [`MEASURE_DEPTH`]: the
/// recall the product is measured at (recall@10 0.95).
pub(crate) const CODE_RECALL_TARGET: f64 = 0.95;

/// The `dim / 4` and `dim / 2` sub-space counts [`CodeKind::Auto`] chooses between.
pub(crate) fn default_pq(dim: usize) -> (u32, u32) {
    let small = (dim / 4).max(1);
    (small as u32, (dim / 2).max(small) as u32)
}

/// The exact [`MEASURE_K`] nearest rows (in `space`) of up to [`MEASURE_QUERIES`] sample rows
/// of `data`, each sample row excluded from its own answer: `(row, nearest rows)`.
pub(crate) fn sample_truth(
    data: &[f32],
    dim: usize,
    space: Space,
    seed: u64,
) -> Vec<(usize, Vec<u32>)> {
    let n = data.len() / dim.max(1);
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut StdRng::seed_from_u64(seed ^ 0xC0DE));
    rows.truncate(MEASURE_QUERIES);
    rows.into_par_iter()
        .map(|q| {
            let qv = data.get(q * dim..(q + 1) * dim).unwrap_or_default();
            let d: Vec<(f32, u32)> = data
                .chunks_exact(dim.max(1))
                .enumerate()
                .filter(|(i, _)| *i != q)
                .map(|(i, r)| (super::space_distance(space, qv, r), i as u32))
                .collect();
            (q, nearest(d, MEASURE_K))
        })
        .collect()
}

/// The ids of the `k` smallest `(distance, id)` pairs, nearest first (ties by id).
fn nearest(mut d: Vec<(f32, u32)>, k: usize) -> Vec<u32> {
    let by = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if d.len() > k {
        d.select_nth_unstable_by(k, by);
        d.truncate(k);
    }
    d.sort_by(by);
    d.into_iter().map(|x| x.1).collect()
}

/// The share of `truth`'s true neighbours that `codes` (one per row of `data`, in row order)
/// rank among each sample row's [`MEASURE_DEPTH`] nearest by code distance (the sample row
/// itself excluded). `1.0` without samples.
pub(crate) fn code_recall(
    quant: &Quantizer,
    codes: &[u8],
    data: &[f32],
    dim: usize,
    space: Space,
    truth: &[(usize, Vec<u32>)],
) -> f64 {
    let cb = quant.code_bytes().max(1);
    let (found, wanted) = truth
        .par_iter()
        .map(|(q, want)| {
            let qv = data.get(q * dim..(q + 1) * dim).unwrap_or_default();
            let t = quant.query_table(space, qv, Vec::new());
            let d: Vec<(f32, u32)> = codes
                .chunks_exact(cb)
                .enumerate()
                .filter(|(i, _)| i != q)
                .map(|(i, c)| (t.distance(c), i as u32))
                .collect();
            let top = nearest(d, MEASURE_DEPTH);
            (want.iter().filter(|w| top.contains(w)).count(), want.len())
        })
        .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if wanted == 0 {
        1.0
    } else {
        found as f64 / wanted as f64
    }
}

/// Distances from one query to codes.
#[derive(Debug)]
pub(crate) enum QueryTable {
    /// Scalar codes in code units: `bias + Σ w (a − c)²` (L2) or `bias + Σ w c` (IP).
    Sq8 {
        a: Vec<f32>,
        w: Vec<f32>,
        bias: f32,
        ip: bool,
    },
    /// `m * 256` partial distances.
    Pq(Vec<f32>),
}

impl QueryTable {
    /// [`QueryTable::distance`] of each of `nodes`' codes (`code_of(node)`) into `out`, with
    /// the table kind matched once for the batch (a partition walk scores runs of codes).
    #[inline]
    pub(crate) fn distances<'c>(
        &self,
        nodes: &[u32],
        code_of: impl Fn(u32) -> &'c [u8],
        out: &mut Vec<f32>,
    ) {
        out.clear();
        match self {
            QueryTable::Pq(t) => out.extend(nodes.iter().map(|&n| pq_adc(t, code_of(n)))),
            _ => out.extend(nodes.iter().map(|&n| self.distance(code_of(n)))),
        }
    }

    /// Approximate distance (in the index's space) from the query to `code`.
    #[inline(always)]
    pub(crate) fn distance(&self, code: &[u8]) -> f32 {
        match self {
            QueryTable::Pq(t) => pq_adc(t, code),
            QueryTable::Sq8 { a, w, bias, ip } => bias + simd::sq8_weighted(a, w, code, *ip),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn sample_truth_is_the_brute_force_answer_without_the_row_itself() {
        let dim = 6;
        let r = rows(700, dim, 11);
        let truth = sample_truth(&r, dim, Space::L2, 3);
        assert_eq!(truth.len(), MEASURE_QUERIES);
        for (q, got) in &truth {
            let qv = r.get(q * dim..(q + 1) * dim).unwrap();
            let want: Vec<u32> = crate::ann::testdata::brute_force(&r, dim, qv, MEASURE_K + 1)
                .into_iter()
                .filter(|i| *i as usize != *q)
                .take(MEASURE_K)
                .collect();
            assert_eq!(got, &want, "row {q}");
        }
        // Fewer rows than samples: every row is a sample, with every other row its answer.
        let few = rows(5, dim, 1);
        let t = sample_truth(&few, dim, Space::L2, 3);
        assert_eq!(t.len(), 5);
        assert!(t
            .iter()
            .all(|(q, a)| a.len() == 4 && !a.contains(&(*q as u32))));
    }

    #[test]
    fn code_recall_counts_the_true_neighbours_codes_rank_near() {
        let dim = 8;
        let r = rows(3000, dim, 2);
        let truth = sample_truth(&r, dim, Space::L2, 0);
        let score = |kind| {
            let q = Quantizer::train(kind, &r, dim, 0);
            let mut c = Vec::new();
            for v in r.chunks_exact(dim) {
                q.encode(v, &mut c);
            }
            code_recall(&q, &c, &r, dim, Space::L2, &truth)
        };
        // SQ8 is nearly exact here; one 256-centroid table for 8 uniform dims is not.
        let (sq8, pq1) = (score(CodeKind::Sq8), score(CodeKind::Pq(1)));
        assert!(sq8 >= 0.99, "sq8 {sq8}");
        assert!(pq1 < 0.5, "pq1 {pq1}");
        assert!(score(CodeKind::Pq(4)) > pq1);
        assert_eq!(
            code_recall(
                &Quantizer::train(CodeKind::Sq8, &r, dim, 0),
                &[],
                &r,
                dim,
                Space::L2,
                &[]
            ),
            1.0
        );
    }

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    /// (table distance, distance to the decoded vector) of the first `take` rows' codes.
    fn table_vs_decoded(
        qz: &Quantizer,
        space: Space,
        q: &[f32],
        r: &[f32],
        dim: usize,
        take: usize,
    ) -> Vec<(f32, f32)> {
        let t = qz.query_table(space, q, Vec::new());
        r.chunks_exact(dim)
            .take(take)
            .map(|v| {
                let mut c = Vec::new();
                qz.encode(v, &mut c);
                let d = qz.decode(&c);
                let want = match space {
                    Space::L2 => simd::l2_sq_scalar(q, &d),
                    Space::Ip => -simd::dot_scalar(q, &d),
                };
                (t.distance(&c), want)
            })
            .collect()
    }

    #[test]
    fn sq8_error_is_at_most_half_a_step() {
        let (n, dim) = (500, 13);
        let r = rows(n, dim, 1);
        let q = Quantizer::train(CodeKind::Sq8, &r, dim, 0);
        let Quantizer::Sq8 { step, .. } = &q else {
            unreachable!()
        };
        for v in r.chunks_exact(dim) {
            let mut c = Vec::new();
            q.encode(v, &mut c);
            assert_eq!(c.len(), dim);
            for ((x, y), s) in v.iter().zip(q.decode(&c)).zip(step) {
                assert!((x - y).abs() <= s / 2.0 + 1e-6, "{x} vs {y} step {s}");
            }
        }
    }

    /// A dimension where every training row has the same value has step 0: the SQ8 table
    /// adds its distance as a constant (L2) or through the bias (IP) instead of dividing by
    /// the step.
    #[test]
    fn sq8_table_with_a_constant_dimension_equals_the_decoded_distance() {
        let (n, dim) = (300, 19);
        let mut r = rows(n, dim, 4);
        for row in r.chunks_exact_mut(dim) {
            row[5] = 0.75;
        }
        let qz = Quantizer::train(CodeKind::Sq8, &r, dim, 0);
        let Quantizer::Sq8 { step, .. } = &qz else {
            unreachable!()
        };
        assert_eq!(step[5], 0.0);
        let q = rows(1, dim, 8);
        for space in [Space::L2, Space::Ip] {
            for (got, want) in table_vs_decoded(&qz, space, &q, &r, dim, 40) {
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{space:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn pq_is_deterministic_and_reduces_error() {
        let (n, dim) = (3000, 16);
        let r = rows(n, dim, 2);
        let a = Quantizer::train(CodeKind::Pq(4), &r, dim, 42);
        let b = Quantizer::train(CodeKind::Pq(4), &r, dim, 42);
        assert_eq!(a, b, "same seed, same codebook");
        assert_eq!(a.code_bytes(), 4);
        // Mean squared reconstruction error is well below the data's variance (1/3 per dim).
        let mut err = 0f64;
        for v in r.chunks_exact(dim) {
            let mut c = Vec::new();
            a.encode(v, &mut c);
            err += f64::from(simd::l2_sq_scalar(v, &a.decode(&c)));
        }
        let per_dim = err / (n * dim) as f64;
        assert!(per_dim < 0.2, "PQ error per dim {per_dim}");
    }

    #[test]
    fn table_distance_equals_distance_to_decoded_vector() {
        let (n, dim) = (600, 12);
        let r = rows(n, dim, 3);
        for kind in [CodeKind::Sq8, CodeKind::Pq(3)] {
            let qz = Quantizer::train(kind, &r, dim, 5);
            for space in [Space::L2, Space::Ip] {
                let q: Vec<f32> = rows(1, dim, 9);
                for (got, want) in table_vs_decoded(&qz, space, &q, &r, dim, 50) {
                    assert!((got - want).abs() < 1e-4, "{kind:?} {space:?}");
                }
            }
        }
    }

    #[test]
    fn fewer_points_than_centroids() {
        let r = rows(10, 8, 4);
        let q = Quantizer::train(CodeKind::Pq(2), &r, 8, 1);
        for v in r.chunks_exact(8) {
            let mut c = Vec::new();
            q.encode(v, &mut c);
            assert!(
                simd::l2_sq_scalar(v, &q.decode(&c)) < 1e-9,
                "points are centroids"
            );
        }
    }
}
