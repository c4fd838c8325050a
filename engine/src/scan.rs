//! Lazy ordered reads over a snapshot: key ranges and prefixes, forwards or backwards, whole
//! documents or keys only.
//!
//! A [`Scan`] merges one cursor per source — each memtable (newest first), then each segment —
//! and yields the smallest (largest, backwards) key any cursor holds. The first source in that
//! order holding the key decides it: a memtable tombstone hides it, anything else is the live
//! version, and every other cursor at the same key steps past it. Segment cursors skip the
//! ordinals their deletion bitmap marks; memtable cursors read a chunk of
//! [`MEM_CHUNK`] entries at a time. So a scan costs work in proportion to what it yields (plus
//! one key comparison per source per step), holds at most one chunk per memtable, and decodes
//! a segment document only when it is returned.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::bitset::Bitset;
use crate::memtable::{Entry, Memtable};
use crate::segment::Segment;
use crate::version::Snapshot;
use crate::{Document, Result};

/// Memtable entries a cursor reads per step.
const MEM_CHUNK: usize = 256;

/// A lazy, ordered read of the documents of a [`Snapshot`] whose keys lie in a range.
///
/// Made by [`Snapshot::range`], [`Snapshot::prefix`], [`crate::Db::range`] and
/// [`crate::Db::prefix`]; [`Scan::reverse`] reads it backwards and [`Scan::keys`] yields keys
/// without decoding documents. It owns its snapshot, so it stays valid (and unchanged) while
/// writes, flushes and compactions go on. After an error it yields nothing more.
///
/// ```
/// # fn main() -> strata::Result<()> {
/// use strata::{Db, Document, Metric, Schema};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Db::create(dir.path(), Schema::new(2, Metric::L2))?;
/// for k in ["user:1", "user:2", "user:3", "post:1"] {
///     db.put(Document::new(k, ""))?;
/// }
/// let keys: Vec<Vec<u8>> = db.prefix(b"user:").reverse().keys().collect::<strata::Result<_>>()?;
/// assert_eq!(keys, [b"user:3".to_vec(), b"user:2".to_vec(), b"user:1".to_vec()]);
/// let first = db.range(b"p".to_vec()..).next().transpose()?;
/// assert_eq!(first.map(|d| d.key.clone()), Some(b"post:1".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Scan {
    snap: Snapshot,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    reverse: bool,
    /// Built on the first step, so [`Scan::reverse`] can still change the direction.
    sources: Option<Vec<Source>>,
    done: bool,
}

#[derive(Debug)]
enum Source {
    Mem {
        mt: Arc<Memtable>,
        buf: VecDeque<(Vec<u8>, Entry)>,
        /// The bounds still to read (narrowed past every chunk read).
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        exhausted: bool,
    },
    /// Ordinals `a..b` of `seg` still to read (those set in `deleted` are skipped).
    Seg {
        seg: Arc<Segment>,
        deleted: Arc<Bitset>,
        a: usize,
        b: usize,
    },
}

/// What the deciding source holds for a key.
enum Found {
    Mem(Entry),
    Seg(Arc<Segment>, usize),
}

/// The smallest key greater than every key that starts with `prefix` (`None`: no such key,
/// the prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

impl Scan {
    pub(crate) fn new<R: RangeBounds<Vec<u8>>>(snap: Snapshot, range: R) -> Scan {
        Scan {
            snap,
            lo: range.start_bound().cloned(),
            hi: range.end_bound().cloned(),
            reverse: false,
            sources: None,
            done: false,
        }
    }

    pub(crate) fn with_prefix(snap: Snapshot, prefix: &[u8]) -> Scan {
        let hi = match prefix_end(prefix) {
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        Scan::new(snap, (Bound::Included(prefix.to_vec()), hi))
    }

    /// Read from the last key of the range to the first. (Call before the first step.)
    pub fn reverse(mut self) -> Scan {
        if self.sources.is_none() {
            self.reverse = !self.reverse;
        }
        self
    }

    /// Yield keys only: segment documents are not decoded (unless a mandatory filter must
    /// see them).
    pub fn keys(self) -> Keys {
        Keys(self)
    }

    /// Whether the bounds admit no key at all (then every source is empty).
    fn empty_range(&self) -> bool {
        use Bound::*;
        match (&self.lo, &self.hi) {
            (Included(l), Included(h)) => l > h,
            (Included(l), Excluded(h))
            | (Excluded(l), Included(h))
            | (Excluded(l), Excluded(h)) => l >= h,
            _ => false,
        }
    }

    fn build(&self) -> Vec<Source> {
        if self.empty_range() {
            return Vec::new();
        }
        let v = &self.snap.version;
        let mut out: Vec<Source> = std::iter::once(&v.active)
            .chain(v.frozen.iter().map(|(m, _)| m))
            .map(|mt| Source::Mem {
                mt: mt.clone(),
                buf: VecDeque::new(),
                lo: self.lo.clone(),
                hi: self.hi.clone(),
                exhausted: false,
            })
            .collect();
        for ls in &v.segments {
            let seg = &ls.seg;
            // First ordinal with key > k.
            let after = |k: &[u8]| {
                let j = seg.lower_bound(k);
                if j < seg.len() && seg.key(j) == k {
                    j + 1
                } else {
                    j
                }
            };
            let a = match &self.lo {
                Bound::Included(k) => seg.lower_bound(k),
                Bound::Excluded(k) => after(k),
                Bound::Unbounded => 0,
            };
            let b = match &self.hi {
                Bound::Included(k) => after(k),
                Bound::Excluded(k) => seg.lower_bound(k),
                Bound::Unbounded => seg.len(),
            };
            if a < b {
                out.push(Source::Seg {
                    seg: seg.clone(),
                    deleted: ls.deleted.clone(),
                    a,
                    b,
                });
            }
        }
        out
    }

    /// The next key of source `s` in scan order (refilling a memtable cursor's chunk).
    fn peek(s: &mut Source, seq: u64, reverse: bool) -> Option<&[u8]> {
        match s {
            Source::Mem {
                mt,
                buf,
                lo,
                hi,
                exhausted,
            } => {
                if buf.is_empty() && !*exhausted {
                    let chunk =
                        mt.visible_chunk(seq, as_slice(lo), as_slice(hi), reverse, MEM_CHUNK);
                    *exhausted = chunk.len() < MEM_CHUNK;
                    if let Some((last, _)) = chunk.last() {
                        if reverse {
                            *hi = Bound::Excluded(last.clone());
                        } else {
                            *lo = Bound::Excluded(last.clone());
                        }
                    }
                    buf.extend(chunk);
                }
                buf.front().map(|(k, _)| k.as_slice())
            }
            Source::Seg {
                seg, deleted, a, b, ..
            } => {
                // Skip deleted ordinals at the end we read from.
                while *a < *b {
                    let i = if reverse { *b - 1 } else { *a };
                    if !deleted.get(i) {
                        return Some(seg.key(i));
                    }
                    if reverse {
                        *b -= 1;
                    } else {
                        *a += 1;
                    }
                }
                None
            }
        }
    }

    /// Step source `s` past its current key (which `peek` has just returned).
    fn take(s: &mut Source, reverse: bool) -> Option<Found> {
        match s {
            Source::Mem { buf, .. } => buf.pop_front().map(|(_, e)| Found::Mem(e)),
            Source::Seg { seg, a, b, .. } => {
                if *a >= *b {
                    return None;
                }
                let i = if reverse {
                    *b -= 1;
                    *b
                } else {
                    *a += 1;
                    *a - 1
                };
                Some(Found::Seg(seg.clone(), i))
            }
        }
    }

    /// The next live key in scan order, with its document or where to decode it.
    fn step(&mut self) -> Option<Result<(Vec<u8>, Live)>> {
        if self.done {
            return None;
        }
        let mut sources = match self.sources.take() {
            Some(s) => s,
            None => self.build(),
        };
        let out = self.step_with(&mut sources);
        self.sources = Some(sources);
        match &out {
            None | Some(Err(_)) => self.done = true,
            Some(Ok(_)) => {}
        }
        out
    }

    fn step_with(&self, sources: &mut [Source]) -> Option<Result<(Vec<u8>, Live)>> {
        let (snap, seq, reverse) = (&self.snap, self.snap.seq, self.reverse);
        loop {
            // The key this step decides: the first in scan order over every source.
            let mut best: Option<Vec<u8>> = None;
            for s in sources.iter_mut() {
                if let Some(k) = Scan::peek(s, seq, reverse) {
                    let better = match &best {
                        None => true,
                        Some(b) => (k < b.as_slice()) != reverse && k != b.as_slice(),
                    };
                    if better {
                        best = Some(k.to_vec());
                    }
                }
            }
            let key = best?;
            // The first source (newest) holding it decides; the others step past it.
            let mut found = None;
            for s in sources.iter_mut() {
                if Scan::peek(s, seq, reverse) == Some(key.as_slice()) {
                    let f = Scan::take(s, reverse);
                    if found.is_none() {
                        found = f;
                    }
                }
            }
            let live = match found {
                None | Some(Found::Mem(None)) => continue,
                Some(Found::Mem(Some(d))) => Live::Doc(d),
                Some(Found::Seg(seg, ord)) => Live::Seg(seg, ord),
            };
            // A mandatory filter sees the document (decoded here, once).
            let live = match (&snap.mandatory, live) {
                (None, live) => live,
                (Some(_), live) => match self.decode(live) {
                    Ok(d) if snap.admits(&d) => Live::Doc(d),
                    Ok(_) => continue,
                    Err(e) => return Some(Err(e)),
                },
            };
            return Some(Ok((key, live)));
        }
    }

    fn decode(&self, live: Live) -> Result<Arc<Document>> {
        match live {
            Live::Doc(d) => Ok(d),
            Live::Seg(seg, ord) => Ok(Arc::new(seg.doc(ord)?)),
        }
    }
}

/// A live version found by a step: a memtable document, or a segment ordinal not yet decoded.
enum Live {
    Doc(Arc<Document>),
    Seg(Arc<Segment>, usize),
}

impl Iterator for Scan {
    type Item = Result<Arc<Document>>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.step()?.and_then(|(_, live)| self.decode(live));
        if r.is_err() {
            self.done = true;
        }
        Some(r)
    }
}

impl std::iter::FusedIterator for Scan {}

/// The keys of a [`Scan`], in its order ([`Scan::keys`]).
#[derive(Debug)]
pub struct Keys(Scan);

impl Iterator for Keys {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.step().map(|r| r.map(|(k, _)| k))
    }
}

impl std::iter::FusedIterator for Keys {}

/// Key-order reads of a snapshot (they live here, with [`Scan`], so that the snapshot does
/// not depend on its scans).
impl Snapshot {
    /// A lazy read of the documents with keys in `range`, in key order (see [`Scan`]).
    pub fn range<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Scan {
        Scan::new(self.clone(), range)
    }

    /// A lazy read of the documents whose key starts with `prefix`, in key order; it stops
    /// at the first key past the prefix.
    pub fn prefix(&self, prefix: &[u8]) -> Scan {
        Scan::with_prefix(self.clone(), prefix)
    }

    /// Documents with keys in `range`, in key order, read into memory ([`Snapshot::range`]
    /// reads them lazily).
    pub fn scan<R: RangeBounds<Vec<u8>>>(&self, range: R) -> Result<Vec<Arc<Document>>> {
        self.range(range).collect()
    }

    /// Documents whose key starts with `prefix`, in key order, read into memory
    /// ([`Snapshot::prefix`] reads them lazily).
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Arc<Document>>> {
        self.prefix(prefix).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_every_extension() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
