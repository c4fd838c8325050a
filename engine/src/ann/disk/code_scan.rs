//! Filter-first with codes: score a filter's matches by code distance, keep the nearest.

use crate::ann::{to_space, QueryStats};

use super::topk::select_smallest;
use super::DiskIndex;

impl DiskIndex {
    /// Filter-first with codes: the code distance of every node whose ordinal `accept`s, and
    /// the `pool` nearest by code (ordinal, code distance), for a re-rank with full vectors.
    /// Codes are in memory, so this reads nothing from disk.
    pub(crate) fn scan_codes(
        &self,
        q: &[f32],
        pool: usize,
        candidates: &mut dyn Iterator<Item = usize>,
        accept: &dyn Fn(usize) -> bool,
        stats: &mut QueryStats,
    ) -> Vec<(f32, usize)> {
        let mut qs = Vec::new();
        to_space(self.metric, q, &mut qs);
        let table = self.quant.query_table(self.space, &qs, Vec::new());
        // Only the candidates (the filter's matches), not every node: at 0.1 % of 1M the
        // walk over all nodes cost 2.8 ms of a query's 2.9 (measured).
        let picked: Vec<(u32, usize)> = candidates
            .filter_map(|ord| Some((self.node_of(ord)?, ord))) // None: no vector
            .filter(|&(_, ord)| accept(ord))
            .collect();
        // Sparse matches make each code a cache miss the hardware prefetcher cannot predict:
        // fetch a few ahead (a 1 % filter on 1M × 64: 2,224 -> 2,811 QPS).
        const AHEAD: usize = 8;
        for &(node, _) in picked.iter().take(AHEAD) {
            self.prefetch_code(node);
        }
        let mut all: Vec<(f32, usize)> = Vec::with_capacity(picked.len());
        for (j, &(node, ord)) in picked.iter().enumerate() {
            if let Some(&(ahead, _)) = picked.get(j + AHEAD) {
                self.prefetch_code(ahead);
            }
            all.push((table.distance(self.code(node)), ord));
        }
        stats.distance_computations += all.len() as u64;
        if pool > 0 {
            select_smallest(&mut all, pool);
        }
        all
    }
}
