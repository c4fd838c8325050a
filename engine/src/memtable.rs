//! The memtable: every version of every document written since the last flush, in a
//! lock-free skiplist ordered by (key ascending, sequence descending).
//!
//! Invariants: entries are never removed or changed, so a reader at sequence `s` sees exactly
//! the newest version of each key with sequence <= `s`; a delete is a `None` version
//! (tombstone). Every entry of one write batch carries the batch's sequence (its WAL LSN); a
//! later operation on the same key in the same batch replaces the earlier one.

use std::cmp::Reverse;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_skiplist::SkipMap;

use crate::batch::Op;
use crate::Document;

/// Ordering key of an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MemKey {
    key: Vec<u8>,
    seq: Reverse<u64>,
}

/// A version of a key: the document, or `None` for a delete.
pub(crate) type Entry = Option<Arc<Document>>;

#[derive(Debug, Default)]
pub(crate) struct Memtable {
    map: SkipMap<MemKey, Entry>,
    bytes: AtomicUsize,
}

impl Memtable {
    pub(crate) fn new() -> Memtable {
        Memtable::default()
    }

    /// Insert the operations of one batch at sequence `seq`; returns the bytes it added (the
    /// accounting of [`Memtable::mem_bytes`]).
    pub(crate) fn apply(&self, seq: u64, ops: Vec<Op>) -> usize {
        let mut added = 0;
        for op in ops {
            let (key, version) = match op {
                Op::Put(d) => (d.key.clone(), Some(Arc::new(d))),
                Op::Delete(k) => (k, None),
            };
            let bytes = 48 + key.len() + version.as_ref().map_or(0, |d| d.mem_bytes());
            added += bytes;
            self.map.insert(
                MemKey {
                    key,
                    seq: Reverse(seq),
                },
                version,
            );
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        added
    }

    /// Approximate bytes held.
    pub(crate) fn mem_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Newest version of `key` with sequence <= `seq`; `None` if the memtable has none.
    pub(crate) fn get(&self, key: &[u8], seq: u64) -> Option<Entry> {
        let lo = MemKey {
            key: key.to_vec(),
            seq: Reverse(seq),
        };
        let e = self.map.lower_bound(Bound::Included(&lo))?;
        (e.key().key == key).then(|| e.value().clone())
    }

    /// Visit the newest version (sequence <= `seq`) of every key in `[lo, hi)` bounds, in key
    /// order. The visitor returns `false` to stop.
    pub(crate) fn for_each_visible(
        &self,
        seq: u64,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        mut f: impl FnMut(&[u8], &Entry) -> bool,
    ) {
        let start = match lo {
            Bound::Included(k) => Bound::Included(MemKey {
                key: k.to_vec(),
                seq: Reverse(u64::MAX),
            }),
            Bound::Excluded(k) => Bound::Excluded(MemKey {
                key: k.to_vec(),
                seq: Reverse(0),
            }),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut last: Option<Vec<u8>> = None;
        for e in self.map.range((start, Bound::Unbounded)) {
            let mk = e.key();
            let past_end = match hi {
                Bound::Included(h) => mk.key.as_slice() > h,
                Bound::Excluded(h) => mk.key.as_slice() >= h,
                Bound::Unbounded => false,
            };
            if past_end {
                return;
            }
            if mk.seq.0 > seq || last.as_deref() == Some(mk.key.as_slice()) {
                continue;
            }
            last = Some(mk.key.clone());
            if !f(&mk.key, e.value()) {
                return;
            }
        }
    }
    /// Up to `max` newest visible versions (sequence <= `seq`) of the keys within the bounds,
    /// in key order, or in reverse key order when `reverse` — one step of a lazy scan, which
    /// narrows its bounds past the last key it was given and asks again.
    pub(crate) fn visible_chunk(
        &self,
        seq: u64,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        reverse: bool,
        max: usize,
    ) -> Vec<(Vec<u8>, Entry)> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        if !reverse {
            self.for_each_visible(seq, lo, hi, |k, e| {
                out.push((k.to_vec(), e.clone()));
                out.len() < max
            });
            return out;
        }
        // Entries are ordered (key ascending, sequence descending): backwards, each key's
        // versions arrive oldest first, so the last one at or below `seq` is the visible one.
        let mk = |k: &[u8], s: u64| MemKey {
            key: k.to_vec(),
            seq: Reverse(s),
        };
        let start = match lo {
            Bound::Included(k) => Bound::Included(mk(k, u64::MAX)),
            Bound::Excluded(k) => Bound::Excluded(mk(k, 0)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match hi {
            Bound::Included(k) => Bound::Included(mk(k, 0)),
            Bound::Excluded(k) => Bound::Excluded(mk(k, u64::MAX)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut cur: Option<(Vec<u8>, Option<Entry>)> = None;
        for e in self.map.range((start, end)).rev() {
            let k = &e.key().key;
            if cur.as_ref().is_none_or(|(ck, _)| ck != k) {
                if let Some((ck, Some(v))) = cur.take() {
                    out.push((ck, v));
                    if out.len() >= max {
                        return out;
                    }
                }
                cur = Some((k.clone(), None));
            }
            if e.key().seq.0 <= seq {
                if let Some(c) = cur.as_mut() {
                    c.1 = Some(e.value().clone());
                }
            }
        }
        if let Some((ck, Some(v))) = cur {
            out.push((ck, v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_newest_version_at_their_sequence() {
        let m = Memtable::new();
        m.apply(
            1,
            vec![
                Op::Put(Document::new("a", "1")),
                Op::Put(Document::new("b", "1")),
            ],
        );
        m.apply(2, vec![Op::Delete(b"a".to_vec())]);
        m.apply(
            3,
            vec![
                Op::Put(Document::new("a", "3")),
                Op::Put(Document::new("a", "3b")),
            ],
        );
        let val = |k: &str, s| m.get(k.as_bytes(), s).map(|v| v.map(|d| d.value.clone()));
        assert_eq!(val("a", 0), None);
        assert_eq!(val("a", 1), Some(Some(b"1".to_vec())));
        assert_eq!(val("a", 2), Some(None));
        assert_eq!(
            val("a", 3),
            Some(Some(b"3b".to_vec())),
            "last op of a batch wins"
        );
        let mut seen = Vec::new();
        m.for_each_visible(2, Bound::Unbounded, Bound::Unbounded, |k, v| {
            seen.push((k.to_vec(), v.is_some()));
            true
        });
        assert_eq!(seen, vec![(b"a".to_vec(), false), (b"b".to_vec(), true)]);
    }
}
