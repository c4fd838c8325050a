//! Queries and the exact search over a snapshot. Results equal brute force by construction:
//! every visible document is checked against the filter and scored with [`crate::distance`].

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::ann::SearchParams;
use crate::distance::search_distance as distance;
use crate::{Document, Error, Filter, Result, Schema};

/// A hybrid query: optional vector + `k`, optional radius, optional filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Query vector; without it the query is boolean (matching keys in key order).
    pub vector: Option<Vec<f32>>,
    /// At most this many results (default 10).
    pub k: usize,
    /// With a vector: only documents within this distance (inclusive), in the convention
    /// [`crate::distance`] reports (squared for L2).
    pub radius: Option<f32>,
    /// Boolean filter; `None` matches every document.
    pub filter: Option<Filter>,
    /// Return the documents themselves with the hits.
    pub include_docs: bool,
    /// Graph search knobs (list size, beam width, or exact).
    pub ann: SearchParams,
    /// At most this many terms from one `(apply …)` (the lowest values are kept; the
    /// truncation is reported in the query's stats). Default 10,000.
    pub apply_fanout_max: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            vector: None,
            k: 10,
            radius: None,
            filter: None,
            include_docs: false,
            ann: SearchParams::default(),
            apply_fanout_max: 10_000,
        }
    }
}

impl Query {
    /// A k-nearest-neighbour query.
    pub fn knn(vector: Vec<f32>, k: usize) -> Query {
        Query {
            vector: Some(vector),
            k,
            ..Query::default()
        }
    }

    /// A boolean query returning up to `k` matching keys in key order.
    pub fn boolean(filter: Filter, k: usize) -> Query {
        Query {
            filter: Some(filter),
            k,
            ..Query::default()
        }
    }

    /// Set the filter.
    pub fn with_filter(mut self, f: Filter) -> Query {
        self.filter = Some(f);
        self
    }

    /// Parse and set the filter.
    pub fn with_filter_str(self, text: &str) -> Result<Query> {
        Ok(self.with_filter(Filter::parse(text)?))
    }

    /// Set the radius.
    pub fn with_radius(mut self, r: f32) -> Query {
        self.radius = Some(r);
        self
    }

    /// Candidate list size of the graph search (`L_search`).
    pub fn with_search_list(mut self, l: usize) -> Query {
        self.ann.list = l;
        self
    }

    /// The recall@k to reach (see [`crate::SearchParams::recall`]).
    pub fn with_recall(mut self, recall: f64) -> Query {
        self.ann.recall = recall;
        self
    }

    /// Sectors read per hop of the graph search.
    /// Force a plan on every indexed segment (benchmarks, tests): see
    /// [`crate::SearchParams::plan`].
    pub fn with_plan(mut self, plan: crate::PlanHint) -> Query {
        self.ann.plan = plan;
        self
    }

    /// Set the graph search's beam width (nodes expanded per step; [`SearchParams`]).
    pub fn with_beam_width(mut self, w: usize) -> Query {
        self.ann.beam_width = w;
        self
    }

    /// Stop with `Error::Timeout` if the query is still running `timeout` from now.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Query {
        self.ann.deadline = std::time::Instant::now().checked_add(timeout);
        self
    }

    /// Answer exactly (scan), ignoring the graphs.
    pub fn exact(mut self) -> Query {
        self.ann.exact = true;
        self
    }

    /// Return documents with hits.
    pub fn with_docs(mut self) -> Query {
        self.include_docs = true;
        self
    }

    pub(crate) fn validate(&self, schema: &Schema) -> Result<()> {
        if let Some(v) = &self.vector {
            if v.len() != schema.dim as usize {
                return Err(Error::invalid(format!(
                    "query vector has dimension {}, schema says {}",
                    v.len(),
                    schema.dim
                )));
            }
            crate::limits::check_vector("query vector", v)?;
        }
        if self.k > crate::limits::K_MAX {
            return Err(Error::invalid(format!(
                "k = {} exceeds the bound {}",
                self.k,
                crate::limits::K_MAX
            )));
        }
        if self.ann.list > crate::limits::SEARCH_LIST_MAX {
            return Err(Error::invalid(format!(
                "search list {} exceeds the bound {}",
                self.ann.list,
                crate::limits::SEARCH_LIST_MAX
            )));
        }
        if !(0.0..=1.0).contains(&self.ann.recall) {
            return Err(Error::invalid(format!(
                "recall {} is outside 0..=1",
                self.ann.recall
            )));
        }
        if let Some(r) = self.radius {
            if !r.is_finite() {
                return Err(Error::invalid(format!("radius {r} is not a finite number")));
            }
            if self.vector.is_none() {
                return Err(Error::invalid("a radius needs a query vector"));
            }
            if schema.metric == crate::Metric::L2 && r < 0.0 {
                return Err(Error::invalid(format!(
                    "radius {r}: an L2 radius is a squared distance, >= 0"
                )));
            }
        }
        if let Some(f) = &self.filter {
            f.validate(schema)?;
        }
        Ok(())
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Hit {
    /// Document key.
    pub key: Vec<u8>,
    /// Distance to the query vector (`None` for boolean queries): squared Euclidean for L2,
    /// `1 − cos` for cosine, `−a·b` for inner product ([`crate::distance`]).
    pub distance: Option<f32>,
    /// The document, if the query asked for it.
    pub doc: Option<Arc<Document>>,
}

/// Heap entry ordered by (distance, key) so a max-heap's top is the worst kept hit.
pub(crate) struct Scored<T> {
    dist: f32,
    key: Vec<u8>,
    item: T,
}

impl<T> Scored<T> {
    pub(crate) fn new(dist: f32, key: Vec<u8>, item: T) -> Self {
        Scored { dist, key, item }
    }
    pub(crate) fn into_parts(self) -> (f32, Vec<u8>, T) {
        (self.dist, self.key, self.item)
    }
}

impl<T> PartialEq for Scored<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<T> Eq for Scored<T> {}
impl<T> PartialOrd for Scored<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Scored<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        self.dist
            .total_cmp(&o.dist)
            .then_with(|| self.key.cmp(&o.key))
    }
}

/// Exact search over `docs` (visible documents in key order that match the query's filter:
/// the caller evaluated it, through [`crate::filter::docs::DocIndex`]).
pub(crate) fn exact<'a>(
    q: &Query,
    schema: &Schema,
    matching: impl Iterator<Item = &'a Arc<Document>>,
    deadline: &crate::deadline::Deadline,
) -> Result<Vec<Hit>> {
    let hit = |d: &Arc<Document>, dist| Hit {
        key: d.key.clone(),
        distance: dist,
        doc: q.include_docs.then(|| d.clone()),
    };
    let Some(qv) = &q.vector else {
        return Ok(matching.take(q.k).map(|d| hit(d, None)).collect());
    };
    if q.k == 0 {
        return Ok(Vec::new());
    }
    let mut heap = BinaryHeap::with_capacity(q.k.min(1024) + 1);
    for (i, d) in matching.enumerate() {
        deadline.check_every(i, "scoring the memtable")?;
        let Some(v) = &d.vector else { continue };
        let dist = distance(schema.metric, qv, v);
        if q.radius.is_some_and(|r| dist > r) {
            continue;
        }
        heap.push(Scored::new(dist, d.key.clone(), d.clone()));
        if heap.len() > q.k {
            heap.pop();
        }
    }
    Ok(heap
        .into_sorted_vec()
        .into_iter()
        .map(|s| {
            let (dist, _, d) = s.into_parts();
            hit(&d, Some(dist))
        })
        .collect())
}
