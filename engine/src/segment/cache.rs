//! Cache of decompressed document blocks shared by the segments of a database, bounded in bytes
//! (`Options::block_cache_bytes`). Keys are (segment id, block index); ids are never reused.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

#[derive(Debug, Clone, Copy)]
struct BlockBytes;

impl Weighter<(u64, u32), Arc<Vec<u8>>> for BlockBytes {
    fn weight(&self, _key: &(u64, u32), val: &Arc<Vec<u8>>) -> u64 {
        val.len() as u64 + 64
    }
}

/// Decompressed blocks by (segment id, block index).
#[derive(Debug)]
pub(crate) struct BlockCache(Cache<(u64, u32), Arc<Vec<u8>>, BlockBytes>);

impl BlockCache {
    pub(crate) fn new(bytes_max: usize) -> BlockCache {
        let items = (bytes_max / 4096).max(16);
        BlockCache(Cache::with_weighter(items, bytes_max as u64, BlockBytes))
    }

    pub(crate) fn get(&self, seg: u64, block: u32) -> Option<Arc<Vec<u8>>> {
        self.0.get(&(seg, block))
    }

    pub(crate) fn insert(&self, seg: u64, block: u32, raw: Arc<Vec<u8>>) {
        self.0.insert((seg, block), raw);
    }
}
