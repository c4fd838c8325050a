//! Versions (the set of memtables and segments at one moment) and the read path over them.
//!
//! Invariants:
//! - a [`Snapshot`] is a version plus a sequence read together under the version lock, so it
//!   sees exactly the batches with LSN <= its sequence: memtables are filtered by sequence, and
//!   every segment in the version holds only batches the sequence already covers;
//! - a key is live in at most one segment of a version (a flush marks older copies dead in their
//!   deletion bitmaps), and any memtable entry for a key (put or delete) shadows all segments.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

mod search;

use std::collections::HashMap;

use search::Resolve;

use crate::ann::QueryStats;
use crate::bitset::Bitset;
use crate::deadline::Deadline;
use crate::filter::docs::MemDocs;
use crate::memtable::{Entry, Memtable};
use crate::segment::Segment;
use crate::{Document, Filter, Result, Schema};

/// A segment with the deletion bitmap current in one version.
#[derive(Debug, Clone)]
pub(crate) struct LiveSegment {
    pub seg: Arc<Segment>,
    pub deleted: Arc<Bitset>,
    pub deletes_gen: u32,
    /// Whether `deleted` has any bit set (known once per version: scanning a 1M-bit map per
    /// query was 8 % of a 10 % partition query).
    pub any_deleted: bool,
}

impl LiveSegment {
    pub(crate) fn new(seg: Arc<Segment>, deleted: Arc<Bitset>, deletes_gen: u32) -> LiveSegment {
        let any_deleted = deleted.any();
        LiveSegment {
            seg,
            deleted,
            deletes_gen,
            any_deleted,
        }
    }
}

/// Memtables and segments at one moment. Immutable; replaced as a whole.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub active: Arc<Memtable>,
    /// Frozen memtables, newest first, each with the last LSN it holds.
    pub frozen: Vec<(Arc<Memtable>, u64)>,
    /// Segments, newest first.
    pub segments: Vec<LiveSegment>,
}

impl Version {
    fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.active).chain(self.frozen.iter().map(|(m, _)| m))
    }
}

/// A consistent read view: it sees exactly the batches visible when it was taken, and stays
/// valid (and unchanged) while writes, flushes and compactions go on.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) schema: Arc<Schema>,
    pub(crate) version: Arc<Version>,
    /// The mandatory filter, with its `(apply …)` operators already resolved against this
    /// snapshot (which never changes, so the resolution stays valid).
    pub(crate) mandatory: Option<Arc<Filter>>,
}

impl Snapshot {
    /// This snapshot restricted by a mandatory filter (visibility, tenant, …): every query is
    /// answered as if the filter were AND-ed into it — whatever plan runs, including the
    /// documents an `(apply …)` expands over — and `get`, `scan` and `scan_prefix` return only
    /// documents it admits. Restricting an already restricted snapshot ANDs both filters; there
    /// is no way to widen a restriction.
    ///
    /// ```
    /// # fn main() -> strata::Result<()> {
    /// use strata::{Db, Document, Filter, Query, Schema, Metric};
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Db::create(dir.path(), Schema::new(2, Metric::L2))?;
    /// db.put(Document::new("a", "").with_vector(vec![0.0, 0.0]).with_term("tenant:1"))?;
    /// db.put(Document::new("b", "").with_vector(vec![0.1, 0.0]).with_term("tenant:2"))?;
    /// let t1 = db.restricted_snapshot(Filter::term("tenant:1"))?;
    /// let hits = t1.search(&Query::knn(vec![0.1, 0.0], 10))?;
    /// assert_eq!(hits.len(), 1);
    /// assert!(t1.get(b"b")?.is_none());
    /// # Ok(()) }
    /// ```
    pub fn with_mandatory_filter(&self, filter: Filter) -> Result<Snapshot> {
        filter.validate(&self.schema)?;
        let mut stats = QueryStats::default();
        let mem = self.memtable_entries(Bound::Unbounded, Bound::Unbounded);
        let mem_docs: Vec<Arc<Document>> = mem.values().flatten().cloned().collect();
        let docs = MemDocs::new(&mem_docs);
        let mut ctx = Resolve {
            mem: &mem,
            docs: &docs,
            deadline: &Deadline::at(None),
            fanout_max: usize::MAX,
            done: HashMap::new(),
        };
        let resolved = self.resolve(&filter, &mut ctx, &mut stats)?;
        let combined = match &self.mandatory {
            Some(old) => Filter::And(vec![Filter::clone(old), resolved]),
            None => resolved,
        };
        Ok(Snapshot {
            mandatory: Some(Arc::new(combined)),
            ..self.clone()
        })
    }

    /// The mandatory filter in force, if any (resolved: no `(apply …)` left).
    pub fn mandatory_filter(&self) -> Option<&Filter> {
        self.mandatory.as_deref()
    }

    pub(crate) fn admits(&self, d: &Document) -> bool {
        self.mandatory.as_ref().is_none_or(|m| m.matches(d))
    }
    /// The sequence (last visible WAL LSN) this view reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Read one document.
    pub fn get(&self, key: &[u8]) -> Result<Option<Arc<Document>>> {
        crate::doc::validate_key(key)?;
        for m in self.version.memtables() {
            if let Some(e) = m.get(key, self.seq) {
                return Ok(e.filter(|d| self.admits(d)));
            }
        }
        for ls in &self.version.segments {
            if let Some(i) = ls.seg.find(key) {
                if !ls.deleted.get(i) {
                    let d = ls.seg.doc(i)?;
                    return Ok(self.admits(&d).then(|| Arc::new(d)));
                }
            }
        }
        Ok(None)
    }

    /// Newest memtable entry of every key in the bounds (puts and deletes).
    fn memtable_entries(&self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> BTreeMap<Vec<u8>, Entry> {
        let mut out = BTreeMap::new();
        for m in self.version.memtables() {
            m.for_each_visible(self.seq, lo, hi, |k, e| {
                out.entry(k.to_vec()).or_insert_with(|| e.clone());
                true
            });
        }
        out
    }
}
